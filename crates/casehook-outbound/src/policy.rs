//! The SSRF policy: which destinations outbound requests may reach.
//!
//! By default only public addresses are allowed (see [`crate::ranges`]). The operator widens
//! that with `--allow-private-networks`, with CIDR ranges, or with host names. The policy is
//! applied in three places, all in this crate: to IP-literal URLs before sending (they never
//! reach a resolver), to every address a host name resolves to (`resolve.rs`, at connect
//! time, so DNS rebinding cannot slip past a check made earlier), and to each redirect hop.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use reqwest::Url;

use crate::ranges::{SpecialRange, special_range};

/// Which destinations outbound requests may reach.
///
/// The default refuses every non-public address. Allowing is explicit and additive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Turn the address guard off entirely: private, loopback and link-local targets
    /// (including cloud metadata endpoints such as 169.254.169.254) become reachable.
    /// Meant for self-hosted deployments that integrate with systems on their own
    /// network; prefer `allow_cidrs` to open only what is needed.
    pub allow_private_networks: bool,
    /// Ranges that are allowed even though they are special-purpose (e.g. `10.20.0.0/16`,
    /// or `127.0.0.0/8` in tests).
    pub allow_cidrs: Vec<IpNet>,
    /// Host names whose addresses are not checked at all: an exact name
    /// (`crm.internal`, case-insensitive, trailing dot ignored) or `*.suffix` for every
    /// subdomain of `suffix` (not `suffix` itself). An IP literal may be listed too.
    pub allow_hosts: Vec<String>,
}

/// An address the policy refuses, with the range that made it non-public.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The refused address (as resolved or written in the URL).
    pub ip: IpAddr,
    /// The special-purpose range it falls in.
    pub range: SpecialRange,
    /// The host name that resolved to `ip`, when the URL named one.
    pub host: Option<String>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(
                f,
                "host {host} resolves only to non-public addresses, e.g. {} ({})",
                self.ip, self.range
            )?,
            None => write!(f, "address {} is not public ({})", self.ip, self.range)?,
        }
        f.write_str("; allow it with allow_private_networks, allow_cidrs or allow_hosts")
    }
}

impl std::error::Error for Blocked {}

/// Why a URL (the first one or a redirect hop) is not sent. Travels inside reqwest's error
/// chain from the resolver and the redirect policy, where `error.rs` finds it again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The destination address is not allowed.
    #[error(transparent)]
    Blocked(Blocked),
    /// The URL cannot be an outbound HTTP target (scheme, missing host).
    #[error("{0}")]
    BadTarget(String),
}

impl OutboundPolicy {
    /// A policy that allows every destination (the guard is off). For development and
    /// tests; production uses [`OutboundPolicy::default`] plus explicit allowances.
    pub fn allow_all() -> Self {
        Self {
            allow_private_networks: true,
            ..Self::default()
        }
    }

    /// Checks one address: `Ok` when it is public or explicitly allowed.
    ///
    /// IPv4-mapped IPv6 addresses are judged as IPv4 (`::ffff:127.0.0.1` is loopback);
    /// NAT64 and 6to4 addresses by the IPv4 address they embed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_private_networks {
            return Ok(());
        }
        let canonical = ip.to_canonical();
        if self
            .allow_cidrs
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        match special_range(ip) {
            None => Ok(()),
            Some(range) => Err(Blocked {
                ip,
                range,
                host: None,
            }),
        }
    }

    /// Whether `host` is on the `allow_hosts` list (its addresses are then not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.allow_hosts.iter().any(|pattern| {
            let pattern = normalise_host(pattern);
            match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => host == pattern,
            }
        })
    }

    /// Checks what can be checked before connecting: the scheme, the presence of a host,
    /// and an IP-literal host (which no resolver will ever see). Host names pass here and
    /// are checked on their resolved addresses at connect time.
    pub(crate) fn check_target(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::BadTarget(format!(
                "scheme {:?} is not allowed: only http and https",
                url.scheme()
            )));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(Refusal::BadTarget("the URL has no host".to_owned()));
        };
        // The URL parser has already turned every numeric spelling (`2130706433`, `0x7f.1`)
        // into a dotted IPv4 address, and IPv6 literals keep their brackets.
        let Ok(ip) = normalise_host(host).parse::<IpAddr>() else {
            return Ok(());
        };
        if self.allows_host(host) {
            return Ok(());
        }
        self.check_ip(ip).map_err(|blocked| {
            tracing::warn!(
                host = %ip,
                address = %ip,
                range = %blocked.range,
                "outbound request blocked by the SSRF guard"
            );
            Refusal::Blocked(blocked)
        })
    }
}

/// Lower-case, without a trailing dot or IPv6 brackets: the form names are compared in.
fn normalise_host(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address")
    }

    #[test]
    fn default_policy_refuses_special_and_allows_public() {
        let policy = OutboundPolicy::default();
        assert!(policy.check_ip(ip("127.0.0.1")).is_err());
        assert!(policy.check_ip(ip("::ffff:10.0.0.1")).is_err());
        assert!(policy.check_ip(ip("8.8.8.8")).is_ok());
        assert!(policy.check_ip(ip("2606:4700:4700::1111")).is_ok());
    }

    #[test]
    fn allow_cidrs_opens_only_the_listed_ranges() {
        let policy = OutboundPolicy {
            allow_cidrs: vec!["127.0.0.0/8".parse().expect("a test range")],
            ..OutboundPolicy::default()
        };
        assert!(policy.check_ip(ip("127.0.0.1")).is_ok());
        assert!(policy.check_ip(ip("::ffff:127.0.0.2")).is_ok());
        assert!(policy.check_ip(ip("10.0.0.1")).is_err());
        assert!(policy.check_ip(ip("::1")).is_err());
    }

    #[test]
    fn allow_private_networks_turns_the_guard_off() {
        let policy = OutboundPolicy::allow_all();
        assert!(policy.check_ip(ip("169.254.169.254")).is_ok());
        assert!(policy.check_ip(ip("fd00::1")).is_ok());
    }

    #[test]
    fn allow_hosts_matches_exact_names_and_subdomain_wildcards() {
        let policy = OutboundPolicy {
            allow_hosts: vec!["CRM.internal.".into(), "*.corp.example".into()],
            ..OutboundPolicy::default()
        };
        assert!(policy.allows_host("crm.internal"));
        assert!(policy.allows_host("crm.internal."));
        assert!(!policy.allows_host("evil-crm.internal"));
        assert!(policy.allows_host("api.corp.example"));
        assert!(policy.allows_host("a.b.corp.example"));
        assert!(!policy.allows_host("corp.example"));
        assert!(!policy.allows_host("evilcorp.example"));
    }

    #[test]
    fn blocked_message_names_the_address_and_range() {
        let err = OutboundPolicy::default()
            .check_ip(ip("169.254.169.254"))
            .expect_err("link-local is blocked");
        let text = err.to_string();
        assert!(text.contains("169.254.169.254"), "{text}");
        assert!(text.contains("link-local 169.254.0.0/16"), "{text}");
    }

    #[test]
    fn check_target_refuses_other_schemes_and_blocked_literals() {
        let policy = OutboundPolicy::default();
        let check = |u: &str| policy.check_target(&Url::parse(u).expect("a test URL"));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            check("ftp://example.com/"),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            check("http://127.0.0.1:9/"),
            Err(Refusal::Blocked(_))
        ));
        assert!(matches!(check("http://[::1]:9/"), Err(Refusal::Blocked(_))));
        // WHATWG parsing turns these spellings into 127.0.0.1 before we look.
        assert!(matches!(
            check("http://2130706433/"),
            Err(Refusal::Blocked(_))
        ));
        assert!(matches!(check("http://0x7f.1/"), Err(Refusal::Blocked(_))));
        assert!(check("https://example.com/").is_ok());
        assert!(check("http://8.8.8.8/").is_ok());
    }

    #[test]
    fn allow_hosts_accepts_an_ip_literal() {
        let policy = OutboundPolicy {
            allow_hosts: vec!["::1".into()],
            ..OutboundPolicy::default()
        };
        assert!(
            policy
                .check_target(&Url::parse("http://[::1]/").expect("a test URL"))
                .is_ok()
        );
    }
}
