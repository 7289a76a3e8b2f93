//! A watched folder is a boundary: the one way ferry looks at or reads a
//! file under a root. Anyone who can write into a shared inbox must not be
//! able to make ferry publish a file from elsewhere (its credentials,
//! `/proc/self/environ`) through a symbolic link, nor hang it on a FIFO.
//!
//! Guards: no symbolic link is followed below the root (every folder is
//! opened with `O_NOFOLLOW` relative to the one above it, the file too);
//! only regular files are opened (a FIFO, device or socket is refused
//! from its `lstat`, before any `open`), and with `O_NONBLOCK` in case one
//! is swapped in between; the descriptor is checked with `fstat` to be the
//! same regular file (device and inode) that was looked at; reads stop at
//! the caller's limit plus one byte, so `/proc` files (size 0) and files
//! that grow cannot exhaust memory. The root itself may be a link: the
//! admin chose it.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a path under a root is not read.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("symbolic link: not followed (a watched folder is a boundary)")]
    Link,
    #[error("{0}: only regular files are read")]
    Special(&'static str),
    #[error("outside the watched folder")]
    Outside,
    #[error("no longer there")]
    Gone,
    #[error("replaced while it was being opened")]
    Changed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Refusal {
    /// A kind of file ferry never reads: recorded as skipped, not retried.
    pub fn is_skip(&self) -> bool {
        matches!(self, Refusal::Link | Refusal::Special(_))
    }
}

fn from_errno(e: Errno) -> Refusal {
    match e {
        Errno::NOENT => Refusal::Gone,
        // A folder on the way turned out to be a link (O_NOFOLLOW).
        Errno::LOOP => Refusal::Link,
        e => Refusal::Io(e.into()),
    }
}

fn kind_of(mode: u32) -> Result<(), Refusal> {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(Refusal::Link),
        FileType::Fifo => Err(Refusal::Special("FIFO")),
        FileType::CharacterDevice | FileType::BlockDevice => Err(Refusal::Special("device")),
        FileType::Socket => Err(Refusal::Special("socket")),
        FileType::Directory => Err(Refusal::Special("directory")),
        FileType::Unknown => Err(Refusal::Special("unknown file type")),
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            inode: meta.ino(),
        }
    }
}

#[allow(clippy::unnecessary_cast)] // the field types differ between targets
fn file_stat(st: &rustix::fs::Stat) -> FileStat {
    FileStat {
        size: st.st_size as u64,
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        inode: st.st_ino as u64,
    }
}

/// The folder that holds `path`, opened without following any link below
/// `root`, and the file's name in it.
fn parent_beneath<'p>(root: &Path, path: &'p Path) -> Result<(OwnedFd, &'p Path), Refusal> {
    let relative = path.strip_prefix(root).map_err(|_| Refusal::Outside)?;
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => parts.push(Path::new(p)),
            Component::CurDir => {}
            _ => return Err(Refusal::Outside),
        }
    }
    let name = parts.pop().ok_or(Refusal::Outside)?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir =
        rustix::fs::openat(rustix::fs::CWD, root, dir_flags, Mode::empty()).map_err(from_errno)?;
    for part in parts {
        dir = match rustix::fs::openat(&dir, part, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::NOTDIR) => {
                // A link or a file where a folder was: say which.
                let st = rustix::fs::statat(&dir, part, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(from_errno)?;
                kind_of(st.st_mode)?;
                return Err(Refusal::Special("not a folder"));
            }
            Err(e) => return Err(from_errno(e)),
        };
    }
    Ok((dir, name))
}

/// Whether `relative` names a real folder under `root`: every part a
/// directory, none a link (a link to a folder is not the folder).
pub fn is_folder_beneath(root: &Path, relative: &Path) -> bool {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(mut dir) = rustix::fs::openat(rustix::fs::CWD, root, dir_flags, Mode::empty()) else {
        return false;
    };
    for c in relative.components() {
        match c {
            Component::Normal(part) => {
                match rustix::fs::openat(&dir, part, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
                    Ok(d) => dir = d,
                    Err(_) => return false,
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// The stat of the regular file at `path`, looked at without following
/// links (for deciding whether a file settled; nothing is opened).
pub fn stat_beneath(root: &Path, path: &Path) -> Result<FileStat, Refusal> {
    let (dir, name) = parent_beneath(root, path)?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(from_errno)?;
    kind_of(st.st_mode)?;
    Ok(file_stat(&st))
}

/// A regular file under a root, open for reading.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// From the open descriptor: what is read is what this describes.
    pub stat: FileStat,
}

/// Opens the regular file at `path` under `root` (see the module docs).
pub fn open_beneath(root: &Path, path: &Path) -> Result<Opened, Refusal> {
    let (dir, name) = parent_beneath(root, path)?;
    let seen = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(from_errno)?;
    kind_of(seen.st_mode)?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(from_errno)?;
    let st = rustix::fs::fstat(&fd).map_err(from_errno)?;
    kind_of(st.st_mode)?;
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) {
        return Err(Refusal::Changed);
    }
    Ok(Opened {
        file: File::from(fd),
        stat: file_stat(&st),
    })
}

/// SHA-256 (hex) of bytes already read: the same form as
/// [`Opened::sha256_limited`], so a file hashed either way has one hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

impl Opened {
    /// The whole file if it holds at most `limit` bytes, else `None`;
    /// never reads more than `limit + 1`.
    pub fn read_limited(&mut self, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity(self.stat.size.min(limit) as usize);
        (&self.file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)?;
        Ok((out.len() as u64 <= limit).then_some(out))
    }

    /// SHA-256 (hex) of the file if it holds at most `limit` bytes, else
    /// `None`; reads from the start, never more than `limit + 1` bytes.
    pub fn sha256_limited(&mut self, limit: u64) -> std::io::Result<Option<String>> {
        use sha2::{Digest as _, Sha256};
        use std::io::{Seek as _, SeekFrom};
        (&self.file).seek(SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut reader = (&self.file).take(limit.saturating_add(1));
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok((total <= limit).then(|| hex::encode(hasher.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "TOP-SECRET").unwrap();
        std::fs::write(root.join("sub/ok.md"), "fine").unwrap();
        (dir, root, outside)
    }

    #[test]
    fn reads_regular_files_below_the_root() {
        let (_d, root, _) = tree();
        let mut f = open_beneath(&root, &root.join("sub/ok.md")).unwrap();
        assert_eq!(f.stat.size, 4);
        assert_eq!(f.read_limited(4).unwrap().unwrap(), b"fine");
        assert_eq!(
            f.sha256_limited(100).unwrap().unwrap(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"fine"))
        );
        assert_eq!(f.sha256_limited(3).unwrap(), None, "over the limit");
        assert_eq!(
            stat_beneath(&root, &root.join("sub/ok.md")).unwrap().size,
            4
        );
    }

    #[test]
    fn links_to_files_and_folders_are_refused() {
        let (_d, root, outside) = tree();
        symlink(outside.join("secret.txt"), root.join("leak.md")).unwrap();
        symlink(&outside, root.join("linkdir")).unwrap();
        symlink("/proc/self/environ", root.join("env.txt")).unwrap();
        for p in ["leak.md", "linkdir/secret.txt", "env.txt"] {
            let r = open_beneath(&root, &root.join(p));
            assert!(matches!(r, Err(Refusal::Link)), "{p}: {r:?}");
            let r = stat_beneath(&root, &root.join(p));
            assert!(matches!(r, Err(Refusal::Link)), "{p}: {r:?}");
        }
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let (_d, root, _) = tree();
        let fifo = root.join("pipe.md");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            open_beneath(&root, &fifo),
            Err(Refusal::Special("FIFO"))
        ));
        assert!(matches!(
            open_beneath(&root, Path::new("/dev/null")),
            Err(Refusal::Outside)
        ));
    }

    #[test]
    fn escapes_by_dot_dot_are_outside() {
        let (_d, root, _) = tree();
        let p = root.join("sub/../../outside/secret.txt");
        assert!(matches!(open_beneath(&root, &p), Err(Refusal::Outside)));
        assert!(matches!(
            open_beneath(&root, &root.join("missing.md")),
            Err(Refusal::Gone)
        ));
    }

    #[test]
    fn proc_files_are_read_only_up_to_the_limit() {
        // `/proc` reports size 0 whatever it holds: the limit, not the
        // stat, bounds the read.
        let mut f = open_beneath(Path::new("/proc/self"), Path::new("/proc/self/status")).unwrap();
        assert_eq!(f.stat.size, 0);
        assert_eq!(f.read_limited(1).unwrap(), None);
    }
}
