//! When a file counts as written: `settle` of quiet (no event for it), and
//! two identical stats a short `confirm` apart, the second at the end of
//! that quiet time (the first is `confirm` before it). A file its writer
//! has closed needs only `settle_closed` of quiet (by default `confirm`):
//! the write `settle` waits out has visibly ended, unless someone opens
//! the file again, which puts it back on the whole `settle`. Pure: time
//! and `stat` are inputs, so slow writers, editors' atomic saves and
//! deletions are tested without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::safe_fs::FileStat;

#[derive(Debug)]
struct Pending {
    due: Instant,
    /// Its place in [`Settler::by_due`]: due times alone can tie.
    seq: u64,
    last: Option<Option<FileStat>>,
    /// On the shorter quiet time of a closed file: an open takes it back.
    closed: bool,
}

pub struct Settler {
    settle: Duration,
    confirm: Duration,
    closed: Duration,
    pending: HashMap<PathBuf, Pending>,
    /// The same paths in due order. The watch loop asks for the next due
    /// time and the settled paths after every event; walking every
    /// pending path for that made a large copy quadratic (`scripts/bench.sh
    /// settle`: 100,000 files copied at 10,000 a second).
    by_due: BTreeMap<(Instant, u64), PathBuf>,
    next_seq: u64,
}

impl Settler {
    /// `closed`: the quiet time of a file its writer closed (`None`:
    /// `confirm`); never more than `settle`, never less than `confirm`.
    pub fn new(settle: Duration, closed: Option<Duration>) -> Settler {
        // Long enough for a second write to show, short enough not to
        // double the latency.
        let confirm = Self::confirm_for(settle);
        Settler {
            settle,
            confirm,
            closed: closed
                .unwrap_or(confirm)
                .clamp(confirm, settle.max(confirm)),
            pending: HashMap::new(),
            by_due: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Something happened to `path`: it must be quiet for `settle` again.
    /// Its first look is `confirm` before that quiet time ends, so that the
    /// second, which settles it, falls at its end: a file is taken `settle`
    /// after its last write, as `watch.settle` promises, not `confirm`
    /// later (a quarter more, which a burst paid in full before its first
    /// upload).
    pub fn touch(&mut self, path: PathBuf, now: Instant) {
        self.set(
            path,
            now + self.settle.saturating_sub(self.confirm),
            None,
            false,
        );
    }

    /// The look between two stats of one file: a quarter of `settle`,
    /// from 100 ms to 2 s.
    fn confirm_for(settle: Duration) -> Duration {
        (settle / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// `path`'s writer closed it after writing (inotify's
    /// `IN_CLOSE_WRITE`): it is taken `settle_closed` from now if nothing
    /// happens to it meanwhile. A copy, a download or a save closes each
    /// file once it is whole, so a burst of them is taken a moment after
    /// each file is done instead of a whole `settle` later; a writer that
    /// keeps its file open (a log, a slow transfer) gets no close and
    /// waits out `settle`.
    pub fn closed(&mut self, path: PathBuf, now: Instant) {
        self.set(
            path,
            now + self.closed.saturating_sub(self.confirm),
            None,
            true,
        );
    }

    /// Like [`Settler::closed`], for a file found in a folder that came
    /// into the tree (moved in, or made and filled before its watch was
    /// set up): its writes and close came before ferry could see them. A
    /// write still going on shows now, as the folder is watched, and puts
    /// it back on `settle`. A path already settling is left alone.
    pub fn appeared(&mut self, path: PathBuf, now: Instant) {
        if !self.pending.contains_key(&path) {
            self.closed(path, now);
        }
    }

    /// `path` was opened. A closed file still settling goes back to the
    /// whole `settle`: its writer may be back. Anything else is left
    /// alone: ferry's own hashing and uploads open files, and reading
    /// changes nothing.
    pub fn opened(&mut self, path: &Path, now: Instant) {
        if self.pending.get(path).is_some_and(|p| p.closed) {
            self.touch(path.to_path_buf(), now);
        }
    }

    /// Like [`Settler::touch`], but leaves a path that is already settling
    /// alone: a reconcile (every poll, in `poll` mode) only reports that a
    /// file differs, which must not restart its quiet time forever.
    pub fn observe(&mut self, path: PathBuf, now: Instant) {
        if !self.pending.contains_key(&path) {
            self.touch(path, now);
        }
    }

    /// Like [`Settler::observe`], for a file a scan found already quiet
    /// for `settle` by its mtime (at start, say): the scan's stat is its
    /// first look, so one more identical stat, at once, settles it.
    pub fn observe_quiet(&mut self, path: PathBuf, scanned: FileStat, now: Instant) {
        if !self.pending.contains_key(&path) {
            self.set(path, now, Some(Some(scanned)), false);
        }
    }

    /// `path` is due at `due`, having last been seen as `last`.
    fn set(&mut self, path: PathBuf, due: Instant, last: Option<Option<FileStat>>, closed: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now_pending = Pending {
            due,
            seq,
            last,
            closed,
        };
        match self.pending.get_mut(&path) {
            Some(p) => {
                self.by_due.remove(&(p.due, p.seq));
                *p = now_pending;
            }
            None => {
                self.pending.insert(path.clone(), now_pending);
            }
        }
        self.by_due.insert((due, seq), path);
    }

    /// The quiet time a file needs.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.by_due.first_key_value().map(|((due, _), _)| *due)
    }

    /// The paths that are settled now, with their stat (`None`: gone).
    pub fn poll(
        &mut self,
        now: Instant,
        stat: impl Fn(&Path) -> Option<FileStat>,
    ) -> Vec<(PathBuf, Option<FileStat>)> {
        let mut ready = Vec::new();
        let mut again = Vec::new();
        while let Some(entry) = self.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let path = entry.remove();
            let seen = stat(&path);
            let p = self.pending.get(&path).expect("indexed paths are pending");
            let (last, closed) = (p.last, p.closed);
            if last == Some(seen) {
                self.pending.remove(&path);
                ready.push((path, seen));
            } else {
                again.push((path, seen, closed));
            }
        }
        // Looked at once per poll: the second look is `confirm` later.
        for (path, seen, closed) in again {
            self.set(path, now + self.confirm, Some(seen), closed);
        }
        ready.sort_by(|a, b| a.0.cmp(&b.0));
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn st(size: u64) -> Option<FileStat> {
        Some(FileStat {
            size,
            mtime_ns: size as i64,
            inode: 1,
        })
    }

    #[test]
    fn quiet_then_two_equal_stats() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.touch("a".into(), t0);
        let looks = Cell::new(0);
        let stat = |_: &Path| {
            looks.set(looks.get() + 1);
            st(5)
        };
        assert!(
            s.poll(t0 + Duration::from_millis(1499), stat).is_empty(),
            "not looked at yet"
        );
        assert_eq!(looks.get(), 0);
        assert!(
            s.poll(t0 + Duration::from_millis(1500), stat).is_empty(),
            "first stat only, `confirm` (500 ms) before the quiet time ends"
        );
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(2)));
        assert!(s.poll(t0 + Duration::from_millis(1999), stat).is_empty());
        // Taken `settle` after its last event, not later.
        let ready = s.poll(t0 + Duration::from_secs(2), stat);
        assert_eq!(ready, vec![(PathBuf::from("a"), st(5))]);
        assert_eq!(looks.get(), 2);
        assert!(s.is_empty());
    }

    #[test]
    fn a_file_quiet_before_the_scan_settles_at_the_next_look() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.observe_quiet("old".into(), st(5).unwrap(), t0);
        s.observe_quiet("touched".into(), st(5).unwrap(), t0);
        let ready = s.poll(t0, |p| if p == Path::new("old") { st(5) } else { st(6) });
        assert_eq!(ready, vec![(PathBuf::from("old"), st(5))]);
        // Changed since the scan: the usual confirm follows.
        assert_eq!(s.len(), 1);
        assert!(s.poll(t0, |_| st(6)).is_empty());
        assert_eq!(s.poll(t0 + Duration::from_millis(500), |_| st(6)).len(), 1);
    }

    #[test]
    fn slow_writer_is_waited_for() {
        // Written in chunks every second for 3 s: nothing is ready until
        // the writes stop and two stats agree.
        let t0 = Instant::now();
        let size = Cell::new(0u64);
        let mut s = Settler::new(Duration::from_secs(2), None);
        for second in 0..=3 {
            let now = t0 + Duration::from_secs(second);
            size.set(second * 100);
            s.touch("slow".into(), now);
            assert!(s.poll(now, |_| st(size.get())).is_empty());
        }
        let mut now = t0 + Duration::from_secs(3);
        let mut ready = Vec::new();
        while ready.is_empty() {
            now += Duration::from_millis(100);
            ready = s.poll(now, |_| st(size.get()));
        }
        assert_eq!(ready[0].1, st(300));
        assert!(now >= t0 + Duration::from_secs(5));
    }

    #[test]
    fn a_change_between_the_two_stats_waits_again() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.touch("a".into(), t0);
        assert!(
            s.poll(t0 + Duration::from_millis(1500), |_| st(5))
                .is_empty()
        );
        // Grew without an event (NFS, say): not ready.
        assert!(s.poll(t0 + Duration::from_secs(2), |_| st(6)).is_empty());
        assert_eq!(s.poll(t0 + Duration::from_millis(2500), |_| st(6)).len(), 1);
    }

    #[test]
    fn repeated_observations_do_not_postpone() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_millis(300), None);
        let mut now = t0;
        let mut ready = Vec::new();
        while ready.is_empty() {
            s.observe("polled".into(), now);
            ready = s.poll(now, |_| st(1));
            now += Duration::from_millis(100);
            assert!(now < t0 + Duration::from_secs(2), "never settled");
        }
    }

    #[test]
    fn a_path_touched_again_is_due_once_at_its_latest_time() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(1), None);
        s.touch("a".into(), t0);
        s.touch("b".into(), t0 + Duration::from_millis(100));
        s.touch("a".into(), t0 + Duration::from_millis(500));
        s.observe("a".into(), t0 + Duration::from_millis(900));
        s.observe_quiet("b".into(), st(1).unwrap(), t0 + Duration::from_millis(900));
        assert_eq!(s.len(), 2);
        // First looks come 250 ms (`confirm`) before a quiet second ends.
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(850)));
        // b's first look; a's old time (750 ms) is gone, not a look at a.
        let looked = std::cell::RefCell::new(Vec::new());
        let stat = |p: &Path| {
            looked.borrow_mut().push(p.to_path_buf());
            st(1)
        };
        assert!(s.poll(t0 + Duration::from_millis(1000), stat).is_empty());
        assert_eq!(*looked.borrow(), vec![PathBuf::from("b")]);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(1250)));
        // b's second look and a's first fall together.
        let ready = s.poll(t0 + Duration::from_millis(1250), stat);
        assert_eq!(ready, vec![(PathBuf::from("b"), st(1))]);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(1500)));
        let ready = s.poll(t0 + Duration::from_millis(1500), stat);
        assert_eq!(ready, vec![(PathBuf::from("a"), st(1))]);
        assert_eq!(looked.borrow().len(), 4, "two looks each");
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
    }

    /// Looks at `path` until it is taken or `limit`, every 10 ms of
    /// pretend time; when it was taken.
    fn taken_at(s: &mut Settler, t0: Instant, limit: Duration, size: u64) -> Option<Duration> {
        let mut now = t0;
        while now <= t0 + limit {
            if !s.poll(now, |_| st(size)).is_empty() {
                return Some(now - t0);
            }
            now += Duration::from_millis(10);
        }
        None
    }

    #[test]
    fn a_closed_file_is_taken_confirm_after_its_close_an_open_one_after_settle() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.touch("copied".into(), t0);
        s.closed("copied".into(), t0 + Duration::from_millis(20));
        // First look at the close, the second (which takes it) `confirm`
        // (500 ms) later.
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(Duration::from_millis(520))
        );
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.touch("held open".into(), t0);
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn an_open_or_a_write_after_the_close_waits_the_whole_settle() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Opened again before the first look, and between the two looks
        // (the first look must not forget that the file was closed).
        for opened in [ms(0), ms(300)] {
            let mut s = Settler::new(Duration::from_secs(2), None);
            s.closed("f".into(), t0);
            assert!(s.poll(t0, |_| st(5)).is_empty());
            s.opened(Path::new("f"), t0 + opened);
            assert_eq!(
                taken_at(&mut s, t0, Duration::from_secs(3), 5),
                Some(ms(2000) + opened),
                "opened {opened:?} after the close"
            );
        }
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.closed("f".into(), t0);
        s.touch("f".into(), t0 + ms(100));
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(ms(2100))
        );
    }

    #[test]
    fn opening_a_file_that_is_not_settling_changes_nothing() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.opened(Path::new("read by ferry"), t0);
        assert!(s.is_empty());
        // Nor does an open of a file on the whole `settle` already move it.
        s.touch("f".into(), t0);
        s.opened(Path::new("f"), t0 + Duration::from_millis(900));
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_file_that_appeared_with_its_folder_settles_as_if_closed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Settler::new(Duration::from_secs(2), None);
        s.appeared("moved in".into(), t0);
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(ms(500))
        );
        // Already settling after a write: its time stays.
        s.touch("written".into(), t0);
        s.appeared("written".into(), t0 + ms(10));
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(ms(2000))
        );
        // A write seen after the folder was watched: the whole `settle`.
        s.appeared("still written".into(), t0);
        s.touch("still written".into(), t0 + ms(100));
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(3), 5),
            Some(ms(2100))
        );
    }

    #[test]
    fn settle_closed_is_kept_between_confirm_and_settle() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for (closed, taken) in [
            (Some(ms(1000)), ms(1000)),
            (Some(ms(0)), ms(500)),
            (Some(ms(9000)), ms(2000)),
            (None, ms(500)),
        ] {
            let mut s = Settler::new(Duration::from_secs(2), closed);
            s.closed("f".into(), t0);
            assert_eq!(
                taken_at(&mut s, t0, Duration::from_secs(3), 5),
                Some(taken),
                "settle_closed {closed:?}"
            );
        }
        // A settle shorter than the least `confirm` (100 ms): the close
        // cannot make it longer.
        let mut s = Settler::new(ms(50), None);
        s.closed("f".into(), t0);
        assert_eq!(
            taken_at(&mut s, t0, Duration::from_secs(1), 5),
            Some(ms(100))
        );
    }

    #[test]
    fn deletions_settle_too() {
        let t0 = Instant::now();
        let mut s = Settler::new(Duration::from_millis(400), None);
        s.touch("gone".into(), t0);
        s.poll(t0 + Duration::from_millis(400), |_| None);
        assert_eq!(
            s.poll(t0 + Duration::from_millis(600), |_| None),
            vec![(PathBuf::from("gone"), None)]
        );
    }
}
