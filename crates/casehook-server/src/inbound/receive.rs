//! `POST /in/{token}[/skipvalidate][/skiptriggers]`: where external systems send.
//!
//! Cheap refusals come first, before the body is read: an unknown token (404, not logged:
//! it names no hook), the rate limit (429 with `Retry-After`) and an announced body over the
//! hook's limit (413). The body is then read up to the limit and handed to `process`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use casehook_store::now_micros;

use super::process::{Answer, Flags, Incoming, process, refuse_early};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// The header that tells a sender its request was a retry answered from the first one.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The request's id in the hook's request log.
const REQUEST_ID: HeaderName = HeaderName::from_static("casehook-request-id");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/in/{token}", post(receive))
        .route("/in/{token}/{*flags}", post(receive_with_flags))
}

/// Where an external system sends. Not under `/api/v1` and not behind an API key: the URL's
/// token names the hook, and the hook's own verifications (signatures, tokens, Basic, IP
/// allow-list, a sender key) decide. The request is verified, validated, mapped and
/// committed before the answer, which carries each item's case.
#[utoipa::path(post, path = "/in/{token}", tag = "inbound-hooks",
    params(("token" = String, Path, description = "The hook's URL token")),
    request_body(content = Object, description = "JSON (an object, or an array of objects: a batch with a result per item), `application/x-www-form-urlencoded`, or `multipart/form-data` text parts"),
    responses(
        (status = 200, body = Object, description = "Applied; with `Idempotent-Replayed: true`, the first answer of a request already processed under its idempotency key. `Casehook-Request-Id` names the request log entry."),
        (status = 400, body = ErrorBody, description = "Malformed or invalid payload: every field error at once"),
        (status = 401, body = ErrorBody, description = "Verification failed (`access_deny`); nothing written"),
        (status = 404, body = ErrorBody, description = "No hook has this token, or no case matched"),
        (status = 413, body = ErrorBody, description = "Body over the hook's limit"),
        (status = 415, body = ErrorBody, description = "Unsupported content type"),
        (status = 429, body = ErrorBody, description = "Over the hook's rate limit; see `Retry-After`")),
    security(()))]
pub(crate) async fn receive(
    state: State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    handle(state, token, Flags::default(), request).await
}

/// The same, with AM System's path options: `skipvalidate` (required fields are not
/// enforced; types still are) and `skiptriggers` (no outgoing webhooks or API calls),
/// either or both, in either order (`/in/{token}/skipvalidate/skiptriggers`).
#[utoipa::path(post, path = "/in/{token}/{options}", tag = "inbound-hooks",
    params(("token" = String, Path, description = "The hook's URL token"),
           ("options" = String, Path, description = "`skipvalidate`, `skiptriggers`, or both joined by `/`")),
    request_body(content = Object, description = "As for `/in/{token}`"),
    responses(
        (status = 200, body = Object, description = "As for `/in/{token}`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Unknown token, or an unknown path option"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(()))]
pub(crate) async fn receive_with_flags(
    state: State<AppState>,
    Path((token, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    match Flags::parse(&rest) {
        Some(flags) => handle(state, token, flags, request).await,
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown path option; use /skipvalidate and/or /skiptriggers",
        )
        .into_response(),
    }
}

async fn handle(
    State(state): State<AppState>,
    token: String,
    flags: Flags,
    request: Request,
) -> Response {
    let received_at = now_micros();
    let hook = match state.hooks.find(&state, &token).await {
        Ok(Some(hook)) => hook,
        Ok(None) => return ApiError::not_found("inbound hook").into_response(),
        Err(e) => return e.into_response(),
    };
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip().to_canonical()
        });
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
    let mut incoming = Incoming {
        flags,
        headers,
        query: parts.uri.query().map(str::to_owned),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: None,
        body_bytes: announced.unwrap_or(0),
        peer,
        received_at,
        replay_of: None,
    };
    if let Err(wait) = state.hooks.admit(&hook, state.engine.peers().api()) {
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this hook takes at most {} requests per second; retry in {wait} s",
                hook.config.limits.rate_per_second.unwrap_or(0)
            ),
        );
        let answer = refuse_early(
            &state,
            &hook,
            &incoming,
            error,
            "rate_limited",
            Some(wait.max(1)),
        )
        .await;
        return respond(answer);
    }
    let limit = usize::try_from(hook.config.limits.body_bytes).unwrap_or(usize::MAX);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this hook's limit of {limit} bytes"),
        )
    };
    if announced.is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit)) {
        let answer = refuse_early(&state, &hook, &incoming, too_large(), "too_large", None).await;
        return respond(answer);
    }
    match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(bytes) => {
            incoming.body_bytes = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
            incoming.body = Some(bytes);
        }
        Err(_) => {
            let answer =
                refuse_early(&state, &hook, &incoming, too_large(), "too_large", None).await;
            return respond(answer);
        }
    }
    respond(process(&state, &hook, incoming).await)
}

fn respond(answer: Answer) -> Response {
    let mut response = (answer.status, axum::Json(answer.body)).into_response();
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&answer.request_id.to_string()) {
        headers.insert(REQUEST_ID, id);
    }
    if answer.duplicate {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    if let Some(wait) = answer.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(wait));
    }
    response
}
