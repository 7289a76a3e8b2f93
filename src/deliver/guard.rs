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

/// Is this an address anyone on the internet could also reach? Follows
/// the IANA special-purpose address registries (IPv4 and IPv6), plus the
/// cloud metadata services that sit on ordinary-looking addresses.
pub fn is_global(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// Cloud metadata and platform services on addresses that would otherwise
/// pass (Azure's wire server; Alibaba's is in CGNAT space, AWS's IPv6 one
/// in ULA space, both refused anyway).
const METADATA_V4: [Ipv4Addr; 1] = [Ipv4Addr::new(168, 63, 129, 16)];

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
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved 240/4
        || METADATA_V4.contains(&ip))
}

/// IPv6 is global only inside 2000::/3 (global unicast), and there not in
/// a special-purpose block. Everything outside it — `::/96` (IPv4-
/// compatible), NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, discard
/// `100::/64`, ULA `fc00::/7`, link-local `fe80::/10`, site-local
/// `fec0::/10`, multicast, SRv6 `5f00::/16` — is refused wholesale, so
/// no IPv4 address embedded in an IPv6 form gets through.
fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    global_unicast
        // 2001::/23 (IETF: Teredo, ORCHID, benchmarking…), 2001:db8::/32
        // (documentation)
        && !((s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8))
            || s[0] == 0x2002 // 6to4: an IPv4 address inside
            || (s[0] == 0x3fff && s[1] < 0x1000)) // documentation 3fff::/20
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

    /// The IANA special-purpose registries (and the cloud metadata
    /// addresses), row by row: each must be refused.
    #[test]
    fn classifies_addresses() {
        for private in [
            // IPv4 special-purpose registry
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.100.100.200", // Alibaba metadata (CGNAT)
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254", // AWS/GCP/Azure IMDS (link-local)
            "172.16.5.4",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "168.63.129.16", // Azure wire server
            // IPv6 special-purpose registry
            "::",
            "::1",
            "::127.0.0.1",      // IPv4-compatible (::/96)
            "::7f00:1",         // the same, as hex
            "::ffff:127.0.0.1", // IPv4-mapped
            "::ffff:10.1.1.1",
            "::ffff:0:7f00:1", // IPv4-translated ::ffff:0:0/96
            "64:ff9b::7f00:1", // NAT64 of loopback
            "64:ff9b::1.1.1.1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1", // Teredo
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",  // benchmarking
            "2001:10::1", // ORCHID
            "2001:20::1", // ORCHIDv2
            "2001:db8::1",
            "2002:7f00:1::1", // 6to4 of loopback
            "2002::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00:ec2::254", // AWS IMDS over IPv6
            "fe80::1",
            "fec0::1", // site-local
            "ff02::1",
        ] {
            assert!(
                !is_global(private.parse().unwrap()),
                "{private} must be refused"
            );
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "168.63.129.17",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
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
