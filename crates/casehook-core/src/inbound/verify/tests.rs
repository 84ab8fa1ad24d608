//! Tests of inbound verification. Signatures are computed here with the `hmac` crate directly,
//! following each vendor's documentation, never with the code under test.
//!
//! - this file: helpers, configuration checks, serde shapes, and a no-panic property.
//! - `credentials`: token, HTTP Basic and the IP allow list.
//! - `generic_hmac`: the generic HMAC check.
//! - `vendors`: GitHub, Shopify, Slack, Stripe and Standard Webhooks.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::json;
use sha2::Sha256;

use super::*;
use crate::FieldErrorCode;

mod credentials;
mod generic_hmac;
mod vendors;

/// A request under construction; header names are lowercased as the server does.
#[derive(Clone, Debug)]
struct Req {
    headers: Vec<(String, String)>,
    query: Option<String>,
    body: Vec<u8>,
    peer: IpAddr,
    now: i64,
}

impl Req {
    fn new(body: &[u8]) -> Self {
        Self {
            headers: Vec::new(),
            query: None,
            body: body.to_vec(),
            peer: ip("192.0.2.10"),
            now: 1_700_000_000,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn query(mut self, query: &str) -> Self {
        self.query = Some(query.to_owned());
        self
    }

    fn peer(mut self, peer: &str) -> Self {
        self.peer = ip(peer);
        self
    }

    fn now(mut self, now: i64) -> Self {
        self.now = now;
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            headers: &self.headers,
            query: self.query.as_deref(),
            body: &self.body,
            peer: self.peer,
            now_unix: self.now,
        }
    }

    fn check(&self, v: &Verification, secrets: &[&str]) -> Result<(), Denied> {
        verify(v, secrets, &self.view())
    }

    /// The refusal, asserting there is one.
    fn denied(&self, v: &Verification, secrets: &[&str]) -> Denied {
        match self.check(v, secrets) {
            Ok(()) => panic!("expected {v:?} to refuse {self:?}"),
            Err(denied) => denied,
        }
    }

    fn reason(&self, v: &Verification, secrets: &[&str]) -> DenyReason {
        self.denied(v, secrets).reason
    }
}

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","amount":42}"#;
const TAMPERED: &[u8] = br#"{"id":"evt_1","amount":4200}"#;

/// Asserts a refusal's reason and that its message repeats none of `secrets`.
fn refused(req: &Req, v: &Verification, secrets: &[&str], reason: DenyReason) -> Denied {
    let denied = req.denied(v, secrets);
    assert_eq!(denied.reason, reason, "{denied}");
    for secret in secrets {
        assert!(!denied.message.contains(secret), "{denied}");
    }
    denied
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex_sha256(key: &str, message: &[u8]) -> String {
    hex::encode(hmac_sha256(key.as_bytes(), message))
}

fn b64_sha256(key: &str, message: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(key.as_bytes(), message))
}

/// One configuration of every kind, for the properties that hold for all of them.
fn every_kind() -> Vec<Verification> {
    vec![
        Verification::Token {
            header: Some("x-token".into()),
            query: None,
        },
        Verification::Token {
            header: None,
            query: Some("token".into()),
        },
        Verification::Basic {
            username: "casehook".into(),
        },
        Verification::IpAllowList {
            allow: vec!["192.0.2.0/24".into(), "2001:db8::/32".into()],
            trusted_proxies: vec!["10.0.0.0/8".into()],
        },
        Verification::Hmac {
            header: "x-signature".into(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            prefix: Some("sha512=".into()),
            signed_content: Some("{timestamp}.{body}".into()),
            timestamp_header: Some("x-timestamp".into()),
            tolerance_secs: Some(300),
        },
        Verification::StandardWebhooks {
            tolerance_secs: None,
        },
        Verification::Stripe {
            tolerance_secs: None,
        },
        Verification::Github {},
        Verification::Shopify {},
        Verification::Slack {},
    ]
}

// --- configuration checks -------------------------------------------------------------------

fn fields(v: &Verification) -> Vec<String> {
    let errors = v.check("verifications[0]");
    assert!(
        errors
            .iter()
            .all(|e| e.code == FieldErrorCode::InvalidDefinition),
        "{errors:?}"
    );
    errors.into_iter().map(|e| e.field).collect()
}

fn hmac_config(
    header: &str,
    signed_content: Option<&str>,
    timestamp_header: Option<&str>,
    tolerance_secs: Option<u64>,
) -> Verification {
    Verification::Hmac {
        header: header.into(),
        algorithm: HmacAlgorithm::default(),
        encoding: SignatureEncoding::default(),
        prefix: None,
        signed_content: signed_content.map(Into::into),
        timestamp_header: timestamp_header.map(Into::into),
        tolerance_secs,
    }
}

#[test]
fn every_example_configuration_passes_its_check() {
    for v in every_kind() {
        assert_eq!(v.check("v"), vec![], "{v:?}");
    }
}

#[test]
fn a_token_check_takes_exactly_one_of_header_and_query() {
    let both = Verification::Token {
        header: Some("x-token".into()),
        query: Some("token".into()),
    };
    let neither = Verification::Token {
        header: None,
        query: None,
    };
    assert_eq!(fields(&both), ["verifications[0].header"]);
    assert_eq!(fields(&neither), ["verifications[0].header"]);
}

#[test]
fn header_and_query_names_must_be_valid() {
    let bad_header = Verification::Token {
        header: Some("X Token".into()),
        query: None,
    };
    let bad_query = Verification::Token {
        header: None,
        query: Some("a&b".into()),
    };
    let bad_hmac = hmac_config("x-sig:", None, Some(""), None);
    assert_eq!(fields(&bad_header), ["verifications[0].header"]);
    assert_eq!(fields(&bad_query), ["verifications[0].query"]);
    assert_eq!(
        fields(&bad_hmac),
        [
            "verifications[0].header",
            "verifications[0].timestamp_header"
        ]
    );
}

#[test]
fn a_basic_username_is_non_empty_and_has_no_colon() {
    for username in ["", "user:name"] {
        let v = Verification::Basic {
            username: username.into(),
        };
        assert_eq!(fields(&v), ["verifications[0].username"], "{username:?}");
    }
}

#[test]
fn allow_lists_are_non_empty_and_every_entry_parses() {
    let empty = Verification::IpAllowList {
        allow: vec![],
        trusted_proxies: vec![],
    };
    assert_eq!(fields(&empty), ["verifications[0].allow"]);
    let bad = Verification::IpAllowList {
        allow: vec!["192.0.2.1".into(), "10.0.0.0/33".into(), "::1".into()],
        trusted_proxies: vec!["proxy.internal".into()],
    };
    assert_eq!(
        fields(&bad),
        [
            "verifications[0].allow[1]",
            "verifications[0].trusted_proxies[0]"
        ]
    );
}

#[test]
fn signed_content_has_body_once_and_only_known_placeholders() {
    let twice = hmac_config("x-sig", Some("{body}{body}"), None, None);
    let none = hmac_config("x-sig", Some("static"), None, None);
    let unknown = hmac_config("x-sig", Some("{id}.{body}"), None, None);
    let no_ts_header = hmac_config("x-sig", Some("{timestamp}.{body}"), None, None);
    let good = hmac_config(
        "x-sig",
        Some("v0:{timestamp}:{body} {not a placeholder"),
        Some("x-ts"),
        None,
    );
    assert_eq!(fields(&twice), ["verifications[0].signed_content"]);
    assert_eq!(fields(&none), ["verifications[0].signed_content"]);
    assert_eq!(fields(&unknown), ["verifications[0].signed_content"]);
    assert_eq!(fields(&no_ts_header), ["verifications[0].timestamp_header"]);
    assert_eq!(fields(&good), Vec::<String>::new());
}

#[test]
fn tolerances_lie_between_one_second_and_one_day() {
    for (t, ok) in [(0, false), (1, true), (86_400, true), (86_401, false)] {
        let v = Verification::Stripe {
            tolerance_secs: Some(t),
        };
        assert_eq!(v.check("v").is_empty(), ok, "{t}");
        let v = hmac_config("x-sig", None, Some("x-ts"), Some(t));
        assert_eq!(v.check("v").is_empty(), ok, "{t}");
    }
}

#[test]
fn check_reports_every_problem_at_once() {
    let v = hmac_config("bad header", Some("{nope}"), None, Some(0));
    assert_eq!(v.check("h").len(), 4, "{:?}", v.check("h"));
}

#[test]
fn secrets_are_non_empty_bounded_and_whsec_for_standard_webhooks() {
    let token = &every_kind()[0];
    assert!(token.check_secret("").is_err());
    assert!(token.check_secret(&"x".repeat(MAX_SECRET_LEN)).is_ok());
    assert!(token.check_secret(&"x".repeat(MAX_SECRET_LEN + 1)).is_err());
    let sw = Verification::StandardWebhooks {
        tolerance_secs: None,
    };
    assert!(
        sw.check_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .is_ok()
    );
    let refused = sw
        .check_secret("whsec_not base64!")
        .expect_err("not base64");
    assert!(!refused.contains("not base64!"), "{refused}");
    assert!(
        token.check_secret(" padded").is_err(),
        "header tokens arrive trimmed"
    );
    let query_token = &every_kind()[1];
    assert!(query_token.check_secret(" padded").is_ok());
    let ip_list = &every_kind()[3];
    assert!(ip_list.check_secret("anything").is_err());
}

#[test]
fn generated_secrets_exist_only_where_casehook_may_choose_them() {
    for v in every_kind() {
        let generated = v.generate_secret();
        let expected = matches!(
            v,
            Verification::Token { .. }
                | Verification::Basic { .. }
                | Verification::Hmac { .. }
                | Verification::StandardWebhooks { .. }
                | Verification::Github {}
        );
        assert_eq!(generated.is_some(), expected, "{v:?}");
        if let Some(secret) = generated {
            assert_eq!(v.check_secret(&secret), Ok(()), "{v:?}");
            assert_ne!(v.generate_secret(), Some(secret), "secrets are random");
        }
    }
    let token = every_kind()[0].generate_secret().expect("token secret");
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64url: {token}");
    let sw = Verification::StandardWebhooks {
        tolerance_secs: None,
    };
    assert!(sw.generate_secret().expect("whsec").starts_with("whsec_"));
}

// --- serde shapes ---------------------------------------------------------------------------

#[test]
fn kind_is_the_serde_tag() {
    for v in every_kind() {
        let value = serde_json::to_value(&v).expect("serializes");
        assert_eq!(value["kind"], v.kind(), "{value}");
        let back: Verification = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, v);
    }
}

#[test]
fn hmac_options_default_to_sha256_hex_over_the_body() {
    let v: Verification =
        serde_json::from_value(json!({"kind": "hmac", "header": "x-sig"})).expect("parses");
    assert_eq!(v, hmac_config("x-sig", None, None, None));
    let v: Verification = serde_json::from_value(json!({
        "kind": "hmac", "header": "x-sig", "algorithm": "sha1", "encoding": "base64"
    }))
    .expect("parses");
    assert!(matches!(
        v,
        Verification::Hmac {
            algorithm: HmacAlgorithm::Sha1,
            encoding: SignatureEncoding::Base64,
            ..
        }
    ));
}

#[test]
fn unknown_kinds_and_misspelt_options_are_refused() {
    // serde applies `deny_unknown_fields` to variants with fields only: a unit kind such as
    // `github` ignores extra keys.
    let unknown_kind = json!({"kind": "gitlab"});
    let token_typo = json!({"kind": "token", "headr": "x-token"});
    let stripe_typo = json!({"kind": "stripe", "tolerance": 60});
    for body in [unknown_kind, token_typo, stripe_typo] {
        assert!(
            serde_json::from_value::<Verification>(body.clone()).is_err(),
            "{body}"
        );
    }
}

#[test]
fn deny_reasons_serialize_as_their_codes() {
    for reason in [
        DenyReason::MissingCredentials,
        DenyReason::Malformed,
        DenyReason::StaleTimestamp,
        DenyReason::Mismatch,
        DenyReason::AddressNotAllowed,
        DenyReason::NoSecret,
    ] {
        assert_eq!(
            serde_json::to_value(reason).expect("serializes"),
            reason.as_str()
        );
    }
}

#[test]
fn token_and_basic_name_what_logs_must_redact() {
    let header = Verification::Token {
        header: Some("X-Api-Token".into()),
        query: None,
    };
    let query = Verification::Token {
        header: None,
        query: Some("key".into()),
    };
    let basic = Verification::Basic {
        username: "u".into(),
    };
    assert_eq!(secret_header_names(&header), ["x-api-token"]);
    assert!(secret_query_names(&header).is_empty());
    assert_eq!(secret_query_names(&query), ["key"]);
    assert!(secret_header_names(&query).is_empty());
    assert_eq!(secret_header_names(&basic), ["authorization"]);
    assert!(secret_header_names(&Verification::Github {}).is_empty());
}

// --- properties that hold for every kind ----------------------------------------------------

#[test]
fn no_secret_means_no_entry_except_for_the_ip_allow_list() {
    let req = Req::new(b"{}").header("x-token", "");
    for v in every_kind() {
        if v.needs_secret() {
            assert_eq!(req.reason(&v, &[]), DenyReason::NoSecret, "{v:?}");
            assert_eq!(req.reason(&v, &[""]), DenyReason::NoSecret, "{v:?}");
        } else {
            assert_eq!(req.check(&v, &[]), Ok(()));
        }
    }
}

/// Header names every kind reads, so arbitrary values reach the parsers.
const READ_HEADERS: &[&str] = &[
    "x-token",
    "authorization",
    "x-forwarded-for",
    "x-signature",
    "x-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-slack-request-timestamp",
];

proptest! {
    #[test]
    fn arbitrary_requests_never_panic_any_kind(
        headers in prop::collection::vec(
            (prop::sample::select(READ_HEADERS), any::<String>()), 0..6),
        query in prop::option::of(any::<String>()),
        body in prop::collection::vec(any::<u8>(), 0..64),
        now in any::<i64>(),
        peer in any::<std::net::Ipv6Addr>(),
    ) {
        let headers: Vec<(String, String)> =
            headers.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        let req = RequestView {
            headers: &headers,
            query: query.as_deref(),
            body: &body,
            peer: IpAddr::V6(peer),
            now_unix: now,
        };
        for v in every_kind() {
            let _ = verify(&v, &["secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], &req);
        }
    }
}

#[test]
fn vendor_kinds_keep_their_bare_shape_and_refuse_unknown_keys() {
    for kind in ["github", "shopify", "slack"] {
        let v: Verification =
            serde_json::from_value(serde_json::json!({"kind": kind})).expect("a bare kind");
        assert_eq!(
            serde_json::to_value(&v).expect("serialize"),
            serde_json::json!({"kind": kind})
        );
        let typo = serde_json::from_value::<Verification>(
            serde_json::json!({"kind": kind, "sekret": "x"}),
        );
        assert!(typo.is_err(), "{kind}: an unknown key is refused");
    }
}
