//! Token, HTTP Basic and IP allow-list checks.

use super::*;

const TOKEN: &str = "tok_9f8e7d6c5b4a";
const OLD_TOKEN: &str = "tok_previous_one";

fn header_token() -> Verification {
    Verification::Token {
        header: Some("X-Webhook-Token".into()),
        query: None,
    }
}

fn query_token() -> Verification {
    Verification::Token {
        header: None,
        query: Some("token".into()),
    }
}

fn bearer_token() -> Verification {
    Verification::Token {
        header: Some("Authorization".into()),
        query: None,
    }
}

// --- token ----------------------------------------------------------------------------------

#[test]
fn a_token_in_its_header_passes() {
    let req = Req::new(b"{}").header("X-Webhook-Token", TOKEN);
    assert_eq!(req.check(&header_token(), &[TOKEN]), Ok(()));
}

#[test]
fn a_bearer_token_in_authorization_passes() {
    let v = bearer_token();
    assert_eq!(
        Req::new(b"")
            .header("authorization", &format!("Bearer {TOKEN}"))
            .check(&v, &[TOKEN]),
        Ok(())
    );
    assert_eq!(
        Req::new(b"")
            .header("authorization", &format!("bearer  {TOKEN}"))
            .check(&v, &[TOKEN]),
        Ok(()),
        "the scheme is case-insensitive"
    );
    assert_eq!(
        Req::new(b"")
            .header("authorization", &format!("Basic {TOKEN}"))
            .reason(&v, &[TOKEN]),
        DenyReason::Mismatch
    );
}

#[test]
fn a_token_query_parameter_is_url_decoded() {
    let secret = "a b&c/=+é";
    let req = Req::new(b"").query("x=1&token=a+b%26c%2F%3D%2B%C3%A9&y");
    assert_eq!(req.check(&query_token(), &[secret]), Ok(()));
    let raw = Req::new(b"").query("token=a%20b%26c%2F%3D%2B%C3%A9");
    assert_eq!(
        raw.check(&query_token(), &[secret]),
        Ok(()),
        "%20 is a space too"
    );
}

#[test]
fn a_wrong_token_is_a_mismatch_that_repeats_neither_token() {
    let sent = "tok_guessed_value";
    for (v, req) in [
        (
            header_token(),
            Req::new(b"").header("x-webhook-token", sent),
        ),
        (query_token(), Req::new(b"").query(&format!("token={sent}"))),
    ] {
        let denied = req.denied(&v, &[TOKEN]);
        assert_eq!(denied.reason, DenyReason::Mismatch);
        assert!(!denied.message.contains(TOKEN), "{denied}");
        assert!(!denied.message.contains(sent), "{denied}");
    }
}

#[test]
fn a_missing_token_is_missing_credentials_naming_where_it_belongs() {
    let denied = Req::new(b"")
        .header("x-other", TOKEN)
        .denied(&header_token(), &[TOKEN]);
    assert_eq!(denied.reason, DenyReason::MissingCredentials);
    assert!(denied.message.contains("`X-Webhook-Token`"), "{denied}");
    let denied = Req::new(b"")
        .query("tokens=x&token=")
        .denied(&query_token(), &[TOKEN]);
    assert_eq!(denied.reason, DenyReason::MissingCredentials);
    assert!(
        denied.message.contains("`token` query parameter"),
        "{denied}"
    );
    assert_eq!(
        Req::new(b"")
            .header("x-webhook-token", "  ")
            .reason(&header_token(), &[TOKEN]),
        DenyReason::MissingCredentials
    );
}

#[test]
fn during_a_rotation_either_active_token_passes() {
    for sent in [TOKEN, OLD_TOKEN] {
        let req = Req::new(b"").header("x-webhook-token", sent);
        assert_eq!(req.check(&header_token(), &[TOKEN, OLD_TOKEN]), Ok(()));
    }
    let req = Req::new(b"").header("x-webhook-token", "tok_third");
    assert_eq!(
        req.reason(&header_token(), &[TOKEN, OLD_TOKEN]),
        DenyReason::Mismatch
    );
}

#[test]
fn a_token_prefix_or_extension_does_not_pass() {
    let extended = format!("{TOKEN}x");
    for sent in [&TOKEN[..TOKEN.len() - 1], extended.as_str()] {
        let req = Req::new(b"").header("x-webhook-token", sent);
        assert_eq!(req.reason(&header_token(), &[TOKEN]), DenyReason::Mismatch);
    }
}

// --- basic ----------------------------------------------------------------------------------

fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn basic() -> Verification {
    Verification::Basic {
        username: "acme".into(),
    }
}

#[test]
fn basic_credentials_with_a_colon_in_the_password_pass() {
    let password = "pa:ss:word";
    let req = Req::new(b"").header("authorization", &basic_header("acme", password));
    assert_eq!(req.check(&basic(), &[password]), Ok(()));
}

#[test]
fn a_wrong_basic_password_or_username_is_a_mismatch() {
    for (user, password) in [
        ("acme", "wrong"),
        ("other", "secret-pw"),
        ("acme:secret-pw", ""),
    ] {
        let req = Req::new(b"").header("authorization", &basic_header(user, password));
        let denied = req.denied(&basic(), &["secret-pw"]);
        assert_eq!(denied.reason, DenyReason::Mismatch, "{user}:{password}");
        assert!(!denied.message.contains("secret-pw"), "{denied}");
    }
}

#[test]
fn missing_basic_credentials_are_missing() {
    assert_eq!(
        Req::new(b"").reason(&basic(), &["pw"]),
        DenyReason::MissingCredentials
    );
}

#[test]
fn malformed_basic_credentials_are_malformed() {
    let no_colon = format!("Basic {}", STANDARD.encode("no-colon"));
    for value in [
        "Bearer abc",
        "Basic !!!not-base64",
        no_colon.as_str(),
        "Basic",
    ] {
        let req = Req::new(b"").header("authorization", value);
        assert_eq!(
            req.reason(&basic(), &["pw"]),
            DenyReason::Malformed,
            "{value}"
        );
    }
}

#[test]
fn during_a_rotation_either_basic_password_passes() {
    for password in ["new-pw", "old-pw"] {
        let req = Req::new(b"").header("authorization", &basic_header("acme", password));
        assert_eq!(req.check(&basic(), &["new-pw", "old-pw"]), Ok(()));
    }
}

// --- IP allow list --------------------------------------------------------------------------

fn allow_list(allow: &[&str], trusted: &[&str]) -> Verification {
    Verification::IpAllowList {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
    }
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter()
        .map(|s| s.parse().expect("test network"))
        .collect()
}

#[test]
fn a_peer_inside_the_allow_list_passes_and_one_outside_is_refused() {
    let v = allow_list(&["192.0.2.0/24", "198.51.100.7", "2001:db8::/32"], &[]);
    for peer in ["192.0.2.200", "198.51.100.7", "2001:db8::42"] {
        assert_eq!(Req::new(b"").peer(peer).check(&v, &[]), Ok(()), "{peer}");
    }
    for peer in ["192.0.3.1", "198.51.100.8", "2001:db9::1"] {
        let denied = Req::new(b"").peer(peer).denied(&v, &[]);
        assert_eq!(denied.reason, DenyReason::AddressNotAllowed, "{peer}");
        assert!(denied.message.contains(peer), "{denied}");
    }
}

#[test]
fn an_ipv4_mapped_ipv6_peer_counts_as_ipv4() {
    let v = allow_list(&["192.0.2.0/24"], &[]);
    assert_eq!(
        Req::new(b"").peer("::ffff:192.0.2.7").check(&v, &[]),
        Ok(())
    );
    assert_eq!(
        client_address(ip("::ffff:192.0.2.7"), &[], &[]),
        ip("192.0.2.7")
    );
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let v = allow_list(&["192.0.2.0/24"], &["10.0.0.0/8"]);
    let req = Req::new(b"")
        .peer("203.0.113.5")
        .header("x-forwarded-for", "192.0.2.1");
    assert_eq!(req.reason(&v, &[]), DenyReason::AddressNotAllowed);
}

#[test]
fn behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client() {
    let v = allow_list(&["192.0.2.0/24"], &["10.0.0.0/8"]);
    let req = Req::new(b"")
        .peer("10.0.0.1")
        .header("x-forwarded-for", "198.51.100.1, 192.0.2.9, 10.0.0.2");
    assert_eq!(req.check(&v, &[]), Ok(()));
    let client = client_address(req.peer, &req.headers, &nets(&["10.0.0.0/8"]));
    assert_eq!(client, ip("192.0.2.9"));
}

#[test]
fn a_spoofed_leftmost_forwarded_address_is_not_trusted() {
    // The client wrote the allowed address itself; the proxy appended the real one.
    let v = allow_list(&["192.0.2.0/24"], &["10.0.0.0/8"]);
    let req = Req::new(b"")
        .peer("10.0.0.1")
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-forwarded-for", "203.0.113.66");
    let denied = req.denied(&v, &[]);
    assert_eq!(denied.reason, DenyReason::AddressNotAllowed);
    assert!(denied.message.contains("203.0.113.66"), "{denied}");
}

#[test]
fn when_every_forwarded_address_is_trusted_the_leftmost_is_the_client() {
    let trusted = nets(&["10.0.0.0/8"]);
    let headers = vec![(
        "x-forwarded-for".to_owned(),
        "10.1.1.1, 10.2.2.2".to_owned(),
    )];
    assert_eq!(
        client_address(ip("10.0.0.1"), &headers, &trusted),
        ip("10.1.1.1")
    );
    assert_eq!(
        client_address(ip("10.0.0.1"), &[], &trusted),
        ip("10.0.0.1")
    );
}

#[test]
fn a_malformed_forwarded_entry_stops_the_walk_at_the_last_good_address() {
    let trusted = nets(&["10.0.0.0/8"]);
    let headers = vec![(
        "x-forwarded-for".to_owned(),
        "192.0.2.1, not-an-ip, 10.0.0.2".to_owned(),
    )];
    assert_eq!(
        client_address(ip("10.0.0.1"), &headers, &trusted),
        ip("10.0.0.2")
    );
}

#[test]
fn forwarded_entries_may_carry_ports_and_mapped_addresses() {
    let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
    let headers = vec![(
        "x-forwarded-for".to_owned(),
        "::ffff:192.0.2.5, [2001:db8::1]:443, 10.0.0.3:8080".to_owned(),
    )];
    assert_eq!(
        client_address(ip("::ffff:10.0.0.1"), &headers, &trusted),
        ip("192.0.2.5")
    );
}
