//! Sending one delivery: build the request from the event and the endpoint's configuration,
//! sign it (Standard Webhooks), send it through the outbound client, decide what the answer
//! means under the endpoint's retry policy, and record the attempt with the delivery's new
//! state in one write.

use std::sync::Arc;
use std::time::Duration;

use casehook_core::case::Case;
use casehook_core::content::{ContentSpec, encode, query_pairs};
use casehook_core::endpoint::{Method, Ordering};
use casehook_core::event::Event;
use casehook_core::retry::{AttemptOutcome, Verdict, parse_retry_after};
use casehook_core::signing::signature_header;
use casehook_outbound::{Exchange, OutboundRequest};
use casehook_store::{ClaimedJob, DeliveryRecord, NewAttempt, Settlement, StoreError, now_micros};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::live::{LiveEndpoint, Wait};
use crate::peers::{Window, count_share};
use crate::{Engine, EngineError};

/// The `webhook-id` of a delivery: stable across its retries.
pub fn message_id(delivery: &DeliveryRecord) -> String {
    format!("msg_{}", delivery.id.as_uuid().simple())
}

/// A delivery with its event: what a worker needs besides the endpoint.
#[derive(Debug)]
pub(crate) struct Work {
    pub delivery: DeliveryRecord,
    pub event: Arc<Event>,
}

/// A job on its way to the workers, with its work when the dispatcher that created it
/// still holds the event (then the worker reads nothing back).
#[derive(Debug)]
pub(crate) struct Handed {
    pub job: ClaimedJob,
    pub work: Option<Work>,
}

/// Process one claimed delivery job to the end (sent and recorded, deferred, or abandoned).
pub(crate) async fn process(engine: &Engine, handed: Handed) -> Result<(), EngineError> {
    let Handed { job, work } = handed;
    let Work { delivery, event } = match work {
        Some(work) => work,
        None => match engine.inner.store.delivery_work(&job).await {
            Ok((delivery, event)) => Work {
                delivery,
                event: Arc::new(event),
            },
            Err(StoreError::NotFound(_)) => {
                engine.inner.store.complete_job(&job).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        },
    };
    if delivery.state != "pending" {
        // Settled meanwhile (by hand, or by a worker whose lease this one outlived).
        engine.inner.store.complete_job(&job).await?;
        return Ok(());
    }
    let endpoint = match engine
        .inner
        .endpoints
        .get(delivery.workspace_id, delivery.endpoint_id)
        .await
    {
        Ok(e) => e,
        Err(EngineError::Store(StoreError::NotFound(_))) => {
            engine
                .inner
                .store
                .abandon_delivery(&job, delivery.id, "the endpoint was deleted")
                .await?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !endpoint.record.enabled {
        engine
            .inner
            .store
            .abandon_delivery(
                &job,
                delivery.id,
                "the endpoint is disabled; recover the delivery after enabling it",
            )
            .await?;
        return Ok(());
    }
    if endpoint.config.ordering == Ordering::OrderedPerCase
        && let Some((earlier, due)) = engine
            .inner
            .store
            .earlier_pending_delivery(&delivery)
            .await?
    {
        // Go right after the earlier delivery's next try, not before.
        let until = due.unwrap_or_else(now_micros).max(now_micros()) + 50_000;
        let reason = format!("waiting for delivery {earlier} of the same case (ordered endpoint)");
        engine
            .inner
            .store
            .defer_delivery(&job, delivery.id, until, &reason)
            .await?;
        return Ok(());
    }
    let limits = &endpoint.config.limits;
    // Each process running workers takes its share of the endpoint's limits.
    let processes = engine.peers().workers();
    let _permit = match endpoint.gate.admit(
        limits.max_in_flight.map(|max| count_share(max, processes)),
        limits
            .rate_per_second
            .map(|rate| Window::share(rate, processes)),
    ) {
        Ok(permit) => permit,
        Err(wait) => {
            let pause = match wait {
                Wait::InFlight => Duration::from_millis(50 + rand::random_range(0..100)),
                Wait::Rate(d) => d + Duration::from_millis(rand::random_range(0..20)),
            };
            let until = now_micros() + i64::try_from(pause.as_micros()).unwrap_or(1_000_000);
            engine
                .inner
                .store
                .defer_delivery(&job, delivery.id, until, "endpoint at its limit")
                .await?;
            return Ok(());
        }
    };

    let (request, prepared) = match build_request(&endpoint, &message_id(&delivery), &event) {
        Ok(r) => r,
        Err(problem) => {
            // Nothing can be sent (content that cannot be built for this event): a final
            // failure recorded as an attempt, so the log says why.
            let attempt = failed_before_sending(&endpoint, &problem);
            engine
                .inner
                .store
                .record_attempt(&job, &delivery, attempt, Settlement::Failed(problem))
                .await?;
            return Ok(());
        }
    };
    let started_at = now_micros();
    let exchange = engine.inner.client.send(request).await;
    let verdict = verdict(&endpoint, &exchange);
    let settlement = settle(&endpoint, &delivery, &exchange, verdict);
    let attempt = attempt_record(
        &exchange,
        started_at,
        &prepared,
        attempt_verdict(verdict, &settlement),
    );
    let verdict = attempt.verdict.clone();
    metrics::counter!("casehook_delivery_attempts_total", "verdict" => verdict).increment(1);
    metrics::histogram!("casehook_delivery_attempt_seconds")
        .record(exchange.duration.as_secs_f64());
    let recorded = engine
        .inner
        .store
        .record_attempt(&job, &delivery, attempt, settlement.clone())
        .await?;
    if let Some(event) = recorded.disabled {
        engine.inner.endpoints.forget(endpoint.record.id);
        tracing::warn!(endpoint = %endpoint.record.id, sequence = event.sequence, "endpoint disabled");
    }
    if recorded.lease_held && matches!(settlement, Settlement::Succeeded) {
        crate::writeback::apply(engine, &endpoint, &event, &exchange).await;
    }
    Ok(())
}

/// Send a synthetic event to an endpoint now, outside any delivery, and describe the
/// exchange as an attempt (nothing is stored).
pub async fn test_send(
    engine: &Engine,
    endpoint: &LiveEndpoint,
    event: &Event,
) -> Result<NewAttempt, String> {
    let msg_id = format!("msg_test_{}", uuid::Uuid::now_v7().simple());
    let (request, prepared) = build_request(endpoint, &msg_id, event)?;
    let started_at = now_micros();
    let exchange = engine.inner.client.send(request).await;
    Ok(attempt_record(
        &exchange,
        started_at,
        &prepared,
        verdict_name(verdict(endpoint, &exchange)),
    ))
}

/// What was prepared besides the request itself, for the attempt log.
pub(crate) struct Prepared {
    body: Option<Vec<u8>>,
    sensitive: Vec<String>,
}

/// The HTTP request of one try.
pub(crate) fn build_request(
    endpoint: &LiveEndpoint,
    msg_id: &str,
    event: &Event,
) -> Result<(OutboundRequest, Prepared), String> {
    let config = &endpoint.config;
    // Only selected fields read the case; the envelope carries the event as it is.
    let fields_mode = !matches!(config.content, ContentSpec::Envelope);
    let case: Option<Case> = if fields_mode && event.event_type.starts_with("case.") {
        serde_json::from_value(event.data.clone()).ok()
    } else {
        None
    };
    let content = config
        .content
        .build(event, case.as_ref())
        .map_err(|e| format!("the content could not be built: {e}"))?;
    let mut url = config.url.clone();
    let body = if config.method == Method::Get {
        let pairs = query_pairs(&content).map_err(|e| e.to_string())?;
        if !pairs.is_empty() {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        casehook_core::template::form_urlencode(k),
                        casehook_core::template::form_urlencode(v)
                    )
                })
                .collect();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query.join("&"));
        }
        None
    } else {
        Some(encode(&content, config.protocol).map_err(|e| e.to_string())?)
    };
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let signed: &[u8] = body.as_ref().map_or(&[], |(_, b)| b.as_slice());
    let secrets: Vec<_> = endpoint.secrets.iter().collect();
    let signature = signature_header(&secrets, msg_id, timestamp, signed);
    let method = casehook_outbound::Method::from_bytes(config.method.as_str().as_bytes())
        .map_err(|e| e.to_string())?;
    let mut request =
        OutboundRequest::new(method, url).with_timeout(Duration::from_secs(config.timeout_secs));
    for (name, value) in &config.headers {
        request = request.with_header(name, value);
    }
    let mut sensitive = Vec::new();
    if let Some(auth) = &endpoint.auth {
        let (name, value, secrets) = auth.header();
        request = request.with_header(name, value);
        sensitive.extend(secrets);
    }
    request = request
        .with_header("webhook-id", msg_id)
        .with_header("webhook-timestamp", timestamp.to_string())
        .with_header("webhook-signature", signature);
    let body = body.map(|(content_type, bytes)| {
        request = request
            .clone()
            .with_header("content-type", content_type)
            .with_body(bytes.clone());
        bytes
    });
    let request = sensitive.iter().fold(request, |request, value| {
        request.with_sensitive(value.clone())
    });
    Ok((request, Prepared { body, sensitive }))
}

/// Bodies are logged up to this many bytes.
const LOGGED_BODY: usize = 64 * 1024;

fn attempt_record(
    exchange: &Exchange,
    started_at: i64,
    prepared: &Prepared,
    verdict: &str,
) -> NewAttempt {
    let body = prepared
        .body
        .as_ref()
        .map(|b| casehook_outbound::excerpt(b, LOGGED_BODY, &prepared.sensitive));
    let request = json!({
        "method": exchange.request.method.to_string(),
        "url": exchange.request.url,
        "headers": headers_json(&exchange.request.headers),
        "body": body,
    });
    let response = exchange.response.as_ref().map(|r| {
        json!({
            "headers": headers_json(&r.headers),
            "body_excerpt": r.body_excerpt,
            "truncated": r.truncated,
        })
    });
    let failure = exchange.failure();
    NewAttempt {
        started_at,
        duration_us: i64::try_from(exchange.duration.as_micros()).unwrap_or(i64::MAX),
        request,
        status: exchange.status().map(i64::from),
        response,
        error_kind: failure.as_ref().map(|f| f.kind.as_str().to_string()),
        error_message: failure.map(|f| f.message),
        verdict: verdict.into(),
    }
}

fn failed_before_sending(endpoint: &LiveEndpoint, problem: &str) -> NewAttempt {
    NewAttempt {
        started_at: now_micros(),
        duration_us: 0,
        request: json!({"method": endpoint.config.method.as_str(), "url": casehook_outbound::redact_url(&endpoint.config.url, &[] as &[String])}),
        status: None,
        response: None,
        error_kind: Some("content".into()),
        error_message: Some(problem.into()),
        verdict: "fail".into(),
    }
}

fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Array(headers.iter().map(|(k, v)| json!([k, v])).collect())
}

fn outcome(exchange: &Exchange) -> Option<AttemptOutcome> {
    match (exchange.status(), &exchange.error) {
        (Some(status), None) => Some(AttemptOutcome::Status(status)),
        (_, Some(error)) => Some(AttemptOutcome::Error(error.kind)),
        (None, None) => None,
    }
}

/// The delivery's fate after this exchange, under the endpoint's retry policy.
fn settle(
    endpoint: &LiveEndpoint,
    delivery: &DeliveryRecord,
    exchange: &Exchange,
    verdict: Option<Verdict>,
) -> Settlement {
    let policy = &endpoint.config.retry;
    let Some(verdict) = verdict else {
        return Settlement::Failed("no answer and no error (should not happen)".into());
    };
    let error = || describe_failure(exchange);
    let settlement = match verdict {
        Verdict::Success => return Settlement::Succeeded,
        Verdict::Gone => {
            return Settlement::FailedAndDisable {
                error: error(),
                reason: "the receiver answered 410 Gone".into(),
            };
        }
        Verdict::Fail => Settlement::Failed(error()),
        Verdict::Retry => {
            let failed = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
            let retry_after = exchange.response.as_ref().and_then(|r| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| parse_retry_after(v, OffsetDateTime::now_utc()))
            });
            match policy.next_delay(failed, retry_after, &mut rand::rng()) {
                Some(delay) => Settlement::RetryAt(
                    now_micros() + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX / 4),
                ),
                None => Settlement::Failed(format!("gave up after {failed} attempts: {}", error())),
            }
        }
    };
    // Failing without a success for longer than the endpoint allows: disable it.
    if let Some(since) = endpoint.record.health.failing_since
        && failing_too_long(
            since,
            endpoint.config.disable_after_secs,
            OffsetDateTime::now_utc(),
        )
    {
        return Settlement::FailedAndDisable {
            error: error(),
            reason: format!("failing without a success since {since}"),
        };
    }
    settlement
}

fn describe_failure(exchange: &Exchange) -> String {
    match exchange.failure() {
        Some(f) => match exchange.status() {
            Some(status) => format!("HTTP {status}"),
            None => format!("{}: {}", f.kind.as_str(), f.message),
        },
        None => "unknown failure".into(),
    }
}

/// What the endpoint's retry policy makes of the exchange (`None`: neither an answer nor an
/// error, which the client never returns).
fn verdict(endpoint: &LiveEndpoint, exchange: &Exchange) -> Option<Verdict> {
    outcome(exchange).map(|o| endpoint.config.retry.verdict(o))
}

fn verdict_name(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Success) => "success",
        Some(Verdict::Retry) => "retry",
        Some(Verdict::Gone) => "gone",
        Some(Verdict::Fail) | None => "fail",
    }
}

/// The verdict stored with a delivery's attempt: what actually became of the delivery (a
/// retryable failure with the schedule used up is a `fail`).
fn attempt_verdict(verdict: Option<Verdict>, settlement: &Settlement) -> &'static str {
    match settlement {
        Settlement::Succeeded => "success",
        Settlement::RetryAt(_) => "retry",
        Settlement::FailedAndDisable { .. } if verdict == Some(Verdict::Gone) => "gone",
        Settlement::Failed(_) | Settlement::FailedAndDisable { .. } => "fail",
    }
}

/// Whether an endpoint failing since `since` has failed for longer than it allows.
fn failing_too_long(since: OffsetDateTime, disable_after_secs: u64, now: OffsetDateTime) -> bool {
    let limit = time::Duration::seconds(i64::try_from(disable_after_secs).unwrap_or(i64::MAX));
    now - since > limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_logged_with_what_became_of_its_delivery() {
        let retry = Some(Verdict::Retry);
        assert_eq!(attempt_verdict(retry, &Settlement::RetryAt(1)), "retry");
        assert_eq!(
            attempt_verdict(retry, &Settlement::Failed("gave up".into())),
            "fail",
            "a retryable failure past the schedule"
        );
        let disable = |reason: &str| Settlement::FailedAndDisable {
            error: "e".into(),
            reason: reason.into(),
        };
        assert_eq!(
            attempt_verdict(Some(Verdict::Gone), &disable("410")),
            "gone"
        );
        assert_eq!(attempt_verdict(retry, &disable("failing too long")), "fail");
        assert_eq!(
            attempt_verdict(Some(Verdict::Success), &Settlement::Succeeded),
            "success"
        );
    }

    #[test]
    fn an_endpoint_is_disabled_only_past_its_failing_period() {
        let now = OffsetDateTime::now_utc();
        let day = 86_400;
        assert!(!failing_too_long(
            now - time::Duration::days(4),
            5 * day,
            now
        ));
        assert!(failing_too_long(
            now - time::Duration::days(6),
            5 * day,
            now
        ));
        assert!(failing_too_long(now - time::Duration::seconds(61), 60, now));
        assert!(!failing_too_long(now, 60, now));
        // An absurd setting never overflows into "disable now".
        assert!(!failing_too_long(
            now - time::Duration::days(3650),
            u64::MAX,
            now
        ));
    }
}
