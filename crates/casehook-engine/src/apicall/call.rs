//! Making an API-call field's calls once: each step rendered from the case (and the earlier
//! steps' outputs), answered from the cache when allowed, sent with its credentials, judged
//! (status, error rules), and every exchange logged like a delivery attempt.

use std::time::Duration;

use casehook_core::case::Case;
use casehook_core::connection::first_failure;
use casehook_outbound::Exchange;
use casehook_store::{NewApiCallLog, now_micros};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::exchange_request_json;
use super::prepare::{self, Prepared};
use super::resolve::{ConfigError, Resolved, ResolvedStep};
use crate::Engine;

/// One HTTP exchange and the step it belongs to.
#[derive(Debug)]
pub struct StepExchange {
    pub step: usize,
    pub exchange: Exchange,
}

/// What one try came to.
pub struct TryOutcome {
    /// The JSON answer (for a sequence: `{"steps": {…}}`), secrets redacted.
    pub response: Option<Value>,
    /// The last step's status.
    pub status: Option<u16>,
    /// Whether every answer came from the cache.
    pub cached: bool,
    /// `None` on success; the message and whether to try again.
    pub failure: Option<(String, bool)>,
    pub duration_ms: i64,
    pub exchanges: Vec<StepExchange>,
    /// Steps skipped because their condition was false.
    pub skipped: Vec<String>,
    pub prepared_sensitive: Vec<String>,
}

impl std::fmt::Debug for TryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryOutcome")
            .field("status", &self.status)
            .field("cached", &self.cached)
            .field("failure", &self.failure)
            .field("exchanges", &self.exchanges.len())
            .finish_non_exhaustive()
    }
}

/// One step's try.
struct StepTry {
    response: Option<Value>,
    status: Option<u16>,
    cached: bool,
    failure: Option<(String, bool)>,
    exchanges: Vec<Exchange>,
    sensitive: Vec<String>,
}

/// The key of a rendered request in the response cache.
fn cache_key(case: &Case, field: &str, step: &str, p: &Prepared) -> String {
    let mut h = Sha256::new();
    h.update(case.workspace_id.as_uuid().as_bytes());
    for part in [
        field,
        step,
        p.request.method.as_str(),
        p.request.url.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (n, v) in &p.request.headers {
        h.update(n.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update([1]);
    h.update(p.request.body.as_deref().unwrap_or_default());
    hex::encode(h.finalize())
}

fn judge(step: &ResolvedStep, exchange: &Exchange) -> (Option<Value>, Option<(String, bool)>) {
    let status = exchange.status();
    let body: Option<Value> = exchange
        .full_body()
        .ok()
        .and_then(|b| serde_json::from_slice(b).ok());
    if let Some(status) = status
        && let Some(f) = first_failure(&step.request.error_rules, status, body.as_ref())
    {
        return (body, Some((f.message, f.retry)));
    }
    if exchange.is_success() {
        return (body, None);
    }
    let failure = exchange.failure();
    let retry = match status {
        Some(s) => matches!(s, 408 | 425 | 429) || s >= 500,
        None => failure.as_ref().is_some_and(|f| f.is_retryable()),
    };
    let message = failure.map_or_else(|| "the call failed".to_owned(), |f| f.message);
    (body, Some((message, retry)))
}

/// A step's outputs: each path's single match, or its matches as an array.
fn outputs(step: &ResolvedStep, response: Option<&Value>) -> Value {
    let mut out = Map::new();
    for (name, path) in &step.outputs {
        let found = response.and_then(|r| {
            let compiled = casehook_core::mapping::compile_json_path(path).ok()?;
            let matches = compiled.query(r).all();
            match matches.as_slice() {
                [] => None,
                [one] => Some((*one).clone()),
                many => Some(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
            }
        });
        out.insert(name.clone(), found.unwrap_or(Value::Null));
    }
    Value::Object(out)
}

impl Engine {
    /// Make the calls for `case` once (answers from the cache when allowed), writing
    /// nothing. `dry_run` skips the cache.
    pub async fn try_api_call(
        &self,
        case: &Case,
        resolved: &Resolved,
        field: &str,
        event_type: Option<&str>,
        dry_run: bool,
    ) -> Result<TryOutcome, ConfigError> {
        let event = json!({"type": event_type.unwrap_or("manual")});
        let case_json = serde_json::to_value(case).unwrap_or(Value::Null);
        let mut steps = Map::new();
        let mut outcome = TryOutcome {
            response: None,
            status: None,
            cached: true,
            failure: None,
            duration_ms: 0,
            exchanges: Vec::new(),
            skipped: Vec::new(),
            prepared_sensitive: Vec::new(),
        };
        for (i, step) in resolved.steps.iter().enumerate() {
            let named = |m: &str| {
                if resolved.sequence {
                    format!("step `{}`: {m}", step.name)
                } else {
                    m.to_owned()
                }
            };
            let steps_value = Value::Object(steps.clone());
            if let Some(when) = &step.when {
                match when.evaluate_step(&event, Some(&case_json), &steps_value) {
                    Ok(true) => {}
                    Ok(false) => {
                        outcome.skipped.push(step.name.clone());
                        continue;
                    }
                    Err(e) => return Err(ConfigError(named(&format!("condition: {e}")))),
                }
            }
            let one = self
                .try_step(case, resolved, step, field, &event, &steps_value, dry_run)
                .await
                .map_err(|e| ConfigError(named(&e.0)))?;
            outcome.duration_ms += one
                .exchanges
                .iter()
                .map(|e| e.duration.as_millis() as i64)
                .sum::<i64>();
            outcome.exchanges.extend(
                one.exchanges
                    .into_iter()
                    .map(|exchange| StepExchange { step: i, exchange }),
            );
            outcome.prepared_sensitive.extend(one.sensitive);
            outcome.cached &= one.cached;
            outcome.status = one.status;
            if let Some((message, retry)) = one.failure {
                outcome.failure = Some((named(&message), retry));
                outcome.response = one.response;
                return Ok(outcome);
            }
            if resolved.sequence {
                steps.insert(step.name.clone(), outputs(step, one.response.as_ref()));
            } else {
                outcome.response = one.response;
            }
        }
        if resolved.sequence {
            outcome.response = Some(json!({"steps": steps}));
        }
        // Nothing ran (every step skipped): nothing came from the cache either.
        outcome.cached &= outcome.skipped.len() < resolved.steps.len();
        outcome.prepared_sensitive.sort();
        outcome.prepared_sensitive.dedup();
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_step(
        &self,
        case: &Case,
        resolved: &Resolved,
        step: &ResolvedStep,
        field: &str,
        event: &Value,
        steps: &Value,
        dry_run: bool,
    ) -> Result<StepTry, ConfigError> {
        let ws = case.workspace_id;
        let connection = step.connection.as_deref();
        let names = prepare::needed_secrets(&step.request, connection);
        let secrets = prepare::load_secrets(&self.inner.store, self.keys(), ws, &names)
            .await
            .map_err(|e| ConfigError(e.0))?;
        let values = prepare::scope_values(case, Some(event), steps);
        // The field's bound per try, never longer than its connection's timeout.
        let mut timeout = Duration::from_millis(resolved.spec.settings.timeout);
        if let Some(c) = connection {
            timeout = timeout.min(Duration::from_millis(c.config.timeout_ms));
        }
        let mut prepared = prepare::prepare(&step.request, connection, &values, &secrets, timeout)
            .map_err(|e| ConfigError(e.0))?;
        if let prepare::Credentials::OAuth2(oauth) = &mut prepared.credentials {
            oauth.keep_rotated_tokens_in(ws);
        }
        let cache_secs = resolved.spec.settings.cache_duration;
        let key = cache_key(case, field, &step.name, &prepared);
        if cache_secs > 0 && !dry_run {
            match self.inner.store.cached_response(&key).await {
                Ok(Some(hit)) => {
                    let response: Option<Value> = serde_json::from_slice(&hit.body).ok();
                    return Ok(StepTry {
                        response: response
                            .map(|r| casehook_outbound::redact_json(&r, &prepared.sensitive)),
                        status: u16::try_from(hit.status).ok(),
                        cached: true,
                        failure: None,
                        exchanges: Vec::new(),
                        sensitive: prepared.sensitive,
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "response cache unreadable; calling"),
            }
        }
        let client = self.client_for(connection)?;
        if !self.admit(connection).await {
            return Ok(StepTry {
                response: None,
                status: None,
                cached: false,
                failure: Some((
                    "the connection's rate limit kept the call waiting too long; it will be tried later"
                        .to_owned(),
                    true,
                )),
                exchanges: Vec::new(),
                sensitive: prepared.sensitive,
            });
        }
        let sent = self
            .inner
            .auth
            .send(&client, prepared.request.clone(), &prepared.credentials)
            .await;
        let Some(last) = sent.last() else {
            return Err(ConfigError("no request was made".into()));
        };
        let (response, failure) = judge(step, last);
        // An API that echoes a credential (a secret, or a token obtained for this call)
        // must not carry it into case data or answers.
        let mut sensitive = prepared.sensitive;
        sensitive.extend(sent.obtained.iter().cloned());
        let response = response.map(|r| casehook_outbound::redact_json(&r, &sensitive));
        if failure.is_none()
            && cache_secs > 0
            && !dry_run
            && let Ok(body) = last.full_body()
        {
            let expires = now_micros() + i64::try_from(cache_secs).unwrap_or(0) * 1_000_000;
            let status = i64::from(last.status().unwrap_or(200));
            // Stored redacted too: an echoed credential must not be kept at rest.
            let stored = match &response {
                Some(r) => serde_json::to_vec(r).unwrap_or_default(),
                None => casehook_outbound::redact(&String::from_utf8_lossy(body), &sensitive)
                    .into_bytes(),
            };
            if let Err(e) = self
                .inner
                .store
                .cache_response(key, ws, status, stored, expires)
                .await
            {
                tracing::warn!(error = %e, "could not cache the response");
            }
        }
        let status = last.status();
        Ok(StepTry {
            response,
            status,
            cached: false,
            failure,
            exchanges: sent.exchanges,
            sensitive,
        })
    }

    /// Log every exchange of a try.
    pub async fn log_exchanges(
        &self,
        case: &Case,
        field: Option<&str>,
        resolved: &Resolved,
        outcome: &TryOutcome,
        dry_run: bool,
    ) {
        let count = outcome.exchanges.len();
        for (i, StepExchange { step, exchange }) in outcome.exchanges.iter().enumerate() {
            let last = i + 1 == count;
            let verdict = match (&outcome.failure, last) {
                (None, true) => "ok",
                (Some((_, true)), true) => "retry",
                (Some(_), true) => "failed",
                // Token requests, challenges and earlier steps on the way.
                (_, false) if exchange.is_success() => "ok",
                (_, false) => "failed",
            };
            let step = resolved.steps.get(*step);
            let entry = NewApiCallLog {
                workspace: case.workspace_id,
                case_id: Some(case.id),
                field: field.filter(|f| !f.is_empty()).map(str::to_owned),
                connection_id: step
                    .and_then(|s| s.connection.as_ref())
                    .map(|c| c.record.id),
                operation: step.and_then(|s| s.operation.clone()),
                dry_run,
                started_at: now_micros() - exchange.duration.as_micros() as i64,
                duration_us: exchange.duration.as_micros() as i64,
                request: exchange_request_json(exchange),
                status: exchange.status().map(i64::from),
                response: exchange.response.as_ref().map(|r| {
                    json!({
                        "headers": r.headers,
                        "body_excerpt": r.body_excerpt,
                        "truncated": r.truncated,
                    })
                }),
                error_kind: exchange.failure().map(|f| f.kind.as_str().to_owned()),
                error: exchange.failure().map(|f| f.message),
                verdict: verdict.to_owned(),
            };
            if let Err(e) = self.inner.store.log_api_call(entry).await {
                tracing::warn!(error = %e, "could not log an API call");
            }
        }
    }
}
