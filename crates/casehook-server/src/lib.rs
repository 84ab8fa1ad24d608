//! casehook's HTTP server: the `/api/v1` REST API (authenticated by API key), operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`), the OpenAPI document generated from the
//! handlers, and the cross-cutting layers (errors as JSON, body limit, panics, metrics).
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests run the real server on
//! `127.0.0.1:0`.

pub mod auth;
pub mod bootstrap;
pub mod error;
pub mod extract;
pub mod fresh_cache;
pub mod inbound;
pub mod middleware;
mod openapi;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use casehook_core::{FormId, WorkspaceId};
use casehook_engine::Engine;
use casehook_store::{FormRecord, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use openapi::openapi_document;

use crate::auth::KeyCache;
use crate::error::ApiResult;

/// Server settings (validated by the binary before they get here).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (inbound hooks have their own limits).
    pub body_limit: usize,
    /// The address senders reach this server at (`https://hooks.example.com`), used to show
    /// inbound hooks' full URLs; without it only their paths are shown.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            public_url: None,
        }
    }
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    pub keys: KeyCache,
    /// The workers' shared state: endpoint cache, master key, outbound client.
    pub engine: Engine,
    /// Forms by id, so validating a case does not read the form from the database each time.
    pub forms: moka::sync::Cache<(WorkspaceId, FormId), Arc<FormRecord>>,
    /// Inbound hooks by URL token, and their rate limiters.
    pub hooks: inbound::HookCache,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig, engine: Engine) -> Self {
        let keys = KeyCache::new(&store);
        let hooks = inbound::HookCache::new(&store);
        Self {
            store,
            config: Arc::new(config),
            metrics: middleware::prometheus(),
            keys,
            engine,
            forms: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            hooks,
        }
    }

    /// A form of the workspace, from the cache when fresh. The store re-checks the form's
    /// version when a case is written, so a stale entry can cause a retry, never bad data.
    pub async fn form(&self, workspace: WorkspaceId, id: FormId) -> ApiResult<Arc<FormRecord>> {
        if let Some(form) = self.forms.get(&(workspace, id)) {
            return Ok(form);
        }
        let form = Arc::new(self.store.get_form(workspace, id).await?);
        self.forms.insert((workspace, id), form.clone());
        Ok(form)
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    with_layers(app_routes(), state)
}

/// Every route of the application, before the layers and the state.
pub fn app_routes() -> Router<AppState> {
    let (api, _) = openapi::api_router().split_for_parts();
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::serve_document),
        )
        .merge(routes::ops::router())
        .merge(inbound::receive_router())
}

/// Wrap routes in the server's cross-cutting layers (errors, limits, panics, metrics,
/// tracing). Benchmarks use it to measure a trivial handler on exactly the same stack.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    routes
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .with_state(state)
}

/// Serve until `shutdown` resolves, then stop accepting and finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, app(state), shutdown).await
}

/// Serve any router built with [`with_layers`] the same way.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address reaches handlers (inbound hooks' IP allow lists and request log).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
