//! Verifiers for the signed schemes, from their specifications: OAuth 1.0a (RFC 5849
//! §3.4: base string and HMAC) and AWS Signature Version 4 (canonical request, string to
//! sign, signing key), each first checked against the method's own published example.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{
    Incoming, auth_params, form_pairs, hmac_sha1, hmac_sha256, param, pct_decode, pct_encode,
    sha256_hex,
};

// ---- OAuth 1.0a (RFC 5849) -----------------------------------------------------------

/// What an OAuth 1.0a verifier knows of its client.
#[derive(Clone, Debug)]
pub struct OAuth1Client {
    pub consumer_key: &'static str,
    pub consumer_secret: &'static str,
    pub token: &'static str,
    pub token_secret: &'static str,
    /// `HMAC-SHA1` or `HMAC-SHA256`.
    pub method: &'static str,
}

/// Check an OAuth 1.0a request (RFC 5849 §3.2) with its own base string (§3.4.1) and
/// HMAC (§3.4.2); returns the protocol parameters for freshness checks.
pub fn verify_oauth1(r: &Incoming, client: &OAuth1Client) -> Result<Vec<(String, String)>, String> {
    let header = r.header("authorization").ok_or("no Authorization header")?;
    let raw = auth_params(header, "OAuth").ok_or("not an OAuth header")?;
    // Values are percent-encoded (§3.5.1); `realm` is not, and is not signed.
    let protocol: Vec<(String, String)> = raw
        .into_iter()
        .filter(|(n, _)| n != "realm")
        .map(|(n, v)| {
            (
                n,
                String::from_utf8_lossy(&pct_decode(v.as_bytes(), false)).into_owned(),
            )
        })
        .collect();
    let get = |name: &str| param(&protocol, name);
    if get("oauth_consumer_key")? != client.consumer_key {
        return Err("unknown consumer key".into());
    }
    if get("oauth_token")? != client.token {
        return Err("unknown token".into());
    }
    if get("oauth_signature_method")? != client.method {
        return Err(format!(
            "signature method {}",
            get("oauth_signature_method")?
        ));
    }
    if let Ok(version) = get("oauth_version")
        && version != "1.0"
    {
        return Err(format!("oauth_version {version}"));
    }

    // §3.4.1.3: query, form body and protocol parameters, encoded, sorted, joined.
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = form_pairs(r.query().as_bytes());
    let is_form = r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        pairs.extend(form_pairs(&r.body));
    }
    pairs.extend(
        protocol
            .iter()
            .filter(|(n, _)| n != "oauth_signature")
            .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes())),
    );
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (pct_encode(n), pct_encode(v)))
        .collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    // §3.4.1.2: scheme and host in lower case, default port dropped, path without query.
    let host = r
        .header("host")
        .ok_or("no Host header")?
        .to_ascii_lowercase();
    let host = host.strip_suffix(":80").unwrap_or(&host);
    let base_uri = format!("http://{host}{}", r.uri.path());
    let base = format!(
        "{}&{}&{}",
        pct_encode(r.method.as_str().as_bytes()),
        pct_encode(base_uri.as_bytes()),
        pct_encode(normalized.as_bytes())
    );
    let key = format!(
        "{}&{}",
        pct_encode(client.consumer_secret.as_bytes()),
        pct_encode(client.token_secret.as_bytes())
    );
    let mac = match client.method {
        "HMAC-SHA1" => hmac_sha1(key.as_bytes(), base.as_bytes()),
        _ => hmac_sha256(key.as_bytes(), base.as_bytes()),
    };
    if BASE64.encode(mac) != get("oauth_signature")? {
        return Err(format!("bad signature; my base string: {base}"));
    }
    Ok(protocol)
}

/// [`verify_oauth1`] plus freshness: a timestamp within five minutes and a nonce never
/// seen before (§3.3).
pub fn oauth1(client: OAuth1Client) -> impl Fn(&Incoming) -> Result<(), String> {
    let nonces = Mutex::new(HashSet::new());
    move |r| {
        let protocol = verify_oauth1(r, &client)?;
        let ts: i64 = param(&protocol, "oauth_timestamp")?
            .parse()
            .map_err(|_| "oauth_timestamp is not a number")?;
        if (ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() > 300 {
            return Err("stale oauth_timestamp".into());
        }
        let nonce = param(&protocol, "oauth_nonce")?.to_owned();
        if !nonces.lock().expect("nonces lock").insert(nonce) {
            return Err("oauth_nonce reused".into());
        }
        Ok(())
    }
}

// ---- AWS Signature Version 4 ---------------------------------------------------------

/// What a SigV4 verifier knows: the key pair, the session token it expects, and the scope
/// it serves.
#[derive(Clone, Debug)]
pub struct AwsKey {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
    pub session_token: Option<&'static str>,
    pub region: &'static str,
    pub service: &'static str,
}

/// Check a SigV4-signed request (non-S3 rules) by rebuilding the canonical request, string
/// to sign and signature; with `now`, `X-Amz-Date` must be within 15 minutes of it.
pub fn verify_sigv4(
    r: &Incoming,
    key: &AwsKey,
    now: Option<time::OffsetDateTime>,
) -> Result<(), String> {
    let header = r.header("authorization").ok_or("no Authorization header")?;
    let params = auth_params(header, "AWS4-HMAC-SHA256").ok_or("not AWS4-HMAC-SHA256")?;
    let credential = param(&params, "credential")?;
    let signed = param(&params, "signedheaders")?;
    let given = param(&params, "signature")?;
    let amz_date = r.header("x-amz-date").ok_or("no X-Amz-Date")?;
    let parsed = time::PrimitiveDateTime::parse(
        amz_date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|e| format!("X-Amz-Date {amz_date}: {e}"))?;
    if let Some(now) = now
        && (parsed.assume_utc() - now).whole_minutes().abs() > 15
    {
        return Err("X-Amz-Date is more than 15 minutes off".into());
    }
    let day = &amz_date[..8];
    let scope = format!("{day}/{}/{}/aws4_request", key.region, key.service);
    if credential != format!("{}/{scope}", key.access_key_id) {
        return Err(format!("credential {credential}, expected scope {scope}"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    for needed in ["host", "x-amz-date"]
        .into_iter()
        .chain(key.session_token.map(|_| "x-amz-security-token"))
    {
        if !names.contains(&needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    if let Some(token) = key.session_token
        && r.header("x-amz-security-token") != Some(token)
    {
        return Err("wrong or missing X-Amz-Security-Token".into());
    }

    // Canonical URI: each segment of the path as sent, encoded once more.
    let uri = r
        .uri
        .path()
        .split('/')
        .map(|s| pct_encode(s.as_bytes()))
        .collect::<Vec<_>>()
        .join("/");
    let mut query: Vec<(String, String)> = form_pairs(r.query().as_bytes())
        .into_iter()
        .map(|(n, v)| (pct_encode(&n), pct_encode(&v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = String::new();
    for name in &names {
        let values: Vec<String> = r
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                let text = String::from_utf8_lossy(v.as_bytes());
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} was not sent"));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical = format!(
        "{}\n{uri}\n{query}\n{headers}\n{signed}\n{}",
        r.method,
        sha256_hex(&r.body)
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut k = hmac_sha256(
        format!("AWS4{}", key.secret_access_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [key.region, key.service, "aws4_request"] {
        k = hmac_sha256(&k, part.as_bytes());
    }
    let expected = hex::encode(hmac_sha256(&k, to_sign.as_bytes()));
    if expected != given {
        return Err(format!("bad signature; my canonical request:\n{canonical}"));
    }
    Ok(())
}

pub fn sigv4(key: AwsKey) -> impl Fn(&Incoming) -> Result<(), String> {
    move |r| verify_sigv4(r, &key, Some(time::OffsetDateTime::now_utc()))
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method};

    use super::*;

    fn incoming(method: Method, target: &str, headers: &[(&str, &str)]) -> Incoming {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(n.as_bytes()).expect("a header name"),
                v.parse().expect("a header value"),
            );
        }
        Incoming {
            method,
            uri: target.parse().expect("a request-target"),
            headers: map,
            body: Bytes::new(),
        }
    }

    #[test]
    fn the_oauth1_verifier_accepts_rfc5849s_photos_example() {
        let r = incoming(
            Method::GET,
            "/photos?file=vacation.jpg&size=original",
            &[
                ("host", "photos.example.net"),
                (
                    "authorization",
                    "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
                     oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", \
                     oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\", \
                     oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\"",
                ),
            ],
        );
        let client = OAuth1Client {
            consumer_key: "dpf43f3p2l4k3l03",
            consumer_secret: "kd94hf93k423kf44",
            token: "nnch734d00sl2jdk",
            token_secret: "pfkkdhi9sl3r4s00",
            method: "HMAC-SHA1",
        };
        verify_oauth1(&r, &client).expect("the RFC's own request verifies");
        let wrong = OAuth1Client {
            token_secret: "other",
            ..client
        };
        assert!(
            verify_oauth1(&r, &wrong).is_err(),
            "another secret must fail"
        );
    }

    #[test]
    fn the_sigv4_verifier_accepts_the_aws_suites_get_vanilla_empty_query_key() {
        let r = incoming(
            Method::GET,
            "/?Param1=value1",
            &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, \
                     Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
                ),
            ],
        );
        let key = AwsKey {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "service",
        };
        verify_sigv4(&r, &key, None).expect("AWS's own vector verifies");
        let other_region = AwsKey {
            region: "eu-west-1",
            ..key
        };
        assert!(verify_sigv4(&r, &other_region, None).is_err());
    }
}
