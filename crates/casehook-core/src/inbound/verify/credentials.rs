//! Verifiers of credentials sent as they are: a shared token, HTTP Basic, and the client
//! address checked against an allow list.

use base64::Engine;
use subtle::{Choice, ConstantTimeEq};

use super::primitives::{LENIENT_BASE64, any_match, missing, sha256};
use super::request::{client_address, parse_net, present_values, query_values};
use super::{Denied, DenyReason, RequestView};

pub(super) fn ip_allow_list(
    allow: &[String],
    trusted_proxies: &[String],
    req: &RequestView<'_>,
) -> Result<(), Denied> {
    // Entries that do not parse were refused at save time; here they simply allow nothing.
    let trusted: Vec<_> = trusted_proxies
        .iter()
        .filter_map(|s| parse_net(s))
        .collect();
    let client = client_address(req.peer, req.headers, &trusted);
    if allow
        .iter()
        .filter_map(|s| parse_net(s))
        .any(|net| net.contains(&client))
    {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::AddressNotAllowed,
            format!("the client address {client} is not on the hook's allow list"),
        ))
    }
}

pub(super) fn token(
    header: Option<&str>,
    query: Option<&str>,
    secrets: &[&str],
    req: &RequestView<'_>,
) -> Result<(), Denied> {
    let (candidates, place): (Vec<Vec<u8>>, String) = match (header, query) {
        (Some(h), _) => {
            let values = present_values(req, h);
            let bearer = h.eq_ignore_ascii_case("authorization");
            let tokens = values
                .iter()
                .map(|v| {
                    let t = if bearer {
                        strip_scheme(v, "bearer")
                    } else {
                        None
                    };
                    t.unwrap_or(v).as_bytes().to_vec()
                })
                .collect();
            (tokens, format!("the `{h}` header"))
        }
        (None, Some(q)) => {
            let tokens = query_values(req.query, q)
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect();
            (tokens, format!("the `{q}` query parameter"))
        }
        (None, None) => {
            return Err(Denied::new(
                DenyReason::MissingCredentials,
                "the hook's token check names neither a header nor a query parameter",
            ));
        }
    };
    if candidates.is_empty() {
        return Err(missing(&place));
    }
    // Hashing first makes the comparison independent of the token's length too.
    let expected: Vec<Vec<u8>> = secrets.iter().map(|s| sha256(s.as_bytes())).collect();
    let received: Vec<Vec<u8>> = candidates.iter().map(|t| sha256(t)).collect();
    if any_match(&expected, &received) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            format!("the token in {place} does not match"),
        ))
    }
}

pub(super) fn basic(username: &str, secrets: &[&str], req: &RequestView<'_>) -> Result<(), Denied> {
    let values = present_values(req, "authorization");
    if values.is_empty() {
        return Err(missing("the `Authorization` header"));
    }
    let credentials: Vec<(Vec<u8>, Vec<u8>)> = values
        .iter()
        .filter_map(|v| strip_scheme(v, "basic"))
        .filter_map(|b64| LENIENT_BASE64.decode(b64).ok())
        .filter_map(|decoded| {
            // The username cannot contain ':' (RFC 7617), the password can.
            let colon = decoded.iter().position(|&b| b == b':')?;
            Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
        })
        .collect();
    if credentials.is_empty() {
        return Err(Denied::new(
            DenyReason::Malformed,
            "the `Authorization` header does not hold HTTP Basic credentials \
             (`Basic ` followed by the base64 of `username:password`)",
        ));
    }
    let want_user = sha256(username.as_bytes());
    let mut matched = Choice::from(0);
    for secret in secrets {
        let want_password = sha256(secret.as_bytes());
        for (user, password) in &credentials {
            matched |= sha256(user).ct_eq(&want_user) & sha256(password).ct_eq(&want_password);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Denied::new(
            DenyReason::Mismatch,
            "the username or password in the `Authorization` header does not match",
        ))
    }
}

/// `Bearer xyz` → `xyz`, for a scheme compared without regard to case.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let head = value.get(..scheme.len())?;
    let rest = value.get(scheme.len()..)?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| rest.trim())
}
