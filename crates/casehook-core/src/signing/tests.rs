use super::*;
use proptest::prelude::*;

/// The example published with the Standard Webhooks reference libraries.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn spec_secret() -> SigningSecret {
    SigningSecret::parse(SPEC_SECRET).expect("spec secret parses")
}

fn check(
    secrets: &[&SigningSecret],
    ts_header: &str,
    sig_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    verify(
        secrets,
        SPEC_ID,
        ts_header,
        sig_header,
        body,
        now,
        DEFAULT_TOLERANCE_SECS,
    )
}

#[test]
fn signing_reproduces_the_published_example_vector() {
    assert_eq!(
        sign(&spec_secret(), SPEC_ID, SPEC_TS, SPEC_BODY),
        SPEC_SIGNATURE
    );
}

#[test]
fn the_published_example_verifies() {
    let secret = spec_secret();
    check(&[&secret], "1614265330", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS).expect("verifies");
}

#[test]
fn the_whsec_prefix_is_optional_on_input() {
    let bare = SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("bare base64");
    assert_eq!(bare, spec_secret());
    assert_eq!(sign(&bare, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
}

#[test]
fn pasted_secrets_tolerate_whitespace_and_missing_padding() {
    let generated = SigningSecret::generate();
    let whsec = generated.to_whsec();
    assert!(
        whsec.ends_with('='),
        "32 bytes encode with one pad: {whsec}"
    );
    let unpadded = whsec.trim_end_matches('=');
    assert_eq!(SigningSecret::parse(unpadded).expect("unpadded"), generated);
    assert_eq!(
        SigningSecret::parse(&format!("  {whsec}\n")).expect("padded, with whitespace"),
        generated
    );
}

#[test]
fn bad_secrets_are_refused_with_a_reason() {
    assert_eq!(SigningSecret::parse(""), Err(SecretError::Empty));
    assert_eq!(SigningSecret::parse("whsec_"), Err(SecretError::Empty));
    assert_eq!(
        SigningSecret::parse("whsec_not base64!"),
        Err(SecretError::NotBase64)
    );
    let long = STANDARD.encode([7u8; 65]);
    assert_eq!(SigningSecret::parse(&long), Err(SecretError::TooLong(65)));
    assert!(SigningSecret::from_bytes(&[]).is_err());
    assert!(SigningSecret::from_bytes(&[1; 64]).is_ok());
}

#[test]
fn generated_secrets_are_32_random_bytes_and_round_trip() {
    let a = SigningSecret::generate();
    let b = SigningSecret::generate();
    assert_ne!(a, b);
    let whsec = a.to_whsec();
    assert!(whsec.starts_with("whsec_"));
    let decoded = STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .expect("base64");
    assert_eq!(decoded.len(), GENERATED_SECRET_BYTES);
    assert_eq!(whsec.parse::<SigningSecret>().expect("parses"), a);
}

#[test]
fn debug_never_shows_the_secret() {
    let secret = spec_secret();
    let shown = format!("{secret:?} {:?}", Some(&secret));
    assert!(shown.contains("SigningSecret(**redacted**)"));
    assert!(!shown.contains("MfKQ9r8"));
}

#[test]
fn secrets_deserialize_from_their_whsec_string() {
    let s: SigningSecret = serde_json::from_str(&format!("\"{SPEC_SECRET}\"")).expect("parses");
    assert_eq!(s, spec_secret());
    let err = serde_json::from_str::<SigningSecret>("\"whsec_%%%\"").expect_err("bad");
    assert!(err.to_string().contains("not valid base64"), "{err}");
}

#[test]
fn a_tampered_body_id_or_timestamp_fails() {
    let secret = spec_secret();
    assert_eq!(
        check(
            &[&secret],
            "1614265330",
            SPEC_SIGNATURE,
            br#"{"test": 2432232315}"#,
            SPEC_TS
        ),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        verify(
            &[&secret],
            "msg_other",
            "1614265330",
            SPEC_SIGNATURE,
            SPEC_BODY,
            SPEC_TS,
            300
        ),
        Err(VerifyError::NoMatch)
    );
    assert_eq!(
        check(&[&secret], "1614265331", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn a_different_secret_fails() {
    let other = SigningSecret::generate();
    assert_eq!(
        check(&[&other], "1614265330", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn rotation_signs_with_both_secrets_and_either_verifies() {
    let old = spec_secret();
    let new = SigningSecret::generate();
    let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TS, SPEC_BODY);
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1], SPEC_SIGNATURE);
    for receiver in [&old, &new] {
        check(&[receiver], "1614265330", &header, SPEC_BODY, SPEC_TS).expect("either secret");
    }
    // A receiver holding both (its own rotation) accepts a message signed with only one.
    let only_new = sign(&new, SPEC_ID, SPEC_TS, SPEC_BODY);
    check(&[&old, &new], "1614265330", &only_new, SPEC_BODY, SPEC_TS).expect("second secret");
}

#[test]
fn unknown_versions_and_malformed_entries_are_skipped() {
    let secret = spec_secret();
    let header = format!(
        "v1a,aGVsbG8= garbage v2,{} v1,%%% {SPEC_SIGNATURE}",
        "x".repeat(10)
    );
    check(&[&secret], "1614265330", &header, SPEC_BODY, SPEC_TS).expect("v1 found");
    assert_eq!(
        check(
            &[&secret],
            "1614265330",
            "v1a,aGVsbG8= garbage",
            SPEC_BODY,
            SPEC_TS
        ),
        Err(VerifyError::NoV1Signature)
    );
    // A well-formed v1 signature of the wrong length is a mismatch, not a crash.
    assert_eq!(
        check(&[&secret], "1614265330", "v1,aGVsbG8=", SPEC_BODY, SPEC_TS),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn timestamps_outside_the_tolerance_are_refused_both_ways() {
    let secret = spec_secret();
    let ok = |now| check(&[&secret], "1614265330", SPEC_SIGNATURE, SPEC_BODY, now);
    ok(SPEC_TS + 300).expect("exactly at the tolerance, late");
    ok(SPEC_TS - 300).expect("exactly at the tolerance, early");
    assert_eq!(
        ok(SPEC_TS + 301),
        Err(VerifyError::TooOld {
            age_secs: 301,
            tolerance_secs: 300
        })
    );
    assert_eq!(
        ok(SPEC_TS - 301),
        Err(VerifyError::TooNew {
            ahead_secs: 301,
            tolerance_secs: 300
        })
    );
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let secret = spec_secret();
    let min = i64::MIN.to_string();
    let max = i64::MAX.to_string();
    assert!(matches!(
        check(&[&secret], &min, SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::TooOld { .. })
    ));
    assert!(matches!(
        check(&[&secret], &max, SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::TooNew { .. })
    ));
}

#[test]
fn malformed_and_missing_headers_get_precise_errors() {
    let secret = spec_secret();
    for bad in [
        "abc",
        "1.5",
        "+1614265330",
        "1e9",
        "99999999999999999999",
        "-",
    ] {
        assert!(
            matches!(
                check(&[&secret], bad, SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
                Err(VerifyError::BadTimestamp(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        verify(&[&secret], " ", "1", "v1,x", b"", 1, 300),
        Err(VerifyError::MissingHeader("webhook-id"))
    );
    assert_eq!(
        check(&[&secret], "", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::MissingHeader("webhook-timestamp"))
    );
    assert_eq!(
        check(&[&secret], "1614265330", "  ", SPEC_BODY, SPEC_TS),
        Err(VerifyError::MissingHeader("webhook-signature"))
    );
    assert_eq!(
        check(&[], "1614265330", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS),
        Err(VerifyError::NoSecret)
    );
}

#[test]
fn long_header_values_are_shortened_in_errors() {
    let secret = spec_secret();
    let long = "x".repeat(10_000);
    let err = check(&[&secret], &long, SPEC_SIGNATURE, SPEC_BODY, SPEC_TS).expect_err("bad");
    assert!(err.to_string().len() < 200, "{err}");
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        key in proptest::collection::vec(any::<u8>(), 1..=64),
        msg_id in "msg_[A-Za-z0-9]{1,30}",
        ts in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let secret = SigningSecret::from_bytes(&key).expect("valid length");
        let reparsed = SigningSecret::parse(&secret.to_whsec()).expect("round trip");
        prop_assert_eq!(&reparsed, &secret);
        let header = signature_header(&[&secret], &msg_id, ts, &body);
        prop_assert!(verify(&[&reparsed], &msg_id, &ts.to_string(), &header, &body, ts, 0).is_ok());
    }

    #[test]
    fn any_changed_body_byte_fails(
        body in proptest::collection::vec(any::<u8>(), 1..128),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let secret = spec_secret();
        let header = sign(&secret, SPEC_ID, SPEC_TS, &body);
        let mut tampered = body.clone();
        let i = index.index(tampered.len());
        tampered[i] ^= flip;
        prop_assert_eq!(
            check(&[&secret], "1614265330", &header, &tampered, SPEC_TS),
            Err(VerifyError::NoMatch)
        );
    }
}
