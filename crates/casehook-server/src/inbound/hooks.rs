//! `/api/v1/inbound-hooks`: create, read, list, replace and delete hooks (admin), read their
//! URL and secrets, and rotate both with an overlap.
//!
//! The body is flat: `name` and `enabled` beside the configuration keys (`form_id`, `action`,
//! `match`, `mapping`, `verifications`, …). A verification may carry its `secret`; one left
//! out is generated where casehook may choose it (tokens, basic, HMAC, Standard Webhooks,
//! GitHub) and must be given where the sender issues it (Stripe, Shopify, Slack). On replace,
//! a verification without `secret` keeps the secrets of the same kind at the same position.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use casehook_core::inbound::hook::{HookAction, HookConfig};
use casehook_core::{FieldError, FieldErrorCode, InboundHookId, Role, WorkspaceId};
use casehook_store::{
    HookToken, InboundHookChange, InboundHookRecord, NewHookToken, NewInboundHook, StoreError,
    now_micros,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::requests;
use super::secrets::{
    SecretSets, StoredSecret, active, generate_token, open_secrets, open_token, seal_secrets,
    seal_token, token_hash,
};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IfMatch, OptionalJson, with_etag};
use crate::routes::parse_id;

/// The longest overlap of an old secret or URL with its replacement: 7 days.
const MAX_OVERLAP_SECS: u64 = 7 * 86_400;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_hook, list_hooks))
        .routes(routes!(get_hook, replace_hook, delete_hook))
        .routes(routes!(get_secrets))
        .routes(routes!(rotate_url))
        .routes(routes!(rotate_secret))
        .merge(requests::router())
}

/// A hook as the API shows it: its URL, never its verification secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookView {
    #[schema(value_type = String, format = Uuid)]
    pub id: InboundHookId,
    pub name: String,
    pub enabled: bool,
    /// Where senders post: `/in/<token>` (append `/skipvalidate`, `/skiptriggers`).
    pub url_path: String,
    /// The full URL, when the server knows its public address (`--public-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(flatten)]
    pub config: HookConfig,
}

/// A new hook with the secrets of its verifications, shown this once (and later to admins).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedHook {
    #[serde(flatten)]
    pub hook: HookView,
    pub secrets: Vec<VerificationSecrets>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookList {
    pub items: Vec<HookView>,
}

/// The secrets one verification accepts now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationSecrets {
    /// Position in `verifications`.
    pub index: usize,
    pub kind: &'static str,
    /// Newest first; a rotated-out secret shows until when it still verifies.
    pub secrets: Vec<SecretEntry>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretEntry {
    pub secret: String,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
}

/// Everything secret about a hook: its URLs (current and rotated-out) and verification secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookSecrets {
    pub urls: Vec<UrlEntry>,
    pub verifications: Vec<VerificationSecrets>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UrlEntry {
    pub url_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old URL or secret keeps working beside the new one (seconds, default
    /// 86400, at most 604800; 0 ends it at once).
    pub overlap_secs: Option<u64>,
    /// For a verification: the new secret (generated when left out, where casehook may).
    pub secret: Option<String>,
}

/// A submitted hook: the flat body split and checked.
struct Submitted {
    name: String,
    enabled: bool,
    config: HookConfig,
    /// Per verification: the secret given in the body, if any.
    given: Vec<Option<String>>,
}

fn problem(
    field: impl Into<String>,
    code: FieldErrorCode,
    message: impl Into<String>,
) -> FieldError {
    FieldError::new(field, code, message)
}

/// Split and check a submitted body against the workspace: every problem at once.
async fn submitted(state: &AppState, workspace: WorkspaceId, body: Value) -> ApiResult<Submitted> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    let mut problems = Vec::new();
    let name = match map.remove("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 200 => {
            n.trim().to_owned()
        }
        _ => {
            problems.push(problem(
                "name",
                FieldErrorCode::FieldRequired,
                "a name of 1 to 200 characters is required",
            ));
            String::new()
        }
    };
    let enabled = match map.remove("enabled") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            problems.push(problem(
                "enabled",
                FieldErrorCode::WrongType,
                "`enabled` is true or false",
            ));
            true
        }
    };
    // Secrets travel inside their verification but are kept apart from the configuration.
    let mut given = Vec::new();
    if let Some(Value::Array(list)) = map.get_mut("verifications") {
        for (i, v) in list.iter_mut().enumerate() {
            let secret = v.as_object_mut().and_then(|o| o.remove("secret"));
            given.push(match secret {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => {
                    problems.push(problem(
                        format!("verifications[{i}].secret"),
                        FieldErrorCode::WrongType,
                        "a secret is a string",
                    ));
                    None
                }
            });
        }
    }
    let config: HookConfig = match serde_json::from_value(Value::Object(map)) {
        Ok(config) => config,
        Err(e) => {
            problems.push(problem(
                "",
                FieldErrorCode::InvalidDefinition,
                format!("the hook configuration is not valid: {e}"),
            ));
            return Err(ApiError::validation(problems));
        }
    };
    match state.store.get_form(workspace, config.form_id).await {
        Ok(form) => {
            if let Err(e) = config.check(&form.spec) {
                problems.extend(e);
            }
        }
        Err(StoreError::NotFound(_)) => problems.push(problem(
            "form_id",
            FieldErrorCode::ValueNotAllowed,
            "no form of this workspace has this id",
        )),
        Err(e) => return Err(e.into()),
    }
    if let (HookAction::Event, Some(event_type)) = (config.action, &config.event_type) {
        match state.store.get_event_type(workspace, event_type).await {
            Ok(t) if t.archived_at.is_none() => {}
            Ok(_) => problems.push(problem(
                "event_type",
                FieldErrorCode::ValueNotAllowed,
                format!("`{event_type}` is archived in the event catalog"),
            )),
            Err(StoreError::NotFound(_)) => problems.push(problem(
                "event_type",
                FieldErrorCode::ValueNotAllowed,
                format!(
                    "`{event_type}` is not in the event catalog; register it at /event-types first"
                ),
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for (i, secret) in given.iter().enumerate() {
        if let (Some(secret), Some(v)) = (secret, config.verifications.get(i))
            && let Err(message) = v.check_secret(secret)
        {
            problems.push(problem(
                format!("verifications[{i}].secret"),
                FieldErrorCode::InvalidDefinition,
                message,
            ));
        }
    }
    given.resize(config.verifications.len(), None);
    if problems.is_empty() {
        Ok(Submitted {
            name,
            enabled,
            config,
            given,
        })
    } else {
        Err(ApiError::validation(problems))
    }
}

/// The secrets of every verification: given ones, else those kept from `previous` (same kind
/// at the same position), else generated ones; a sender-issued secret must be given.
fn secret_sets(
    config: &HookConfig,
    given: &[Option<String>],
    previous: Option<(&HookConfig, &SecretSets)>,
) -> ApiResult<SecretSets> {
    let mut sets = Vec::with_capacity(config.verifications.len());
    let mut problems = Vec::new();
    for (i, v) in config.verifications.iter().enumerate() {
        if !v.needs_secret() {
            sets.push(Vec::new());
            continue;
        }
        let kept = previous.and_then(|(old, sets)| {
            let same_kind = old
                .verifications
                .get(i)
                .is_some_and(|o| o.kind() == v.kind());
            same_kind.then(|| sets.get(i).cloned()).flatten()
        });
        let set = match (given.get(i).cloned().flatten(), kept) {
            (Some(secret), _) => vec![StoredSecret {
                value: secret,
                until: None,
            }],
            (None, Some(kept)) if !kept.is_empty() => kept,
            _ => {
                match v.generate_secret() {
                    Some(secret) => vec![StoredSecret {
                        value: secret,
                        until: None,
                    }],
                    None => {
                        problems.push(problem(
                        format!("verifications[{i}].secret"),
                        FieldErrorCode::FieldRequired,
                        format!("a `{}` check needs the secret the sender issued (from its dashboard)", v.kind()),
                    ));
                        Vec::new()
                    }
                }
            }
        };
        sets.push(set);
    }
    if problems.is_empty() {
        Ok(sets)
    } else {
        Err(ApiError::validation(problems))
    }
}

fn config_json(config: &HookConfig) -> ApiResult<Value> {
    serde_json::to_value(config).map_err(|e| ApiError::internal(&e))
}

fn full_url(state: &AppState, path: &str) -> Option<String> {
    state
        .config
        .public_url
        .as_ref()
        .map(|base| format!("{}{path}", base.trim_end_matches('/')))
}

fn micros_time(us: i64) -> Option<OffsetDateTime> {
    casehook_store::from_micros(us).ok()
}

/// The view of a stored hook, with its current URL.
async fn view(state: &AppState, record: InboundHookRecord) -> ApiResult<HookView> {
    let tokens = state
        .store
        .inbound_tokens(record.workspace_id, record.id)
        .await?;
    view_with(state, record, &tokens)
}

/// The view of a hook whose working URL tokens (newest first) are already read.
fn view_with(
    state: &AppState,
    record: InboundHookRecord,
    tokens: &[HookToken],
) -> ApiResult<HookView> {
    let config: HookConfig =
        serde_json::from_value(record.config.clone()).map_err(|e| ApiError::internal(&e))?;
    let current = tokens
        .iter()
        .find(|t| t.expires_at.is_none())
        .or(tokens.first())
        .ok_or_else(|| {
            ApiError::internal(&std::io::Error::other(
                "an inbound hook without a URL token",
            ))
        })?;
    let url_path = format!(
        "/in/{}",
        open_token(state.engine.keys(), record.id, &current.sealed)?
    );
    Ok(HookView {
        id: record.id,
        name: record.name,
        enabled: record.enabled,
        url: full_url(state, &url_path),
        url_path,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
        config,
    })
}

fn secrets_view(config: &HookConfig, sets: &SecretSets) -> Vec<VerificationSecrets> {
    let now = now_micros();
    config
        .verifications
        .iter()
        .enumerate()
        .filter(|(_, v)| v.needs_secret())
        .map(|(index, v)| VerificationSecrets {
            index,
            kind: v.kind(),
            secrets: sets
                .get(index)
                .map(|set| {
                    set.iter()
                        .filter(|s| s.until.is_none_or(|u| u > now))
                        .map(|s| SecretEntry {
                            secret: s.value.clone(),
                            valid_until: s.until.and_then(micros_time),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Create an inbound hook (admin). The answer carries its URL and its verifications' secrets.
#[utoipa::path(post, path = "/inbound-hooks", tag = "inbound-hooks", request_body = Object,
    responses((status = 201, body = CreatedHook), (status = 400, body = ErrorBody)), security(("api_key" = [])))]
async fn create_hook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let new = submitted(&state, caller.workspace, body).await?;
    let sets = secret_sets(&new.config, &new.given, None)?;
    let id = InboundHookId::new();
    let keys = state.engine.keys();
    let token = generate_token();
    let record = state
        .store
        .create_inbound_hook(NewInboundHook {
            id,
            workspace: caller.workspace,
            name: new.name,
            form_id: new.config.form_id,
            config: config_json(&new.config)?,
            secrets: seal_secrets(keys, id, &sets)?,
            enabled: new.enabled,
            token: NewHookToken {
                hash: token_hash(&token),
                sealed: seal_token(keys, id, &token)?,
            },
        })
        .await?;
    tracing::info!(hook = %id, by = %caller.key_id, "inbound hook created");
    let version = record.version;
    let hook = view(&state, record).await?;
    let secrets = secrets_view(&new.config, &sets);
    Ok(with_etag(
        StatusCode::CREATED,
        version,
        CreatedHook { hook, secrets },
    ))
}

#[utoipa::path(get, path = "/inbound-hooks", tag = "inbound-hooks",
    responses((status = 200, body = HookList)), security(("api_key" = [])))]
async fn list_hooks(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<HookList>> {
    caller.require(Role::Admin)?;
    let records = state.store.list_inbound_hooks(caller.workspace).await?;
    let tokens = state
        .store
        .workspace_inbound_tokens(caller.workspace)
        .await?;
    // A live hook always has a current token; one without any was deleted between the two
    // reads (deletion removes its tokens), and is left out.
    let items = records
        .into_iter()
        .filter_map(|record| {
            let own = tokens.get(&record.id)?;
            Some(view_with(&state, record, own))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(HookList { items }))
}

#[utoipa::path(get, path = "/inbound-hooks/{id}", tag = "inbound-hooks", params(("id" = String, Path)),
    responses((status = 200, body = HookView), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_hook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    let record = state.store.get_inbound_hook(caller.workspace, id).await?;
    let version = record.version;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&state, record).await?,
    ))
}

/// Replace a hook's configuration (admin). Send `If-Match` with the version you edited.
#[utoipa::path(put, path = "/inbound-hooks/{id}", tag = "inbound-hooks", request_body = Object, params(("id" = String, Path)),
    responses((status = 200, body = HookView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("api_key" = [])))]
async fn replace_hook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(version): IfMatch,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    let current = state.store.get_inbound_hook(caller.workspace, id).await?;
    let new = submitted(&state, caller.workspace, body).await?;
    let old_config: HookConfig =
        serde_json::from_value(current.config.clone()).map_err(|e| ApiError::internal(&e))?;
    let keys = state.engine.keys();
    let old_sets = open_secrets(keys, id, current.secrets.as_deref())?;
    let sets = secret_sets(&new.config, &new.given, Some((&old_config, &old_sets)))?;
    let change = InboundHookChange {
        name: Some(new.name),
        form_id: Some(new.config.form_id),
        config: Some(config_json(&new.config)?),
        secrets: Some(seal_secrets(keys, id, &sets)?),
        enabled: Some(new.enabled),
    };
    let record = state
        .store
        .update_inbound_hook(caller.workspace, id, change, version)
        .await?;
    let version = record.version;
    Ok(with_etag(
        StatusCode::OK,
        version,
        view(&state, record).await?,
    ))
}

/// Delete a hook (admin): its URL stops answering at once; its request log stays readable.
#[utoipa::path(delete, path = "/inbound-hooks/{id}", tag = "inbound-hooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn delete_hook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    state
        .store
        .delete_inbound_hook(caller.workspace, id)
        .await?;
    tracing::info!(hook = %id, by = %caller.key_id, "inbound hook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A hook's URLs and verification secrets that work now (admin).
#[utoipa::path(get, path = "/inbound-hooks/{id}/secrets", tag = "inbound-hooks", params(("id" = String, Path)),
    responses((status = 200, body = HookSecrets), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn get_secrets(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<HookSecrets>> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    let record = state.store.get_inbound_hook(caller.workspace, id).await?;
    secrets_of(&state, &record).await.map(Json)
}

async fn secrets_of(state: &AppState, record: &InboundHookRecord) -> ApiResult<HookSecrets> {
    let keys = state.engine.keys();
    let config: HookConfig =
        serde_json::from_value(record.config.clone()).map_err(|e| ApiError::internal(&e))?;
    let sets = open_secrets(keys, record.id, record.secrets.as_deref())?;
    let mut urls = Vec::new();
    for token in state
        .store
        .inbound_tokens(record.workspace_id, record.id)
        .await?
    {
        let url_path = format!("/in/{}", open_token(keys, record.id, &token.sealed)?);
        urls.push(UrlEntry {
            url: full_url(state, &url_path),
            url_path,
            valid_until: token.expires_at,
        });
    }
    Ok(HookSecrets {
        urls,
        verifications: secrets_view(&config, &sets),
    })
}

fn overlap_until(overlap: Option<u64>) -> ApiResult<i64> {
    let overlap = overlap.unwrap_or(86_400);
    if overlap > MAX_OVERLAP_SECS {
        return Err(ApiError::validation(vec![problem(
            "overlap_secs",
            FieldErrorCode::InvalidDefinition,
            format!("the overlap is at most 7 days ({MAX_OVERLAP_SECS} seconds)"),
        )]));
    }
    Ok(now_micros() + i64::try_from(overlap).unwrap_or(0) * 1_000_000)
}

/// Give a hook a new URL (admin); the current one keeps working for the overlap, so senders
/// can be switched without losing a request.
#[utoipa::path(post, path = "/inbound-hooks/{id}/rotate-url", tag = "inbound-hooks", params(("id" = String, Path)),
    request_body = RotateBody,
    responses((status = 200, body = HookSecrets), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
async fn rotate_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> ApiResult<Json<HookSecrets>> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    if body.secret.is_some() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a URL is always generated; leave `secret` out",
        ));
    }
    let until = overlap_until(body.overlap_secs)?;
    let token = generate_token();
    let sealed = seal_token(state.engine.keys(), id, &token)?;
    state
        .store
        .rotate_inbound_token(
            caller.workspace,
            id,
            NewHookToken {
                hash: token_hash(&token),
                sealed,
            },
            until,
        )
        .await?;
    let record = state.store.get_inbound_hook(caller.workspace, id).await?;
    secrets_of(&state, &record).await.map(Json)
}

/// Rotate one verification's secret (admin): the old one keeps verifying for the overlap.
#[utoipa::path(post, path = "/inbound-hooks/{id}/verifications/{index}/rotate", tag = "inbound-hooks",
    params(("id" = String, Path), ("index" = usize, Path)), request_body = RotateBody,
    responses((status = 200, body = HookSecrets), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, index)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> ApiResult<Json<HookSecrets>> {
    caller.require(Role::Admin)?;
    let id: InboundHookId = parse_id(&id, "inbound hook")?;
    let record = state.store.get_inbound_hook(caller.workspace, id).await?;
    let config: HookConfig =
        serde_json::from_value(record.config.clone()).map_err(|e| ApiError::internal(&e))?;
    let (index, v) = index
        .parse::<usize>()
        .ok()
        .and_then(|i| config.verifications.get(i).map(|v| (i, v)))
        .filter(|(_, v)| v.needs_secret())
        .ok_or_else(|| ApiError::not_found("verification with a secret"))?;
    let secret = match body.secret {
        Some(secret) => {
            v.check_secret(&secret).map_err(|m| {
                ApiError::validation(vec![problem(
                    "secret",
                    FieldErrorCode::InvalidDefinition,
                    m,
                )])
            })?;
            secret
        }
        None => v.generate_secret().ok_or_else(|| {
            ApiError::validation(vec![problem(
                "secret",
                FieldErrorCode::FieldRequired,
                format!(
                    "a `{}` secret is issued by the sender; give the new one",
                    v.kind()
                ),
            )])
        })?,
    };
    let until = overlap_until(body.overlap_secs)?;
    let keys = state.engine.keys();
    let mut sets = open_secrets(keys, id, record.secrets.as_deref())?;
    sets.resize_with(config.verifications.len(), Vec::new);
    let now = now_micros();
    let kept: Vec<StoredSecret> = active(&sets[index], now)
        .into_iter()
        .map(|value| StoredSecret {
            value: value.to_owned(),
            until: Some(until),
        })
        .filter(|s| s.until.is_some_and(|u| u > now))
        .take(1)
        .collect();
    sets[index] = std::iter::once(StoredSecret {
        value: secret,
        until: None,
    })
    .chain(kept)
    .collect();
    let change = InboundHookChange {
        secrets: Some(seal_secrets(keys, id, &sets)?),
        ..InboundHookChange::default()
    };
    let record = state
        .store
        .update_inbound_hook(caller.workspace, id, change, None)
        .await?;
    secrets_of(&state, &record).await.map(Json)
}
