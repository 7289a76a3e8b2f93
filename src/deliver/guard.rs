//! The private-address guard of outgoing deliveries (SSRF): a destination
//! that resolves to loopback, private, link-local (cloud metadata), CGNAT,
//! documentation or other non-global addresses is refused at connect time,
//! unless the destination says `allow_private: true`.
//!
//! Names go through [`GuardedResolver`] (reqwest's DNS hook); IP literals
//! never reach a resolver, so [`check_url`] looks at them before sending.
//! Redirects are never followed and system proxies never used, so neither
//! can route around the guard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Is this an address anyone on the internet could also reach?
pub fn is_global(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24
        || (a == 192 && b == 88 && c == 99) // 6to4 relay
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard 100::/64
        || s[0] == 0x2002 // 6to4
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64
        || s[0] == 0x5f00)
}

/// Refuses a URL whose host is a non-global IP literal.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return Ok(()),
    };
    if is_global(ip) {
        Ok(())
    } else {
        Err(format!(
            "refused: {ip} is a private/loopback/link-local address (set `allow_private: true` on the webhook to allow it)"
        ))
    }
}

/// Resolves with the system resolver and keeps only global addresses.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_global(a.ip()))
                .collect();
            if allowed.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "refused: {host} resolves only to private/loopback/link-local addresses ({}); set `allow_private: true` on the webhook to allow it",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "64:ff9b::1",
            "2002::1",
        ] {
            assert!(
                !is_global(private.parse().unwrap()),
                "{private} must be refused"
            );
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_global(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn ip_literal_urls() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url(&u("http://127.0.0.1:9/x"), false).is_err());
        assert!(check_url(&u("http://[::1]/x"), false).is_err());
        assert!(check_url(&u("http://localhost/x"), false).is_err());
        assert!(check_url(&u("http://169.254.169.254/latest"), false).is_err());
        assert!(check_url(&u("http://127.0.0.1:9/x"), true).is_ok());
        assert!(check_url(&u("https://example.org/x"), false).is_ok());
    }
}
