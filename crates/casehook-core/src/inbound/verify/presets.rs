//! One verifier per kind of [`Verification`] that checks a signature: the generic HMAC and
//! the vendor presets. Token, Basic and the IP allow list live in `credentials`.
//!
//! Every verifier collects all candidate signatures from the request, computes what each
//! active secret expects, and compares every pair in constant time, so the response time
//! says nothing about which secret, or how much of a signature, matched. Signature text that
//! does not decode is simply a candidate that matches nothing.

use super::config::{Part, template_parts};
use super::credentials;
use super::primitives::{
    any_match, check_fresh, decode_all, macs, missing, parse_unix, timestamp_value,
};
use super::request::present_values;
use super::{Denied, DenyReason, HmacAlgorithm, RequestView, SignatureEncoding, Verification};
use crate::signing::{self, SigningSecret, VerifyError};

/// The tolerance of Stripe and Slack timestamps, and the default of Standard Webhooks.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Verify a request against a check that needs secrets; `secrets` is non-empty.
pub(super) fn verify_with_secrets(
    v: &Verification,
    secrets: &[&str],
    req: &RequestView<'_>,
) -> Result<(), Denied> {
    match v {
        Verification::Token { header, query } => {
            credentials::token(header.as_deref(), query.as_deref(), secrets, req)
        }
        Verification::Basic { username } => credentials::basic(username, secrets, req),
        Verification::Hmac { .. } => generic_hmac(v, secrets, req),
        Verification::StandardWebhooks { tolerance_secs } => {
            standard_webhooks(*tolerance_secs, secrets, req)
        }
        Verification::Stripe { tolerance_secs } => stripe(*tolerance_secs, secrets, req),
        Verification::Github {} => github(secrets, req),
        Verification::Shopify {} => shopify(secrets, req),
        Verification::Slack {} => slack(secrets, req),
        Verification::IpAllowList {
            allow,
            trusted_proxies,
        } => credentials::ip_allow_list(allow, trusted_proxies, req),
    }
}

fn generic_hmac(v: &Verification, secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    let Verification::Hmac {
        header,
        algorithm,
        encoding,
        prefix,
        signed_content,
        timestamp_header,
        tolerance_secs,
    } = v
    else {
        // Only reached through the dispatch above; failing closed keeps a mix-up harmless.
        return Err(Denied::new(
            DenyReason::NoSecret,
            "the hook's HMAC check is misconfigured",
        ));
    };
    let values = present_values(req, header);
    if values.is_empty() {
        return Err(missing(&format!("the `{header}` header")));
    }
    let timestamp = match timestamp_header {
        Some(ts_header) => {
            let raw = timestamp_value(req, ts_header, &format!("`{ts_header}`"))?;
            if let Some(tolerance) = tolerance_secs {
                let ts = parse_unix(raw, &format!("the `{ts_header}` header"))?;
                check_fresh(
                    ts,
                    req.now_unix,
                    *tolerance,
                    &format!("timestamp in `{ts_header}`"),
                )?;
            }
            raw
        }
        None => "",
    };
    let prefix = prefix.as_deref().unwrap_or("");
    let texts: Vec<&str> = values
        .iter()
        .filter_map(|v| v.strip_prefix(prefix))
        .collect();
    if texts.is_empty() {
        return Err(Denied::new(
            DenyReason::Malformed,
            format!("the `{header}` header does not start with `{prefix}`"),
        ));
    }
    let candidates = decode_all(texts, *encoding);
    let template = signed_content.as_deref().unwrap_or("{body}");
    let parts: Vec<&[u8]> = template_parts(template)
        .into_iter()
        .map(|part| match part {
            Part::Literal(s) | Part::Unknown(s) => s.as_bytes(),
            Part::Body => req.body,
            Part::Timestamp => timestamp.as_bytes(),
        })
        .collect();
    let expected = macs(*algorithm, secrets, &parts);
    if any_match(&expected, &candidates) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            format!("no signature in `{header}` matches the signed content"),
        ))
    }
}

fn standard_webhooks(
    tolerance_secs: Option<u64>,
    secrets: &[&str],
    req: &RequestView<'_>,
) -> Result<(), Denied> {
    let keys: Vec<SigningSecret> = secrets
        .iter()
        .filter_map(|s| SigningSecret::parse(s).ok())
        .collect();
    if keys.is_empty() {
        return Err(Denied::new(
            DenyReason::NoSecret,
            "none of the hook's secrets is a valid `whsec_` Standard Webhooks secret",
        ));
    }
    let keys: Vec<&SigningSecret> = keys.iter().collect();
    let first = |name| present_values(req, name).first().copied().unwrap_or("");
    let signatures = present_values(req, "webhook-signature").join(" ");
    let tolerance = tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS);
    signing::verify(
        &keys,
        first("webhook-id"),
        first("webhook-timestamp"),
        &signatures,
        req.body,
        req.now_unix,
        i64::try_from(tolerance).unwrap_or(i64::MAX),
    )
    .map_err(|e| {
        let reason = match e {
            VerifyError::NoSecret => DenyReason::NoSecret,
            VerifyError::MissingHeader(_) => DenyReason::MissingCredentials,
            VerifyError::BadTimestamp(_) | VerifyError::NoV1Signature => DenyReason::Malformed,
            VerifyError::TooOld { .. } | VerifyError::TooNew { .. } => DenyReason::StaleTimestamp,
            VerifyError::NoMatch => DenyReason::Mismatch,
        };
        Denied::new(reason, e.to_string())
    })
}

fn stripe(
    tolerance_secs: Option<u64>,
    secrets: &[&str],
    req: &RequestView<'_>,
) -> Result<(), Denied> {
    const HEADER: &str = "`Stripe-Signature`";
    let values = present_values(req, "stripe-signature");
    if values.is_empty() {
        return Err(missing(&format!("the {HEADER} header")));
    }
    let items: Vec<(&str, &str)> = values
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let Some(&(_, t)) = items.iter().find(|(k, _)| *k == "t") else {
        return Err(Denied::new(
            DenyReason::Malformed,
            format!("the {HEADER} header has no `t=` timestamp"),
        ));
    };
    let ts = parse_unix(t, &format!("the `t=` timestamp in {HEADER}"))?;
    let v1: Vec<&str> = items
        .iter()
        .filter(|(k, _)| *k == "v1")
        .map(|&(_, v)| v)
        .collect();
    if v1.is_empty() {
        return Err(Denied::new(
            DenyReason::Malformed,
            format!("the {HEADER} header has no `v1=` signature"),
        ));
    }
    let tolerance = tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS);
    check_fresh(ts, req.now_unix, tolerance, "Stripe timestamp")?;
    let candidates = decode_all(v1, SignatureEncoding::Hex);
    // Stripe keys the HMAC with the secret text itself, `whsec_` and all.
    let expected = macs(
        HmacAlgorithm::Sha256,
        secrets,
        &[t.as_bytes(), b".", req.body],
    );
    if any_match(&expected, &candidates) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            format!("no `v1` signature in {HEADER} matches the body and timestamp"),
        ))
    }
}

fn github(secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    const HEADER: &str = "`X-Hub-Signature-256`";
    let values = present_values(req, "x-hub-signature-256");
    if values.is_empty() {
        return Err(missing(&format!("the {HEADER} header")));
    }
    let texts: Vec<&str> = values
        .iter()
        .filter_map(|v| v.strip_prefix("sha256="))
        .collect();
    if texts.is_empty() {
        return Err(Denied::new(
            DenyReason::Malformed,
            format!("the {HEADER} header does not start with `sha256=`"),
        ));
    }
    let candidates = decode_all(texts, SignatureEncoding::Hex);
    let expected = macs(HmacAlgorithm::Sha256, secrets, &[req.body]);
    body_match(&expected, &candidates, HEADER)
}

fn shopify(secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    const HEADER: &str = "`X-Shopify-Hmac-Sha256`";
    let values = present_values(req, "x-shopify-hmac-sha256");
    if values.is_empty() {
        return Err(missing(&format!("the {HEADER} header")));
    }
    let candidates = decode_all(values, SignatureEncoding::Base64);
    let expected = macs(HmacAlgorithm::Sha256, secrets, &[req.body]);
    body_match(&expected, &candidates, HEADER)
}

fn slack(secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    const HEADER: &str = "`X-Slack-Signature`";
    let values = present_values(req, "x-slack-signature");
    if values.is_empty() {
        return Err(missing(&format!("the {HEADER} header")));
    }
    let raw_ts = timestamp_value(
        req,
        "x-slack-request-timestamp",
        "`X-Slack-Request-Timestamp`",
    )?;
    let ts = parse_unix(raw_ts, "the `X-Slack-Request-Timestamp` header")?;
    check_fresh(ts, req.now_unix, DEFAULT_TOLERANCE_SECS, "Slack timestamp")?;
    let texts: Vec<&str> = values
        .iter()
        .filter_map(|v| v.strip_prefix("v0="))
        .collect();
    if texts.is_empty() {
        return Err(Denied::new(
            DenyReason::Malformed,
            format!("the {HEADER} header does not start with `v0=`"),
        ));
    }
    let candidates = decode_all(texts, SignatureEncoding::Hex);
    let parts: [&[u8]; 4] = [b"v0:", raw_ts.as_bytes(), b":", req.body];
    let expected = macs(HmacAlgorithm::Sha256, secrets, &parts);
    if any_match(&expected, &candidates) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            format!("no signature in {HEADER} matches the body and timestamp"),
        ))
    }
}

fn body_match(expected: &[Vec<u8>], candidates: &[Vec<u8>], header: &str) -> Result<(), Denied> {
    if any_match(expected, candidates) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            format!("no signature in {header} matches the body"),
        ))
    }
}
