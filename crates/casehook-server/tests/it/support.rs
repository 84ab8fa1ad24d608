//! The harness every end-to-end test stands on: [`spawn_app`] starts the real server on
//! `127.0.0.1:0` over a fresh database (a SQLite file in a temporary directory, or a new
//! database on the testkit's throw-away PostgreSQL), with a known admin key, and hands back a
//! [`TestApp`] that speaks HTTP to it. `api_tests!` turns each `async fn name(app: TestApp)`
//! of a module into `sqlite::name` and `postgres::name`.
//!
//! Tests reach the server only over HTTP; the store is kept here only so a second server
//! (another configuration) can be started on the same database.

use std::collections::BTreeSet;
use std::sync::{Arc, Once};

use casehook_server::{AppState, ServerConfig};
use casehook_store::Store;
use reqwest::header::{CONTENT_TYPE, ETAG, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bootstrap admin key of every test app's default workspace.
pub const ADMIN_KEY: &str = "chk_integration_test_admin_key_0123456789";

/// Where a test app keeps its data.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres(&'static casehook_testkit::PgServer),
}

/// The testkit's PostgreSQL, `None` (after its loud warning) when it is not installed.
pub async fn postgres() -> Option<&'static casehook_testkit::PgServer> {
    // Starting the server runs child processes: keep that off the runtime's workers.
    tokio::task::spawn_blocking(casehook_testkit::postgres)
        .await
        .expect("the testkit starts PostgreSQL or explains why not")
}

/// A running server and an HTTP client pointed at it. Dropping it stops the server.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    /// The admin key of the default workspace.
    pub admin_key: String,
    pub client: reqwest::Client,
    /// `sqlite` or `postgres`, as `/readyz` names it.
    pub database: &'static str,
    store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Holds the SQLite file; shared with siblings on the same database.
    _dir: Option<Arc<TempDir>>,
    /// The delivery workers; dropping the sender stops them (the tasks are aborted with the set).
    _workers: (tokio::sync::watch::Sender<bool>, tokio::task::JoinSet<()>),
    keys: casehook_core::sealed::MasterKey,
}

/// Start the server on a fresh database of `backend`, default configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, ServerConfig::default()).await
}

/// Start the server on a fresh database of `backend` with `config`.
pub async fn spawn_app_with(backend: Backend, config: ServerConfig) -> TestApp {
    let (url, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory for the SQLite file");
            let url = format!("sqlite:{}", dir.path().join("t.db").display());
            (url, Some(Arc::new(dir)))
        }
        Backend::Postgres(pg) => {
            let url = tokio::task::spawn_blocking(move || pg.create_database())
                .await
                .expect("the testkit creates a database");
            (url, None)
        }
    };
    let store = Store::open(&url)
        .await
        .expect("open and migrate a store on the fresh database");
    let first =
        casehook_server::bootstrap::ensure_default_workspace(&store, Some(ADMIN_KEY.to_owned()))
            .await
            .expect("bootstrap the default workspace")
            .expect("a fresh database has no workspace yet");
    assert_eq!(first.admin_key, ADMIN_KEY, "the bootstrap key is adopted");
    let keys = casehook_core::sealed::MasterKey::generate().0;
    start(store, config, keys, dir).await
}

async fn start(
    store: Store,
    config: ServerConfig,
    keys: casehook_core::sealed::MasterKey,
    dir: Option<Arc<TempDir>>,
) -> TestApp {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port on 127.0.0.1");
    let port = listener
        .local_addr()
        .expect("a bound listener has an address")
        .port();
    let (tx, rx) = oneshot::channel::<()>();
    // Workers as in `casehook serve`, allowed to reach receivers on 127.0.0.1 and quick to
    // notice retries coming due.
    let outbound = casehook_outbound::Client::new(casehook_outbound::ClientConfig {
        policy: casehook_outbound::OutboundPolicy {
            allow_cidrs: vec!["127.0.0.0/8".parse().expect("a CIDR")],
            ..casehook_outbound::OutboundPolicy::default()
        },
        ..casehook_outbound::ClientConfig::default()
    })
    .expect("build the outbound client");
    let engine = casehook_engine::Engine::new(
        store.clone(),
        outbound,
        keys.clone(),
        casehook_engine::EngineConfig {
            poll_interval: std::time::Duration::from_millis(50),
            lease: std::time::Duration::from_secs(10),
            ..casehook_engine::EngineConfig::default()
        },
    );
    let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
    let workers = engine.start(workers_stop);
    let state = AppState::new(store.clone(), config, engine);
    let server = tokio::spawn(casehook_server::serve(listener, state, async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("build an HTTP client");
    TestApp {
        base_url: format!("http://127.0.0.1:{port}"),
        admin_key: ADMIN_KEY.to_owned(),
        client,
        database: store.dialect_name(),
        store,
        shutdown: Some(tx),
        server: Some(server),
        _workers: (stop_workers, workers),
        keys,
        _dir: dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A key as the API issued it.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub secret: String,
}

/// A workspace created through the API, with its first admin key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub admin_key: String,
}

impl TestApp {
    /// Another server on the same database with a different configuration (same admin key
    /// and master key): a second process, or this one after a restart.
    pub async fn sibling(&self, config: ServerConfig) -> TestApp {
        start(
            self.store.clone(),
            config,
            self.keys.clone(),
            self._dir.clone(),
        )
        .await
    }

    /// The SQLite database's files (the database and its journal), for tests that search
    /// what the server keeps at rest; empty on PostgreSQL.
    pub fn sqlite_files(&self) -> Vec<std::path::PathBuf> {
        let Some(dir) = &self._dir else {
            return Vec::new();
        };
        ["t.db", "t.db-wal", "t.db-journal"]
            .iter()
            .map(|name| dir.path().join(name))
            .filter(|path| path.exists())
            .collect()
    }

    /// Stop accepting, finish in-flight requests, and report how serving ended.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }

    /// An `/api/v1` request; `path` is relative to `/api/v1` (`/cases/%231`).
    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base_url));
        match key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// Send a request and read the whole answer.
    pub async fn send(&self, builder: RequestBuilder) -> Reply {
        let request = builder.build().expect("a well-formed request");
        let what = format!("{} {}", request.method(), request.url());
        let response = self
            .client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: unreadable body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            what,
            status,
            headers,
            text,
            body,
        }
    }

    /// GET a path outside `/api/v1` (`/healthz`, `/metrics`).
    pub async fn get_root(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.base_url)))
            .await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.send(self.request(Method::GET, path, Some(key))).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path, Some(key)).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.request(Method::PUT, path, Some(key)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.request(Method::PATCH, path, Some(key)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        self.send(self.request(Method::DELETE, path, Some(key)))
            .await
    }

    /// A request with `If-Match: "<version>"`.
    pub async fn send_if_match(
        &self,
        method: Method,
        path: &str,
        version: i64,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = self
            .request(method, path, Some(&self.admin_key))
            .header("If-Match", format!("\"{version}\""));
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        self.send(builder).await
    }

    /// Create a form as admin; returns the stored form.
    pub async fn create_form(&self, spec: Value) -> Value {
        self.post("/forms", &self.admin_key, spec)
            .await
            .expect_status(201)
            .body
    }

    /// A small form with a few typed fields, for tests that need any form.
    pub async fn create_claims_form(&self) -> Value {
        self.create_form(json!({
            "name": "Claims",
            "statuses": ["open", "approved", "closed"],
            "fields": [
                {"key": "amount", "type": "number"},
                {"key": "kind", "type": "select", "options": ["car", "home"]},
                {"key": "note", "type": "text"}
            ]
        }))
        .await
    }

    /// Create a case as admin; returns the stored case.
    pub async fn create_case(&self, form_id: &str, data: Value) -> Value {
        self.create_case_with(json!({"form_id": form_id, "data": data}))
            .await
    }

    /// Create a case from a whole request body as admin.
    pub async fn create_case_with(&self, body: Value) -> Value {
        self.post("/cases", &self.admin_key, body)
            .await
            .expect_status(201)
            .body
    }

    /// Issue a key of `role` in the default workspace.
    pub async fn create_key(&self, role: &str) -> IssuedKey {
        let body = self
            .post(
                "/api-keys",
                &self.admin_key,
                json!({"name": format!("{role} key"), "role": role}),
            )
            .await
            .expect_status(201)
            .body;
        IssuedKey {
            id: text(&body["id"]),
            secret: text(&body["key"]),
        }
    }

    /// Create another workspace; returns it with its first admin key.
    pub async fn create_workspace(&self, name: &str) -> Tenant {
        let body = self
            .post("/workspaces", &self.admin_key, json!({"name": name}))
            .await
            .expect_status(201)
            .body;
        Tenant {
            id: text(&body["workspace"]["id"]),
            admin_key: text(&body["api_key"]["key"]),
        }
    }

    /// The whole event feed the key can see (one page of up to 1000).
    pub async fn events(&self, key: &str, query: &str) -> Vec<Value> {
        self.get(&format!("/events?limit=1000{query}"), key)
            .await
            .expect_status(200)
            .items()
    }
}

/// A whole answer: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// Method and URL, for failure messages.
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Reply {
    /// Assert the status, showing the body when it differs.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.text
        );
        self
    }

    /// Assert an error answer: the status, `application/json`, and exactly the body
    /// `{"error": {"code", "message"[, "details"]}}` with this code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        let reply = self.expect_status(status);
        let content_type = reply
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{}: an error must be JSON, got content-type `{content_type}`: {}",
            reply.what,
            reply.text
        );
        let shape = || format!("{}: not our error shape: {}", reply.what, reply.text);
        let outer = reply
            .body
            .as_object()
            .unwrap_or_else(|| panic!("{}", shape()));
        assert_eq!(outer.len(), 1, "{}", shape());
        let error = outer
            .get("error")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{}", shape()));
        assert!(
            error
                .keys()
                .all(|k| matches!(k.as_str(), "code" | "message" | "details")),
            "{}",
            shape()
        );
        assert_eq!(
            error.get("code"),
            Some(&json!(code)),
            "{}: wrong error code: {}",
            reply.what,
            reply.text
        );
        let message = error.get("message").and_then(Value::as_str);
        assert!(message.is_some_and(|m| !m.trim().is_empty()), "{}", shape());
        if let Some(details) = error.get("details") {
            let details = details.as_array().unwrap_or_else(|| panic!("{}", shape()));
            for d in details {
                assert!(d["field"].is_string(), "{}", shape());
                assert!(d["code"].is_string(), "{}", shape());
                assert!(
                    d["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{}",
                    shape()
                );
            }
        }
        reply
    }

    /// The `ETag` header, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get(ETAG).and_then(|v| v.to_str().ok())
    }

    /// `items` of a list answer.
    #[track_caller]
    pub fn items(&self) -> Vec<Value> {
        self.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no `items` list: {}", self.what, self.text))
            .clone()
    }

    /// `(field, code)` of every detail of an error answer.
    pub fn details(&self) -> BTreeSet<(String, String)> {
        self.body["error"]["details"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| (text(&d["field"]), text(&d["code"])))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A JSON string's text; panics on anything else, naming what it got.
#[track_caller]
pub fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

/// `(field, code)` pairs, for comparing with [`Reply::details`].
pub fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect()
}

/// Generates `sqlite::name` and `postgres::name` tests for each `async fn name(app: TestApp)`
/// of the calling module; the PostgreSQL ones return early when PostgreSQL is not installed
/// (the testkit has warned loudly). Attributes before a name apply to both backends; those in
/// `sqlite(…)` or `postgres(…)` after it to that backend only:
///
/// ```ignore
/// api_tests!(
///     a,
///     #[should_panic(expected = "…")] b,
///     c postgres(#[should_panic(expected = "…")]),
/// );
/// ```
macro_rules! api_tests {
    ($(
        $(#[$meta:meta])*
        $name:ident
        $(sqlite($(#[$sqlite:meta])*))?
        $(postgres($(#[$postgres:meta])*))?
    ),+ $(,)?) => {
        mod sqlite {
            $(
                $(#[$meta])*
                $($(#[$sqlite])*)?
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::support::spawn_app($crate::support::Backend::Sqlite).await;
                    super::$name(app).await;
                }
            )+
        }

        mod postgres {
            $(
                $(#[$meta])*
                $($(#[$postgres])*)?
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(pg) = $crate::support::postgres().await else { return };
                    let backend = $crate::support::Backend::Postgres(pg);
                    let app = $crate::support::spawn_app(backend).await;
                    super::$name(app).await;
                }
            )+
        }
    };
}
pub(crate) use api_tests;
