//! The special-purpose address ranges that are never a public destination, listed by hand.
//!
//! `IpAddr::is_global()` is unstable, and the stable `is_private()`/`is_loopback()` helpers
//! miss most of the registry (CGNAT, benchmarking, NAT64, 6to4, Teredo, ...). This table
//! follows the IANA IPv4 and IPv6 special-purpose address registries; a range whose
//! addresses embed an IPv4 address (IPv4-mapped, NAT64, 6to4) is judged by that embedded
//! address, so `::ffff:127.0.0.1` or `2002:7f00:1::` cannot smuggle a loopback target past
//! the guard. Pure functions only: the policy (allow-lists) lives in `policy.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A special-purpose range an address falls in: why it is not a public destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecialRange {
    /// Short human name of the range, e.g. `"loopback"`.
    pub name: &'static str,
    /// The range itself, e.g. `127.0.0.0/8`.
    pub net: IpNet,
    /// For ranges that embed an IPv4 address (NAT64, 6to4): the embedded address and the
    /// range that made it non-public.
    pub embedded: Option<(Ipv4Addr, Box<SpecialRange>)>,
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.net)?;
        if let Some((ip, inner)) = &self.embedded {
            write!(f, " embedding {ip}, {inner}")?;
        }
        Ok(())
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// IPv4 ranges, most specific first so the reported name is the precise one.
const V4_BLOCKED: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 32), "unspecified"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(0, 0, 0, 0, 8), "\"this network\""),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation (TEST-NET-1)"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation (TEST-NET-2)"),
    (v4(203, 0, 113, 0, 24), "documentation (TEST-NET-3)"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges blocked outright, most specific first. IPv4-mapped addresses never get
/// here (they are canonicalised to IPv4 first); NAT64 and 6to4 are handled separately
/// because their verdict depends on the embedded IPv4 address.
const V6_BLOCKED: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), "IPv4-translated"),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "local-use NAT64"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo"),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), "benchmarking"),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments",
    ),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing (SRv6)",
    ),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// NAT64 well-known prefix: the last 32 bits are the IPv4 destination.
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// 6to4: bits 16..48 are the IPv4 address of the relay/host.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The special-purpose range `ip` falls in, or `None` for a public (globally routable)
/// address. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip.to_canonical() {
        IpAddr::V4(ip) => special_v4(ip),
        IpAddr::V6(ip) => special_v6(ip),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    V4_BLOCKED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(net, name)| SpecialRange {
            name,
            net: IpNet::V4(*net),
            embedded: None,
        })
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    if let Some((net, name)) = V6_BLOCKED.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(SpecialRange {
            name,
            net: IpNet::V6(*net),
            embedded: None,
        });
    }
    let bits = u128::from(ip);
    // Truncating casts on purpose: they pick the 32 bits that hold the embedded address.
    let (net, name, embedded) = if NAT64.contains(&ip) {
        (NAT64, "NAT64", Ipv4Addr::from(bits as u32))
    } else if SIX_TO_FOUR.contains(&ip) {
        (SIX_TO_FOUR, "6to4", Ipv4Addr::from((bits >> 80) as u32))
    } else {
        return None;
    };
    special_v4(embedded).map(|inner| SpecialRange {
        name,
        net: IpNet::V6(net),
        embedded: Some((embedded, Box::new(inner))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(ip: &str) -> Option<&'static str> {
        let ip: IpAddr = ip.parse().expect("a test address");
        special_range(ip).map(|r| r.name)
    }

    #[test]
    fn every_ipv4_special_range_is_recognised() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "\"this network\""),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.254", "shared address space (CGNAT)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation (TEST-NET-1)"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation (TEST-NET-2)"),
            ("203.0.113.9", "documentation (TEST-NET-3)"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("254.1.2.3", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (ip, want) in cases {
            assert_eq!(name_of(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn every_ipv6_special_range_is_recognised() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::7f00:1", "IPv4-compatible (deprecated)"),
            ("::808:808", "IPv4-compatible (deprecated)"),
            ("::ffff:0:a00:1", "IPv4-translated"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:10::1", "IETF protocol assignments"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("5f00::1", "segment routing (SRv6)"),
            ("fc00::1", "unique local"),
            ("fd12:3456:789a::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
        ];
        for (ip, want) in cases {
            assert_eq!(name_of(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_as_ipv4() {
        assert_eq!(name_of("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(name_of("::ffff:10.1.2.3"), Some("private"));
        assert_eq!(name_of("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(name_of("::ffff:8.8.8.8"), None);
    }

    #[test]
    fn nat64_and_6to4_are_judged_by_the_embedded_address() {
        let nat64 = special_range("64:ff9b::7f00:1".parse().expect("a test address"))
            .expect("NAT64 loopback is special");
        assert_eq!(nat64.name, "NAT64");
        let (embedded, inner) = nat64.embedded.clone().expect("NAT64 embeds an address");
        assert_eq!(embedded, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(inner.name, "loopback");
        assert_eq!(
            nat64.to_string(),
            "NAT64 64:ff9b::/96 embedding 127.0.0.1, loopback 127.0.0.0/8"
        );
        assert_eq!(name_of("64:ff9b::a9fe:a9fe"), Some("NAT64"));
        assert_eq!(name_of("2002:c0a8:101::1"), Some("6to4"));
        assert_eq!(name_of("2002:7f00:1::"), Some("6to4"));
        // Public embedded addresses stay reachable through the translators.
        assert_eq!(name_of("64:ff9b::808:808"), None);
        assert_eq!(name_of("2002:808:808::1"), None);
    }

    #[test]
    fn public_addresses_are_not_special() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:830::200e",
            "2001:4860:4860::8888",
            "2001:200::1",
        ] {
            assert_eq!(name_of(ip), None, "{ip}");
        }
    }
}
