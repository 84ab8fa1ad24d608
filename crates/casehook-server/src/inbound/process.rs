//! One request to a hook, from sender checks to the store write, and its request log entry.
//! Shared by the receiving route and by replays of logged requests (which skip the sender
//! checks and the idempotency key: they were checked when first received, and processing
//! again is the point).

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::http::StatusCode;
use casehook_core::event::{Actor, ActorKind, EventSchema, NewEvent};
use casehook_core::inbound::hook::{
    HookAction, IDEMPOTENCY_HEADERS, MAX_IDEMPOTENCY_KEY_BYTES, MatchKey, NoMatch,
};
use casehook_core::inbound::outcome::Accepted;
use casehook_core::inbound::payload::{Payload, parse_payload};
use casehook_core::inbound::verify::{RequestView, verify};
use casehook_core::validate::{Mode, validate_data};
use casehook_core::{FieldError, InboundRequestId, Role};
use casehook_store::{
    Applied, CaseMatch, CasePatch, FormRecord, IdempotencyClaim, InboundItem, InboundWrite,
    NewCase, NewInboundRequest, StoreError, now_micros,
};
use serde_json::{Map, Value, json};

use super::live::LiveHook;
use super::secrets::active;
use crate::AppState;
use crate::error::ApiError;

/// AM System's path options: `/skipvalidate` and `/skiptriggers`, in either order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub skip_validate: bool,
    pub skip_triggers: bool,
}

impl Flags {
    /// Parse the path after the token; `None` for anything but the two options, each once.
    pub(crate) fn parse(rest: &str) -> Option<Self> {
        let mut flags = Self::default();
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            let seen = match part {
                "skipvalidate" => std::mem::replace(&mut flags.skip_validate, true),
                "skiptriggers" => std::mem::replace(&mut flags.skip_triggers, true),
                _ => return None,
            };
            if seen {
                return None;
            }
        }
        Some(flags)
    }

    pub(crate) fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        Self {
            skip_validate: names.iter().any(|n| n.as_ref() == "skipvalidate"),
            skip_triggers: names.iter().any(|n| n.as_ref() == "skiptriggers"),
        }
    }

    fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.skip_validate {
            names.push("skipvalidate");
        }
        if self.skip_triggers {
            names.push("skiptriggers");
        }
        names
    }
}

/// A request as received (or as logged, for a replay).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub flags: Flags,
    /// Every header, names lowercase, values as sent.
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// `None` when the request was refused before its body was read.
    pub body: Option<Bytes>,
    /// The body's size (as announced, when it was not read).
    pub body_bytes: i64,
    pub peer: IpAddr,
    /// Microseconds since the epoch.
    pub received_at: i64,
    pub replay_of: Option<InboundRequestId>,
}

/// What the sender is answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub request_id: InboundRequestId,
    pub retry_after: Option<u64>,
    /// The idempotency key was processed before: this is the first request's answer.
    pub duplicate: bool,
}

/// A request refused before or instead of its write.
struct Refusal {
    error: ApiError,
    outcome: &'static str,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(error: ApiError, outcome: &'static str) -> Self {
        Self {
            error,
            outcome,
            retry_after: None,
        }
    }
}

/// What the request log records of the checks.
#[derive(Debug, Default)]
struct Checks {
    verification: Option<Result<(), String>>,
    idempotency_key: Option<String>,
}

/// Process a request to `hook` and answer it; the request is logged whatever happens.
pub(crate) async fn process(state: &AppState, hook: &LiveHook, incoming: Incoming) -> Answer {
    let id = InboundRequestId::new();
    let mut checks = Checks::default();
    match run(state, hook, &incoming, id, &mut checks).await {
        Ok(answer) => answer,
        Err(refusal) => refuse(state, hook, &incoming, id, &checks, refusal).await,
    }
}

/// Refuse a request before processing (rate limit, body limit), logging it.
pub(crate) async fn refuse_early(
    state: &AppState,
    hook: &LiveHook,
    incoming: &Incoming,
    error: ApiError,
    outcome: &'static str,
    retry_after: Option<u64>,
) -> Answer {
    let refusal = Refusal {
        error,
        outcome,
        retry_after,
    };
    let id = InboundRequestId::new();
    refuse(state, hook, incoming, id, &Checks::default(), refusal).await
}

async fn refuse(
    state: &AppState,
    hook: &LiveHook,
    incoming: &Incoming,
    id: InboundRequestId,
    checks: &Checks,
    refusal: Refusal,
) -> Answer {
    let body = refusal.error.body();
    let status = refusal.error.status;
    let mut entry = log_entry(hook, incoming, id, checks);
    entry.status = status.as_u16();
    entry.outcome = refusal.outcome.into();
    entry.response = body.clone();
    metrics::counter!("casehook_inbound_requests_total", "outcome" => refusal.outcome).increment(1);
    if let Err(e) = state.store.log_inbound_request(entry).await {
        tracing::error!(error = %e, hook = %hook.record.id, "cannot log an inbound request");
    }
    Answer {
        status,
        body,
        request_id: id,
        retry_after: refusal.retry_after,
        duplicate: false,
    }
}

/// The request log entry, before its outcome is known.
fn log_entry(
    hook: &LiveHook,
    incoming: &Incoming,
    id: InboundRequestId,
    checks: &Checks,
) -> NewInboundRequest {
    let limit = usize::try_from(hook.config.limits.log_body_bytes).unwrap_or(usize::MAX);
    let (body, truncated) = match &incoming.body {
        Some(b) if b.len() > limit => (Some(b[..limit].to_vec()), true),
        Some(b) => (Some(b.to_vec()), false),
        None => (None, incoming.body_bytes > 0),
    };
    let headers: Vec<Value> = incoming
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if hook.redact_headers.iter().any(|h| h == name) {
                "[redacted]"
            } else {
                value.as_str()
            };
            json!([name, shown])
        })
        .collect();
    let (verification, verification_error) = match &checks.verification {
        None => ("not_checked", None),
        Some(Ok(())) => ("passed", None),
        Some(Err(why)) => ("failed", Some(why.clone())),
    };
    NewInboundRequest {
        id,
        workspace: hook.record.workspace_id,
        hook_id: hook.record.id,
        received_at: incoming.received_at,
        source_ip: incoming.peer.to_string(),
        flags: incoming.flags.names(),
        query: incoming
            .query
            .as_deref()
            .map(|q| redact_query(q, &hook.redact_query)),
        content_type: incoming.content_type.clone(),
        headers: Value::Array(headers),
        body,
        body_bytes: incoming.body_bytes,
        body_truncated: truncated,
        verification,
        verification_error,
        idempotency_key: checks.idempotency_key.clone(),
        status: 0,
        outcome: String::new(),
        response: Value::Null,
        case_id: None,
        replay_of: incoming.replay_of,
    }
}

/// The query string with the values of secret parameters replaced.
fn redact_query(query: &str, secret: &[String]) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret.iter().any(|s| s == name) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn run(
    state: &AppState,
    hook: &LiveHook,
    incoming: &Incoming,
    id: InboundRequestId,
    checks: &mut Checks,
) -> Result<Answer, Refusal> {
    if !hook.record.enabled {
        return Err(Refusal::new(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "hook_disabled",
                "this inbound hook is disabled",
            ),
            "disabled",
        ));
    }
    let body = incoming.body.clone().unwrap_or_default();
    if incoming.replay_of.is_none() {
        check_api_key(state, hook, incoming).await?;
        let verified = check_sender(hook, incoming, &body);
        checks.verification = Some(match &verified {
            Ok(()) => Ok(()),
            Err(refusal) => Err(refusal.error.message.clone()),
        });
        verified?;
    }
    let payload = parse_payload(incoming.content_type.as_deref(), &body).map_err(|e| {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Refusal::new(ApiError::new(status, e.code(), e.to_string()), "invalid")
    })?;
    let claim = if incoming.replay_of.is_none() {
        idempotency_key(hook, incoming, &payload)?.map(|key| {
            checks.idempotency_key = Some(key.clone());
            let window = i64::try_from(hook.config.idempotency.window_secs).unwrap_or(i64::MAX);
            IdempotencyClaim {
                key,
                expires_at: now_micros().saturating_add(window.saturating_mul(1_000_000)),
            }
        })
    } else {
        None
    };
    let batch = payload.is_batch();
    let items = payload.into_items();
    let mut retried = false;
    loop {
        let form = state
            .form(hook.record.workspace_id, hook.record.form_id)
            .await
            .map_err(|e| Refusal::new(e, "error"))?;
        if form.archived_at.is_some() {
            return Err(Refusal::new(StoreError::FormArchived.into(), "invalid"));
        }
        let built = build_items(state, hook, &form, &items, batch, incoming.flags).await?;
        let mut entry = log_entry(hook, incoming, id, checks);
        entry.status = 200;
        let write = InboundWrite {
            form_id: form.id,
            items: built.items,
            batch,
            idempotency: claim.clone(),
            request: entry,
        };
        match state.store.apply_inbound(write).await {
            Ok(Applied::Done(accepted)) => return Ok(accepted_answer(&accepted, false)),
            Ok(Applied::Duplicate(first)) => return Ok(accepted_answer(&first, true)),
            Err(StoreError::Item { source, .. })
                if matches!(*source, StoreError::FormChanged) && !retried =>
            {
                state
                    .forms
                    .invalidate(&(hook.record.workspace_id, hook.record.form_id));
                retried = true;
            }
            Err(e) => return Err(store_refusal(e, batch, &built.keys, &built.create_errors)),
        }
    }
}

fn accepted_answer(accepted: &Accepted, duplicate: bool) -> Answer {
    let outcome = if duplicate {
        "duplicate"
    } else {
        accepted.summary()
    };
    metrics::counter!("casehook_inbound_requests_total", "outcome" => outcome).increment(1);
    Answer {
        status: StatusCode::OK,
        body: accepted.body(),
        request_id: accepted.request_id,
        retry_after: None,
        duplicate,
    }
}

/// The refusal for a failed write, naming the item of a batch at fault.
fn store_refusal(
    e: StoreError,
    batch: bool,
    keys: &[Option<MatchKey>],
    create_errors: &[Option<Vec<FieldError>>],
) -> Refusal {
    let (index, cause) = match e {
        StoreError::Item { index, source } => (Some(index), *source),
        other => (None, other),
    };
    let at = match (batch, index) {
        (true, Some(i)) => format!("item {i}: "),
        _ => String::new(),
    };
    match cause {
        StoreError::NotFound("case") => {
            let i = index.unwrap_or(0);
            if let Some(Some(errors)) = create_errors.get(i) {
                let mut error = ApiError::validation(prefixed(errors.clone(), batch, i));
                error.message = format!(
                    "{at}no case matched, and the payload cannot create one: {}",
                    error.message
                );
                return Refusal::new(error, "invalid");
            }
            let what = keys
                .get(i)
                .and_then(Option::as_ref)
                .map_or_else(|| "the request".to_owned(), MatchKey::describe);
            Refusal::new(
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_match",
                    format!("{at}no case matches {what}"),
                ),
                "no_match",
            )
        }
        StoreError::Conflict(message) => Refusal::new(
            ApiError::new(StatusCode::CONFLICT, "conflict", format!("{at}{message}")),
            "conflict",
        ),
        StoreError::FormArchived | StoreError::FormChanged => {
            Refusal::new(ApiError::from(StoreError::FormArchived), "invalid")
        }
        other => Refusal::new(ApiError::from(other), "error"),
    }
}

async fn check_api_key(
    state: &AppState,
    hook: &LiveHook,
    incoming: &Incoming,
) -> Result<(), Refusal> {
    if !hook.config.require_api_key {
        return Ok(());
    }
    let deny = |message: &str| {
        Refusal::new(
            ApiError::new(StatusCode::UNAUTHORIZED, "access_deny", message),
            "denied",
        )
    };
    let header = |name: &str| {
        incoming
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
    };
    let secret = header("auth-key").or_else(|| {
        header("authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    });
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(deny(
            "this hook needs an API key in the `Auth-Key` header (or `Authorization: Bearer`)",
        ));
    };
    let key = state
        .keys
        .lookup(&state.store, secret)
        .await
        .map_err(|e| Refusal::new(e, "error"))?;
    let allowed = key.is_some_and(|k| {
        k.workspace_id == hook.record.workspace_id
            && match k.role {
                Role::Inbound => k.hook_id == Some(hook.record.id),
                role => role.allows(Role::Member),
            }
    });
    if allowed {
        Ok(())
    } else {
        Err(deny(
            "the API key is unknown, revoked, or not allowed to post to this hook",
        ))
    }
}

fn check_sender(hook: &LiveHook, incoming: &Incoming, body: &[u8]) -> Result<(), Refusal> {
    let now = now_micros();
    let view = RequestView {
        headers: &incoming.headers,
        query: incoming.query.as_deref(),
        body,
        peer: incoming.peer,
        now_unix: now / 1_000_000,
    };
    for (i, v) in hook.config.verifications.iter().enumerate() {
        let secrets = hook
            .secrets
            .get(i)
            .map(|set| active(set, now))
            .unwrap_or_default();
        if let Err(denied) = verify(v, &secrets, &view) {
            let mut error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "access_deny",
                denied.message.clone(),
            );
            error.details = vec![FieldError::new(
                format!("verifications[{i}]"),
                casehook_core::FieldErrorCode::ValueNotAllowed,
                format!("{} check failed: {}", v.kind(), denied.reason.as_str()),
            )];
            return Err(Refusal::new(error, "denied"));
        }
    }
    Ok(())
}

/// The request's idempotency key: the configured body path first, then the senders'
/// delivery-id headers.
fn idempotency_key(
    hook: &LiveHook,
    incoming: &Incoming,
    payload: &Payload,
) -> Result<Option<String>, Refusal> {
    let spec = &hook.config.idempotency;
    let bad = |message: String| {
        Refusal::new(
            ApiError::bad_request("invalid_idempotency_key", message),
            "invalid",
        )
    };
    let mut key = None;
    if spec.path.is_some() {
        let whole = match payload {
            Payload::One(item) => Value::Object(item.clone()),
            Payload::Batch(items) => {
                Value::Array(items.iter().cloned().map(Value::Object).collect())
            }
        };
        key = hook
            .config
            .idempotency_from_body(&whole)
            .map_err(|m| bad(format!("the idempotency path {m}")))?;
    }
    if key.is_none() && spec.headers {
        key = IDEMPOTENCY_HEADERS.iter().find_map(|name| {
            incoming
                .headers
                .iter()
                .find(|(n, v)| n == name && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        });
    }
    match key {
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_BYTES => Err(bad(format!(
            "the idempotency key is {} bytes; at most {MAX_IDEMPOTENCY_KEY_BYTES} are accepted",
            k.len()
        ))),
        other => Ok(other),
    }
}

/// Items ready for the store, with what is needed to explain a failed write.
struct Built {
    items: Vec<InboundItem>,
    keys: Vec<Option<MatchKey>>,
    /// For upserts whose payload could not create a case: why not.
    create_errors: Vec<Option<Vec<FieldError>>>,
}

fn prefixed(errors: Vec<FieldError>, batch: bool, index: usize) -> Vec<FieldError> {
    if !batch {
        return errors;
    }
    errors
        .into_iter()
        .map(|mut e| {
            e.field = if e.field.is_empty() {
                format!("[{index}]")
            } else {
                format!("[{index}].{}", e.field)
            };
            e
        })
        .collect()
}

async fn build_items(
    state: &AppState,
    hook: &LiveHook,
    form: &FormRecord,
    items: &[Map<String, Value>],
    batch: bool,
    flags: Flags,
) -> Result<Built, Refusal> {
    let config = &hook.config;
    let actor = Actor {
        kind: ActorKind::InboundHook,
        id: Some(hook.record.id.to_string()),
        name: format!("inbound hook {}", hook.record.name),
        chain: 0,
    };
    let schema = match (&config.action, &config.event_type) {
        (HookAction::Event, Some(name)) => event_schema(state, hook, name).await?,
        _ => None,
    };
    let mut built = Built {
        items: Vec::with_capacity(items.len()),
        keys: Vec::with_capacity(items.len()),
        create_errors: Vec::with_capacity(items.len()),
    };
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut problems = Vec::new();
        let key = config.match_key(item).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        let (built_item, create_errors) = match config.action {
            HookAction::Event => {
                let data = Value::Object(item.clone());
                if let Some(schema) = &schema
                    && let Err(e) = schema.check(&data)
                {
                    problems.extend(e);
                }
                let event = NewEvent {
                    event_type: config.event_type.clone().unwrap_or_default(),
                    case_id: None,
                    form_id: None,
                    actor: actor.clone(),
                    data,
                    changes: None,
                    skip_triggers: flags.skip_triggers,
                };
                (
                    key.clone().map(|k| InboundItem::Event {
                        target: to_case_match(k),
                        event,
                    }),
                    None,
                )
            }
            action => {
                let mapped = config.map_item(item, &form.spec);
                problems.extend(mapped.problems);
                let new_case = |data| NewCase {
                    workspace: hook.record.workspace_id,
                    form_id: form.id,
                    form_version: form.version,
                    status: config
                        .status
                        .clone()
                        .unwrap_or_else(|| form.spec.initial_status()),
                    data,
                    external_refs: mapped.external_refs.clone(),
                    actor: actor.clone(),
                    skip_triggers: flags.skip_triggers,
                };
                let create =
                    validate_data(&form.spec, &mapped.data, Mode::Create, flags.skip_validate);
                if action == HookAction::Create {
                    match create {
                        Ok(data) => (Some(InboundItem::Create(new_case(data))), None),
                        Err(e) => {
                            problems.extend(e);
                            (None, None)
                        }
                    }
                } else {
                    let patch_data =
                        validate_data(&form.spec, &mapped.data, Mode::Update, flags.skip_validate)
                            .unwrap_or_else(|e| {
                                problems.extend(e);
                                Map::new()
                            });
                    let creates =
                        action == HookAction::Upsert || config.on_no_match == NoMatch::Create;
                    let (or_create, create_errors) = match (creates, create) {
                        (true, Ok(data)) => (Some(new_case(data)), None),
                        (true, Err(e)) => (None, Some(e)),
                        (false, _) => (None, None),
                    };
                    let patch = CasePatch {
                        data: patch_data,
                        status: config.status.clone(),
                        external_refs: mapped
                            .external_refs
                            .iter()
                            .map(|(s, r)| (s.clone(), Some(r.clone())))
                            .collect::<BTreeMap<_, _>>(),
                        form_version: Some(form.version),
                        overrides: Vec::new(),
                    };
                    let item = key.clone().map(|k| InboundItem::Update {
                        target: to_case_match(k),
                        patch,
                        actor: actor.clone(),
                        skip_triggers: flags.skip_triggers,
                        or_create,
                    });
                    (item, create_errors)
                }
            }
        };
        if problems.is_empty()
            && let Some(item) = built_item
        {
            built.items.push(item);
        }
        errors.extend(prefixed(problems, batch, i));
        built.keys.push(key);
        built.create_errors.push(create_errors);
    }
    if errors.is_empty() {
        Ok(built)
    } else {
        Err(Refusal::new(ApiError::validation(errors), "invalid"))
    }
}

/// The compiled schema of the event type an `event` hook emits (none: any data).
async fn event_schema(
    state: &AppState,
    hook: &LiveHook,
    name: &str,
) -> Result<Option<EventSchema>, Refusal> {
    let record = state
        .store
        .get_event_type(hook.record.workspace_id, name)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => Refusal::new(
                ApiError::new(
                    StatusCode::CONFLICT,
                    "unknown_event_type",
                    format!("the hook emits `{name}`, which is not in the event catalog"),
                ),
                "invalid",
            ),
            other => Refusal::new(other.into(), "error"),
        })?;
    if record.archived_at.is_some() {
        return Err(Refusal::new(
            ApiError::new(
                StatusCode::CONFLICT,
                "unknown_event_type",
                format!("the hook emits `{name}`, which is archived in the event catalog"),
            ),
            "invalid",
        ));
    }
    match &record.schema {
        None => Ok(None),
        Some(schema) => EventSchema::compile(schema)
            .map(Some)
            .map_err(|e| Refusal::new(ApiError::validation(vec![e]), "error")),
    }
}

fn to_case_match(key: MatchKey) -> CaseMatch {
    match key {
        MatchKey::ExternalRef { source, reference } => CaseMatch::ExternalRef { source, reference },
        MatchKey::Field { key, value } => CaseMatch::Field { key, value },
        MatchKey::Number(n) => CaseMatch::Number(n),
    }
}
