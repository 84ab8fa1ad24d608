//! The generic HMAC check: algorithms, encodings, prefixes and signed-content templates.

use sha1::Sha1;
use sha2::Sha512;

use super::*;

const HMAC_SECRET: &str = "generic-hmac-secret";

#[test]
fn generic_hmac_defaults_to_hex_sha256_of_the_body() {
    let v = hmac_config("X-Signature", None, None, None);
    let req = Req::new(BODY).header("x-signature", &hex_sha256(HMAC_SECRET, BODY).to_uppercase());
    assert_eq!(req.check(&v, &[HMAC_SECRET]), Ok(()), "hex in either case");
}

fn sha1_config() -> Verification {
    Verification::Hmac {
        header: "X-Hook-Signature".into(),
        algorithm: HmacAlgorithm::Sha1,
        encoding: SignatureEncoding::Base64,
        prefix: Some("sha1=".into()),
        signed_content: None,
        timestamp_header: None,
        tolerance_secs: None,
    }
}

fn sha1_req(secret: &str, body: &[u8]) -> Req {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let sig = format!("sha1={}", STANDARD.encode(mac.finalize().into_bytes()));
    Req::new(body).header("x-hook-signature", &sig)
}

#[test]
fn generic_hmac_sha1_base64_with_a_prefix_passes() {
    assert_eq!(
        sha1_req(HMAC_SECRET, BODY).check(&sha1_config(), &[HMAC_SECRET]),
        Ok(())
    );
}

#[test]
fn generic_hmac_refuses_a_wrong_secret_a_tampered_body_and_a_missing_or_malformed_header() {
    let v = sha1_config();
    let secrets = [HMAC_SECRET];
    refused(&sha1_req("other", BODY), &v, &secrets, DenyReason::Mismatch);
    refused(
        &sha1_req(HMAC_SECRET, BODY).body(TAMPERED),
        &v,
        &secrets,
        DenyReason::Mismatch,
    );
    let d = refused(
        &Req::new(BODY),
        &v,
        &secrets,
        DenyReason::MissingCredentials,
    );
    assert!(d.message.contains("`X-Hook-Signature`"), "{d}");
    let no_prefix = Req::new(BODY).header("x-hook-signature", "c2lnbmF0dXJl");
    refused(&no_prefix, &v, &secrets, DenyReason::Malformed);
    let not_b64 = Req::new(BODY).header("x-hook-signature", "sha1=@@@");
    refused(&not_b64, &v, &secrets, DenyReason::Mismatch);
}

#[test]
fn generic_hmac_accepts_either_secret_during_a_rotation() {
    for secret in ["old", HMAC_SECRET] {
        assert_eq!(
            sha1_req(secret, BODY).check(&sha1_config(), &[HMAC_SECRET, "old"]),
            Ok(())
        );
    }
}

fn sha512_config() -> Verification {
    sha512_config_with(Some(120))
}

fn sha512_config_with(tolerance_secs: Option<u64>) -> Verification {
    Verification::Hmac {
        header: "x-signature".into(),
        algorithm: HmacAlgorithm::Sha512,
        encoding: SignatureEncoding::Hex,
        prefix: Some("v1=".into()),
        signed_content: Some("{timestamp}.{body}".into()),
        timestamp_header: Some("X-Timestamp".into()),
        tolerance_secs,
    }
}

fn sha512_req(secret: &str, ts: &str, body: &[u8]) -> Req {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    Req::new(body)
        .now(NOW)
        .header("x-timestamp", ts)
        .header("x-signature", &sig)
}

#[test]
fn generic_hmac_sha512_over_a_timestamp_template_passes() {
    let req = sha512_req(HMAC_SECRET, &(NOW - 60).to_string(), BODY);
    assert_eq!(req.check(&sha512_config(), &[HMAC_SECRET]), Ok(()));
}

#[test]
fn generic_hmac_signs_the_timestamp_so_changing_it_is_a_mismatch() {
    let mut req = sha512_req(HMAC_SECRET, &NOW.to_string(), BODY);
    req.headers.retain(|(n, _)| n != "x-timestamp");
    let req = req.header("x-timestamp", &(NOW - 1).to_string());
    refused(&req, &sha512_config(), &[HMAC_SECRET], DenyReason::Mismatch);
}

#[test]
fn generic_hmac_refuses_stale_future_missing_and_malformed_timestamps() {
    let v = sha512_config();
    let secrets = [HMAC_SECRET];
    let stale = sha512_req(HMAC_SECRET, &(NOW - 121).to_string(), BODY);
    let d = refused(&stale, &v, &secrets, DenyReason::StaleTimestamp);
    assert!(d.message.contains("`X-Timestamp`"), "{d}");
    let future = sha512_req(HMAC_SECRET, &(NOW + 121).to_string(), BODY);
    refused(&future, &v, &secrets, DenyReason::StaleTimestamp);
    let mut missing = sha512_req(HMAC_SECRET, &NOW.to_string(), BODY);
    missing.headers.retain(|(n, _)| n != "x-timestamp");
    refused(&missing, &v, &secrets, DenyReason::MissingCredentials);
    let malformed = sha512_req(HMAC_SECRET, "2024-01-01T00:00:00Z", BODY);
    refused(&malformed, &v, &secrets, DenyReason::Malformed);
}

#[test]
fn generic_hmac_without_a_tolerance_signs_the_timestamp_text_as_sent() {
    let v = sha512_config_with(None);
    let req = sha512_req(HMAC_SECRET, "2024-01-01T00:00:00Z", BODY);
    assert_eq!(req.check(&v, &[HMAC_SECRET]), Ok(()));
}
