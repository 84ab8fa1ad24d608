//! The vendor presets: GitHub, Shopify, Slack, Stripe and Standard Webhooks. Each vendor's
//! header is built by hand, as its documentation describes, from an HMAC computed here.

use super::*;

// --- GitHub ---------------------------------------------------------------------------------

const GITHUB_SECRET: &str = "It's a Secret to Everybody";

fn github_req(secret: &str, body: &[u8]) -> Req {
    let sig = format!("sha256={}", hex_sha256(secret, body));
    Req::new(body).header("X-Hub-Signature-256", &sig)
}

#[test]
fn githubs_published_example_passes() {
    let req = Req::new(b"Hello, World!").header(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    );
    assert_eq!(
        req.check(&Verification::Github {}, &[GITHUB_SECRET]),
        Ok(())
    );
}

#[test]
fn github_refuses_a_wrong_secret_a_tampered_body_and_a_missing_or_malformed_header() {
    let v = Verification::Github {};
    let secrets = [GITHUB_SECRET];
    let d = refused(
        &github_req("another secret", BODY),
        &v,
        &secrets,
        DenyReason::Mismatch,
    );
    assert!(d.message.contains("`X-Hub-Signature-256`"), "{d}");
    let tampered = github_req(GITHUB_SECRET, BODY).body(TAMPERED);
    refused(&tampered, &v, &secrets, DenyReason::Mismatch);
    let d = refused(
        &Req::new(BODY),
        &v,
        &secrets,
        DenyReason::MissingCredentials,
    );
    assert_eq!(d.message, "the `X-Hub-Signature-256` header is missing");
    let sha1 = Req::new(BODY).header("x-hub-signature-256", "sha1=0123abcd");
    refused(&sha1, &v, &secrets, DenyReason::Malformed);
    let bad_hex = Req::new(BODY).header("x-hub-signature-256", "sha256=zz€not-hex");
    refused(&bad_hex, &v, &secrets, DenyReason::Mismatch);
}

#[test]
fn github_accepts_either_secret_during_a_rotation() {
    for secret in ["new secret", GITHUB_SECRET] {
        let req = github_req(secret, BODY);
        assert_eq!(
            req.check(&Verification::Github {}, &["new secret", GITHUB_SECRET]),
            Ok(())
        );
    }
}

#[test]
fn a_mismatch_message_never_reveals_the_expected_signature() {
    let expected = hex_sha256(GITHUB_SECRET, BODY);
    let req = Req::new(BODY).header("x-hub-signature-256", "sha256=00");
    let denied = req.denied(&Verification::Github {}, &[GITHUB_SECRET]);
    assert!(!denied.message.contains(&expected), "{denied}");
    assert!(!denied.message.contains(&expected[..16]), "{denied}");
}

// --- Shopify --------------------------------------------------------------------------------

const SHOPIFY_SECRET: &str = "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";

fn shopify_req(secret: &str, body: &[u8]) -> Req {
    Req::new(body).header("X-Shopify-Hmac-Sha256", &b64_sha256(secret, body))
}

#[test]
fn a_shopify_request_signed_with_the_secret_passes() {
    let req = shopify_req(SHOPIFY_SECRET, BODY);
    assert_eq!(
        req.check(&Verification::Shopify {}, &[SHOPIFY_SECRET]),
        Ok(())
    );
}

#[test]
fn shopify_refuses_a_wrong_secret_a_tampered_body_and_a_missing_or_malformed_header() {
    let v = Verification::Shopify {};
    let secrets = [SHOPIFY_SECRET];
    refused(
        &shopify_req("shpss_other", BODY),
        &v,
        &secrets,
        DenyReason::Mismatch,
    );
    let tampered = shopify_req(SHOPIFY_SECRET, BODY).body(TAMPERED);
    refused(&tampered, &v, &secrets, DenyReason::Mismatch);
    let d = refused(
        &Req::new(BODY),
        &v,
        &secrets,
        DenyReason::MissingCredentials,
    );
    assert!(d.message.contains("`X-Shopify-Hmac-Sha256`"), "{d}");
    // Signature text that is not base64 is a signature that matches nothing.
    let bad = Req::new(BODY).header("x-shopify-hmac-sha256", "%%%not base64%%%");
    refused(&bad, &v, &secrets, DenyReason::Mismatch);
}

#[test]
fn shopify_accepts_either_secret_during_a_rotation() {
    for secret in [SHOPIFY_SECRET, "shpss_old"] {
        let req = shopify_req(secret, BODY);
        assert_eq!(
            req.check(&Verification::Shopify {}, &[SHOPIFY_SECRET, "shpss_old"]),
            Ok(())
        );
    }
}

// --- Slack ----------------------------------------------------------------------------------

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn slack_req(secret: &str, ts: i64, body: &[u8]) -> Req {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    Req::new(body)
        .now(NOW)
        .header("X-Slack-Request-Timestamp", &ts.to_string())
        .header(
            "X-Slack-Signature",
            &format!("v0={}", hex_sha256(secret, &base)),
        )
}

#[test]
fn slacks_published_example_passes() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let req = Req::new(body.as_bytes())
        .now(1_531_420_618)
        .header("X-Slack-Request-Timestamp", "1531420618")
        .header(
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        );
    assert_eq!(req.check(&Verification::Slack {}, &[SLACK_SECRET]), Ok(()));
}

#[test]
fn a_slack_request_signed_with_the_secret_passes() {
    let req = slack_req(SLACK_SECRET, NOW - 10, BODY);
    assert_eq!(req.check(&Verification::Slack {}, &[SLACK_SECRET]), Ok(()));
}

#[test]
fn slack_refuses_a_wrong_secret_a_tampered_body_and_missing_or_malformed_headers() {
    let v = Verification::Slack {};
    let secrets = [SLACK_SECRET];
    refused(
        &slack_req("wrong", NOW, BODY),
        &v,
        &secrets,
        DenyReason::Mismatch,
    );
    let tampered = slack_req(SLACK_SECRET, NOW, BODY).body(TAMPERED);
    refused(&tampered, &v, &secrets, DenyReason::Mismatch);
    let mut no_ts = slack_req(SLACK_SECRET, NOW, BODY);
    no_ts
        .headers
        .retain(|(n, _)| n != "x-slack-request-timestamp");
    let d = refused(&no_ts, &v, &secrets, DenyReason::MissingCredentials);
    assert!(d.message.contains("`X-Slack-Request-Timestamp`"), "{d}");
    let mut no_sig = slack_req(SLACK_SECRET, NOW, BODY);
    no_sig.headers.retain(|(n, _)| n != "x-slack-signature");
    let d = refused(&no_sig, &v, &secrets, DenyReason::MissingCredentials);
    assert!(d.message.contains("`X-Slack-Signature`"), "{d}");
    let bad_ts = Req::new(BODY)
        .now(NOW)
        .header("x-slack-request-timestamp", "1e9")
        .header("x-slack-signature", "v0=00");
    refused(&bad_ts, &v, &secrets, DenyReason::Malformed);
    let v1 = Req::new(BODY)
        .now(NOW)
        .header("x-slack-request-timestamp", &NOW.to_string())
        .header("x-slack-signature", "v1=00");
    refused(&v1, &v, &secrets, DenyReason::Malformed);
}

#[test]
fn slack_refuses_timestamps_more_than_five_minutes_away() {
    let v = Verification::Slack {};
    let stale = slack_req(SLACK_SECRET, NOW - 412, BODY);
    let d = refused(&stale, &v, &[SLACK_SECRET], DenyReason::StaleTimestamp);
    assert_eq!(
        d.message,
        "the Slack timestamp is 412 s old; at most 300 s is accepted"
    );
    let future = slack_req(SLACK_SECRET, NOW + 301, BODY);
    let d = refused(&future, &v, &[SLACK_SECRET], DenyReason::StaleTimestamp);
    assert!(d.message.contains("301 s in the future"), "{d}");
    assert_eq!(
        slack_req(SLACK_SECRET, NOW - 300, BODY).check(&v, &[SLACK_SECRET]),
        Ok(())
    );
}

#[test]
fn slack_accepts_either_secret_during_a_rotation() {
    for secret in ["old-slack-secret", SLACK_SECRET] {
        let req = slack_req(secret, NOW, BODY);
        assert_eq!(
            req.check(&Verification::Slack {}, &[SLACK_SECRET, "old-slack-secret"]),
            Ok(())
        );
    }
}

// --- Stripe ---------------------------------------------------------------------------------

const STRIPE_SECRET: &str = "whsec_test_1a2b3c4d5e6f7g8h9i0j";

fn stripe_v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut payload = format!("{t}.").into_bytes();
    payload.extend_from_slice(body);
    hex_sha256(secret, &payload)
}

fn stripe_req(secret: &str, t: i64, body: &[u8]) -> Req {
    let header = format!(
        "t={t},v1={},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        stripe_v1(secret, t, body)
    );
    Req::new(body).now(NOW).header("Stripe-Signature", &header)
}

fn stripe() -> Verification {
    Verification::Stripe {
        tolerance_secs: None,
    }
}

#[test]
fn a_stripe_request_signed_with_the_secret_text_passes() {
    let req = stripe_req(STRIPE_SECRET, NOW - 5, BODY);
    assert_eq!(req.check(&stripe(), &[STRIPE_SECRET]), Ok(()));
}

#[test]
fn stripe_accepts_any_of_several_v1_signatures() {
    let header = format!(
        "t={NOW}, v1={}, v1={}",
        stripe_v1("whsec_rolled_away", NOW, BODY),
        stripe_v1(STRIPE_SECRET, NOW, BODY)
    );
    let req = Req::new(BODY).now(NOW).header("stripe-signature", &header);
    assert_eq!(req.check(&stripe(), &[STRIPE_SECRET]), Ok(()));
}

#[test]
fn stripe_keys_the_hmac_with_the_secret_text_not_its_base64_decoding() {
    let encoded = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let decoded = STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("base64");
    let mut payload = format!("{NOW}.").into_bytes();
    payload.extend_from_slice(BODY);
    let header = format!(
        "t={NOW},v1={}",
        hex::encode(hmac_sha256(&decoded, &payload))
    );
    let req = Req::new(BODY).now(NOW).header("stripe-signature", &header);
    refused(&req, &stripe(), &[encoded], DenyReason::Mismatch);
}

#[test]
fn stripe_refuses_a_wrong_secret_a_tampered_body_and_a_missing_or_malformed_header() {
    let v = stripe();
    let secrets = [STRIPE_SECRET];
    refused(
        &stripe_req("whsec_other", NOW, BODY),
        &v,
        &secrets,
        DenyReason::Mismatch,
    );
    let tampered = stripe_req(STRIPE_SECRET, NOW, BODY).body(TAMPERED);
    refused(&tampered, &v, &secrets, DenyReason::Mismatch);
    let d = refused(
        &Req::new(BODY).now(NOW),
        &v,
        &secrets,
        DenyReason::MissingCredentials,
    );
    assert_eq!(d.message, "the `Stripe-Signature` header is missing");
    let sig = stripe_v1(STRIPE_SECRET, NOW, BODY);
    for malformed in [
        format!("v1={sig}"),
        format!("t=soon,v1={sig}"),
        format!("t={NOW},v0={sig}"),
        "garbage".to_owned(),
    ] {
        let req = Req::new(BODY)
            .now(NOW)
            .header("stripe-signature", &malformed);
        refused(&req, &v, &secrets, DenyReason::Malformed);
    }
    let not_hex = Req::new(BODY)
        .now(NOW)
        .header("stripe-signature", &format!("t={NOW},v1=xyz"));
    refused(&not_hex, &v, &secrets, DenyReason::Mismatch);
}

#[test]
fn stripe_refuses_stale_and_future_timestamps_within_its_tolerance() {
    let secrets = [STRIPE_SECRET];
    refused(
        &stripe_req(STRIPE_SECRET, NOW - 301, BODY),
        &stripe(),
        &secrets,
        DenyReason::StaleTimestamp,
    );
    refused(
        &stripe_req(STRIPE_SECRET, NOW + 301, BODY),
        &stripe(),
        &secrets,
        DenyReason::StaleTimestamp,
    );
    let wide = Verification::Stripe {
        tolerance_secs: Some(600),
    };
    assert_eq!(
        stripe_req(STRIPE_SECRET, NOW - 599, BODY).check(&wide, &secrets),
        Ok(())
    );
}

#[test]
fn stripe_accepts_either_secret_during_a_rotation() {
    for secret in [STRIPE_SECRET, "whsec_old"] {
        let req = stripe_req(secret, NOW, BODY);
        assert_eq!(req.check(&stripe(), &["whsec_old", STRIPE_SECRET]), Ok(()));
    }
}

// --- Standard Webhooks ----------------------------------------------------------------------

/// The example published with the Standard Webhooks reference libraries.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn sw() -> Verification {
    Verification::StandardWebhooks {
        tolerance_secs: None,
    }
}

fn sw_req(now: i64) -> Req {
    Req::new(SW_BODY)
        .now(now)
        .header("webhook-id", SW_ID)
        .header("webhook-timestamp", &SW_TS.to_string())
        .header("webhook-signature", SW_SIGNATURE)
}

#[test]
fn the_standard_webhooks_published_example_passes() {
    assert_eq!(sw_req(SW_TS).check(&sw(), &[SW_SECRET]), Ok(()));
}

#[test]
fn standard_webhooks_signed_independently_passes() {
    let key = STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("base64");
    let signed = format!(
        "{SW_ID}.{NOW}.{}",
        std::str::from_utf8(BODY).expect("utf-8")
    );
    let sig = format!(
        "v1a,AAAA v1,{}",
        STANDARD.encode(hmac_sha256(&key, signed.as_bytes()))
    );
    let req = Req::new(BODY)
        .now(NOW)
        .header("webhook-id", SW_ID)
        .header("webhook-timestamp", &NOW.to_string())
        .header("webhook-signature", &sig);
    assert_eq!(req.check(&sw(), &[SW_SECRET]), Ok(()));
}

#[test]
fn standard_webhooks_refuses_a_wrong_secret_a_tampered_body_and_missing_or_malformed_headers() {
    let v = sw();
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=";
    refused(&sw_req(SW_TS), &v, &[other], DenyReason::Mismatch);
    refused(
        &sw_req(SW_TS).body(b"{}"),
        &v,
        &[SW_SECRET],
        DenyReason::Mismatch,
    );
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut req = sw_req(SW_TS);
        req.headers.retain(|(n, _)| n != name);
        let d = refused(&req, &v, &[SW_SECRET], DenyReason::MissingCredentials);
        assert!(d.message.contains(name), "{d}");
    }
    let mut bad_sig = sw_req(SW_TS);
    bad_sig.headers.retain(|(n, _)| n != "webhook-signature");
    refused(
        &bad_sig.clone().header("webhook-signature", "v2,abc"),
        &v,
        &[SW_SECRET],
        DenyReason::Malformed,
    );
    let bad_ts = Req::new(SW_BODY)
        .header("webhook-id", SW_ID)
        .header("webhook-timestamp", "yesterday")
        .header("webhook-signature", SW_SIGNATURE);
    refused(&bad_ts, &v, &[SW_SECRET], DenyReason::Malformed);
}

#[test]
fn standard_webhooks_refuses_stale_and_future_timestamps() {
    let v = sw();
    refused(
        &sw_req(SW_TS + 301),
        &v,
        &[SW_SECRET],
        DenyReason::StaleTimestamp,
    );
    refused(
        &sw_req(SW_TS - 301),
        &v,
        &[SW_SECRET],
        DenyReason::StaleTimestamp,
    );
    let wide = Verification::StandardWebhooks {
        tolerance_secs: Some(3600),
    };
    assert_eq!(sw_req(SW_TS + 3000).check(&wide, &[SW_SECRET]), Ok(()));
}

#[test]
fn standard_webhooks_accepts_either_secret_during_a_rotation() {
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=";
    assert_eq!(sw_req(SW_TS).check(&sw(), &[other, SW_SECRET]), Ok(()));
}

#[test]
fn standard_webhooks_without_a_valid_whsec_secret_has_no_secret() {
    refused(
        &sw_req(SW_TS),
        &sw(),
        &["not base64 at all!"],
        DenyReason::NoSecret,
    );
}
