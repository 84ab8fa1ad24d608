//! The guarded resolver: host names are resolved here and non-public addresses dropped,
//! so the policy applies to the very addresses the connector then dials.
//!
//! Checking a name's addresses in a separate lookup before sending would leave a window
//! for DNS rebinding (the second lookup, made by the connector, may answer differently).
//! Plugging the check into reqwest's resolver closes it. IP-literal hosts never come here
//! (hyper-util skips resolution for them); `policy.rs` checks those before sending.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::{OutboundPolicy, Refusal};

/// A [`Resolve`] implementation that applies an [`OutboundPolicy`] to resolved addresses.
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl GuardedResolver {
    pub(crate) fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The system resolver (getaddrinfo on a blocking thread): honours /etc/hosts
            // and the operator's DNS set-up, which is what a self-hosted service wants.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            let allowed = filter(&policy, &host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Keeps the addresses the policy allows; refuses when none is left.
fn filter(
    policy: &OutboundPolicy,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Refusal> {
    if policy.allows_host(host) {
        return Ok(addrs);
    }
    let mut first_blocked = None;
    let mut allowed = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match policy.check_ip(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(blocked) => {
                tracing::debug!(host, address = %addr.ip(), "dropping a non-public address");
                first_blocked.get_or_insert(blocked);
            }
        }
    }
    match first_blocked {
        Some(mut blocked) if allowed.is_empty() => {
            tracing::warn!(
                host,
                address = %blocked.ip,
                range = %blocked.range,
                "outbound request blocked by the SSRF guard"
            );
            blocked.host = Some(host.to_owned());
            Err(Refusal::Blocked(blocked))
        }
        _ => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("a test socket address"))
            .collect()
    }

    #[test]
    fn drops_non_public_addresses_and_keeps_public_ones() {
        let kept = filter(
            &OutboundPolicy::default(),
            "mixed.example",
            addrs(&["10.0.0.1:0", "93.184.215.14:0", "[::1]:0"]),
        )
        .expect("a public address is kept");
        assert_eq!(kept, addrs(&["93.184.215.14:0"]));
    }

    #[test]
    fn refuses_when_every_address_is_blocked_and_names_the_host() {
        let err = filter(
            &OutboundPolicy::default(),
            "rebind.example",
            addrs(&["127.0.0.1:0", "[::ffff:169.254.169.254]:0"]),
        )
        .expect_err("all addresses are blocked");
        let text = err.to_string();
        assert!(text.contains("rebind.example"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }

    #[test]
    fn allowed_hosts_keep_all_their_addresses() {
        let policy = OutboundPolicy {
            allow_hosts: vec!["crm.internal".into()],
            ..OutboundPolicy::default()
        };
        let kept =
            filter(&policy, "crm.internal", addrs(&["10.0.0.1:0"])).expect("allowed host kept");
        assert_eq!(kept, addrs(&["10.0.0.1:0"]));
    }
}
