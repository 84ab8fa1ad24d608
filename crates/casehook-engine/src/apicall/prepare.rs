//! Building an API call's request from its template, the case and the workspace's secrets:
//! URL (base URL + path, or an absolute URL; values percent-encoded), headers, query, body
//! (JSON or form) and the auth method's credentials, with every secret value used recorded
//! so the call log can redact it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use casehook_core::case::Case;
use casehook_core::connection::{AuthMethod, BodyFormat, ConnectionConfig, RequestSpec};
use casehook_core::sealed::{MasterKey, context};
use casehook_core::template::{
    Escape, JsonScope, JsonTemplate, Missing, Rendered, SECRET_ROOT, Template, form_urlencode,
};
use casehook_core::{ConnectionId, WorkspaceId};
use casehook_outbound::{Method, OutboundRequest};
use casehook_store::{ConnectionRecord, RefreshTokenOwner, Store};
use serde_json::{Value, json};

/// A connection ready to use: its configuration and its opened credentials.
#[derive(Debug)]
pub struct LiveConnection {
    pub record: ConnectionRecord,
    pub config: ConnectionConfig,
    pub auth: AuthMethod,
}

impl LiveConnection {
    /// Parse the stored configuration and open the credentials.
    pub fn open(record: ConnectionRecord, keys: &MasterKey) -> Result<Self, String> {
        let config: ConnectionConfig = serde_json::from_value(record.config.clone())
            .map_err(|e| format!("connection `{}`: stored configuration: {e}", record.name))?;
        let auth = match &record.credentials {
            None => AuthMethod::None,
            Some(sealed) => {
                let plain = keys
                    .open(sealed, &context::connection_credentials(record.id))
                    .map_err(|e| format!("connection `{}`: credentials: {e}", record.name))?;
                serde_json::from_slice(&plain)
                    .map_err(|e| format!("connection `{}`: credentials: {e}", record.name))?
            }
        };
        Ok(Self {
            record,
            config,
            auth,
        })
    }
}

/// Credentials with their templates rendered.
#[derive(Clone)]
pub enum Credentials {
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    ApiKey {
        name: String,
        value: String,
        query: bool,
    },
    OAuth2(OAuth2Client),
    OAuth1(
        casehook_core::auth::oauth1::Credentials,
        casehook_core::connection::auth::OAuth1Method,
        Option<String>,
    ),
    SigV4(casehook_core::auth::sigv4::Credentials, String, String),
    Digest {
        username: String,
        password: String,
    },
}

/// What an OAuth 2.0 token request needs. `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OAuth2Client {
    pub grant: casehook_core::connection::auth::OAuth2Grant,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub basic: bool,
    /// Where a refresh token the server rotates in is kept; none keeps it in this process
    /// only.
    pub kept_under: Option<RefreshTokenOwner>,
}

impl OAuth2Client {
    /// Where a refresh token the server rotates in is kept, for a request's own auth (no
    /// connection): under an id derived from what identifies the grant (the workspace, the
    /// token endpoint, the client and the configured refresh token), so that every process
    /// and every restart finds the same entry, and configuring another token starts afresh.
    /// The id is a hash: it reveals nothing of the token.
    pub fn keep_rotated_tokens_in(&mut self, workspace: WorkspaceId) {
        use sha2::{Digest, Sha256};
        if self.kept_under.is_some() {
            return;
        }
        let Some(configured) = &self.refresh_token else {
            return;
        };
        let mut hash = Sha256::new();
        hash.update(b"casehook inline oauth2 refresh token\0");
        hash.update(workspace.0.as_bytes());
        for part in [&self.token_url, &self.client_id, configured] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
        self.kept_under = Some(RefreshTokenOwner::Inline(workspace, ConnectionId(id)));
    }
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("grant", &self.grant)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Basic { .. } => "basic",
            Self::Bearer(_) => "bearer",
            Self::ApiKey { .. } => "api_key",
            Self::OAuth2(_) => "oauth2",
            Self::OAuth1(..) => "oauth1",
            Self::SigV4(..) => "aws_sigv4",
            Self::Digest { .. } => "digest",
        })
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("request", &self.request)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// A request ready to send, before auth is applied.
pub struct Prepared {
    pub request: OutboundRequest,
    pub credentials: Credentials,
    /// Every secret value put into the request or its credentials.
    pub sensitive: Vec<String>,
}

/// Why a request could not be built: never worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PrepareError(pub String);

/// The roots templates see.
pub fn scope_values(case: &Case, event: Option<&Value>, steps: &Value) -> Value {
    json!({
        "data": Value::Object(case.data.clone()),
        "case": {
            "id": case.id.to_string(),
            "number": case.number,
            "status": case.status,
            "form_id": case.form_id.to_string(),
            "external_refs": case.external_refs,
            "created_at": case.created_at.unix_timestamp(),
            "updated_at": case.updated_at.unix_timestamp(),
        },
        "event": event.cloned().unwrap_or_else(|| json!({"type": "manual"})),
        "steps": steps,
    })
}

/// The names of the secrets the templates refer to.
fn secret_names<'a>(
    templates: impl Iterator<Item = &'a Template>,
    body: Option<&Value>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |root: &str, path: &[String]| {
        if root == SECRET_ROOT
            && let [name] = path
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    };
    for t in templates {
        for p in t.placeholders() {
            add(p.root(), p.path());
        }
    }
    if let Some(body) = body.and_then(|b| JsonTemplate::parse(b).ok()) {
        for (_, p) in body.placeholders() {
            add(p.root(), p.path());
        }
    }
    names
}

/// Open the named secrets of the workspace; a missing one is an error that names it.
pub async fn load_secrets(
    store: &Store,
    keys: &MasterKey,
    workspace: casehook_core::WorkspaceId,
    names: &[String],
) -> Result<HashMap<String, String>, PrepareError> {
    let records = store
        .get_secrets(workspace, names)
        .await
        .map_err(|e| PrepareError(format!("reading secrets: {e}")))?;
    let mut out = HashMap::new();
    for record in records {
        let value = keys
            .open_text(&record.sealed, &context::workspace_secret(record.id))
            .map_err(|e| PrepareError(format!("secret `{}` does not open: {e}", record.name)))?;
        out.insert(record.name, value);
    }
    if let Some(missing) = names.iter().find(|n| !out.contains_key(*n)) {
        return Err(PrepareError(format!(
            "the secret `{missing}` does not exist in this workspace"
        )));
    }
    Ok(out)
}

/// Every template of a request, its connection and its credentials.
pub fn templates_of<'a>(
    spec: &'a RequestSpec,
    connection: Option<&'a LiveConnection>,
) -> Vec<&'a Template> {
    let mut all: Vec<&Template> = Vec::new();
    all.extend(spec.url.iter());
    all.extend(spec.path.iter());
    all.extend(spec.headers.values());
    all.extend(spec.query.values());
    let auth = connection.map(|c| &c.auth).or(spec.auth.as_ref());
    if let Some(auth) = auth {
        all.extend(auth.templates().into_iter().map(|(_, t)| t));
    }
    if let Some(c) = connection {
        all.extend(c.config.headers.values());
    }
    all
}

/// Names of the secrets a request needs.
pub fn needed_secrets(spec: &RequestSpec, connection: Option<&LiveConnection>) -> Vec<String> {
    secret_names(
        templates_of(spec, connection).into_iter(),
        spec.body.as_ref(),
    )
}

/// Render the request. `timeout` is the field's (or the connection's) per-try bound.
pub fn prepare(
    spec: &RequestSpec,
    connection: Option<&LiveConnection>,
    values: &Value,
    secrets: &HashMap<String, String>,
    timeout: Duration,
) -> Result<Prepared, PrepareError> {
    let lookup = |name: &str| secrets.get(name).cloned();
    let scope = JsonScope::new(values).with_secrets(&lookup);
    let mut sensitive: Vec<String> = Vec::new();
    let keep = |r: Rendered, sensitive: &mut Vec<String>| {
        sensitive.extend(r.secrets_used);
        r.text
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| PrepareError(format!("{what}: {e}"));

    let mut url = match (connection, &spec.url, &spec.path) {
        (Some(c), _, Some(path)) => {
            let path = path
                .render_url(&scope, Missing::Error)
                .map_err(|e| fail("path", &e))?;
            format!(
                "{}{}",
                c.config.base_url.trim_end_matches('/'),
                keep(path, &mut sensitive)
            )
        }
        (None, Some(url), _) => {
            let url = url
                .render_url(&scope, Missing::Error)
                .map_err(|e| fail("url", &e))?;
            keep(url, &mut sensitive)
        }
        _ => {
            return Err(PrepareError(
                "the request has neither a URL nor a connection and path".into(),
            ));
        }
    };
    let mut query = Vec::new();
    for (name, value) in &spec.query {
        let rendered = value
            .render(&scope, Escape::None, Missing::Empty)
            .map_err(|e| fail(&format!("query `{name}`"), &e))?;
        query.push(format!(
            "{}={}",
            form_urlencode(name),
            form_urlencode(&keep(rendered, &mut sensitive))
        ));
    }
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let defaults = connection.map(|c| &c.config.headers);
    for (name, value) in defaults.into_iter().flatten().chain(spec.headers.iter()) {
        let rendered = value
            .render(&scope, Escape::Header, Missing::Empty)
            .map_err(|e| fail(&format!("header `{name}`"), &e))?;
        headers.insert(name.to_ascii_lowercase(), keep(rendered, &mut sensitive));
    }

    let method = match spec.method {
        casehook_core::endpoint::Method::Get => Method::GET,
        casehook_core::endpoint::Method::Post => Method::POST,
        casehook_core::endpoint::Method::Put => Method::PUT,
        casehook_core::endpoint::Method::Patch => Method::PATCH,
        casehook_core::endpoint::Method::Delete => Method::DELETE,
    };
    let mut request = OutboundRequest::new(method, url).with_timeout(timeout);
    if let Some(body) = &spec.body {
        let rendered = JsonTemplate::parse(body)
            .map_err(|e| fail("body", &e))?
            .render(&scope, Missing::Empty)
            .map_err(|e| fail("body", &e))?;
        sensitive.extend(rendered.secrets_used);
        let (content_type, bytes) = match spec.body_format {
            BodyFormat::Json => ("application/json", rendered.value.to_string().into_bytes()),
            BodyFormat::Form => (
                "application/x-www-form-urlencoded",
                form_body(&rendered.value).into_bytes(),
            ),
        };
        headers
            .entry("content-type".into())
            .or_insert_with(|| content_type.to_owned());
        request = request.with_body(bytes);
    }
    headers
        .entry("accept".into())
        .or_insert_with(|| "application/json".to_owned());
    for (name, value) in headers {
        request = request.with_header(name, value);
    }

    let auth = connection.map(|c| &c.auth).or(spec.auth.as_ref());
    let mut credentials = match auth {
        None => Credentials::None,
        Some(auth) => render_credentials(auth, &scope, &mut sensitive)?,
    };
    if let (Credentials::OAuth2(oauth), Some(c)) = (&mut credentials, connection) {
        oauth.kept_under = Some(RefreshTokenOwner::Connection(
            c.record.workspace_id,
            c.record.id,
        ));
    }
    sensitive.sort();
    sensitive.dedup();
    request.sensitive.extend(sensitive.iter().cloned());
    Ok(Prepared {
        request,
        credentials,
        sensitive,
    })
}

fn form_body(value: &Value) -> String {
    let Some(map) = value.as_object() else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}={}", form_urlencode(k), form_urlencode(&text))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn render_credentials(
    auth: &AuthMethod,
    scope: &JsonScope<'_>,
    sensitive: &mut Vec<String>,
) -> Result<Credentials, PrepareError> {
    let mut text = |t: &Template, secret: bool| -> Result<String, PrepareError> {
        let r = t
            .render(scope, Escape::None, Missing::Error)
            .map_err(|e| PrepareError(format!("auth: {e}")))?;
        sensitive.extend(r.secrets_used);
        if secret && !r.text.is_empty() {
            sensitive.push(r.text.clone());
        }
        Ok(r.text)
    };
    Ok(match auth {
        AuthMethod::None => Credentials::None,
        AuthMethod::Basic { username, password } => {
            let username = text(username, false)?;
            let password = text(password, true)?;
            // The header carries them base64-encoded: an API that echoes it back must not
            // carry the password into case data or answers in that spelling either.
            use base64::Engine as _;
            sensitive.push(
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            );
            Credentials::Basic { username, password }
        }
        AuthMethod::Digest { username, password } => Credentials::Digest {
            username: text(username, false)?,
            password: text(password, true)?,
        },
        AuthMethod::Bearer { token } => Credentials::Bearer(text(token, true)?),
        AuthMethod::ApiKey {
            name,
            value,
            placement,
        } => Credentials::ApiKey {
            name: name.clone(),
            value: text(value, true)?,
            query: *placement == casehook_core::connection::auth::KeyPlacement::Query,
        },
        AuthMethod::OAuth2 {
            grant,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scope: wanted,
            audience,
            client_auth,
        } => Credentials::OAuth2(OAuth2Client {
            grant: *grant,
            token_url: token_url.clone(),
            client_id: text(client_id, false)?,
            client_secret: text(client_secret, true)?,
            refresh_token: refresh_token.as_ref().map(|t| text(t, true)).transpose()?,
            scope: wanted.clone(),
            audience: audience.clone(),
            basic: *client_auth == casehook_core::connection::auth::ClientAuth::Basic,
            kept_under: None,
        }),
        AuthMethod::OAuth1 {
            consumer_key,
            consumer_secret,
            token,
            token_secret,
            signature_method,
            realm,
        } => Credentials::OAuth1(
            casehook_core::auth::oauth1::Credentials {
                consumer_key: text(consumer_key, false)?,
                consumer_secret: text(consumer_secret, true)?,
                token: token.as_ref().map(|t| text(t, false)).transpose()?,
                token_secret: token_secret.as_ref().map(|t| text(t, true)).transpose()?,
            },
            *signature_method,
            realm.clone(),
        ),
        AuthMethod::AwsSigv4 {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            service,
        } => Credentials::SigV4(
            casehook_core::auth::sigv4::Credentials {
                access_key_id: text(access_key_id, false)?,
                secret_access_key: text(secret_access_key, true)?,
                session_token: session_token.as_ref().map(|t| text(t, true)).transpose()?,
            },
            region.clone(),
            service.clone(),
        ),
    })
}
