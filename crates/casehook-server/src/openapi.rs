//! The OpenAPI 3 document, generated from the handlers' annotations and the types they take
//! and return (never written by hand), served at `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "casehook", description = "Integration engine for case-management platforms: forms, cases, events, webhooks."),
    servers((url = "/api/v1")),
    paths(crate::inbound::receive::receive, crate::inbound::receive::receive_with_flags),
    modifiers(&BearerAuth, &ServedAtTheRoot),
    tags(
        (name = "workspaces", description = "Tenants"),
        (name = "api-keys", description = "API keys and roles"),
        (name = "forms", description = "Case types and their fields"),
        (name = "cases", description = "Cases"),
        (name = "events", description = "The event feed and catalog"),
        (name = "endpoints", description = "Outgoing webhook endpoints"),
        (name = "deliveries", description = "Deliveries to endpoints and their attempts"),
        (name = "inbound-hooks", description = "Incoming webhooks: hooks, their request logs and replay"),
        (name = "secrets", description = "Workspace secrets, write-only"),
        (name = "connections", description = "API connections and their operations"),
        (name = "api-calls", description = "API-call fields: state, manual runs, dry runs and the call log"),
        (name = "actions", description = "API calls (requests, operations, sequences) run when events happen"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer chk_…`"))
                    .build(),
            ),
        );
    }
}

/// Where external systems send (`/in/…`) is served at the root, not under `/api/v1`: those
/// paths name their own server.
struct ServedAtTheRoot;

impl Modify for ServedAtTheRoot {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.starts_with("/in/") {
                item.servers = Some(vec![utoipa::openapi::Server::new("/")]);
            }
        }
    }
}

/// Every `/api/v1` route with its documentation.
pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::workspaces::router())
        .merge(routes::forms::router())
        .merge(routes::cases::router())
        .merge(routes::events::router())
        .merge(routes::endpoints::router())
        .merge(routes::endpoint_health::router())
        .merge(routes::deliveries::router())
        .merge(crate::inbound::hooks_router())
        .merge(routes::secrets::router())
        .merge(routes::connections::router())
        .merge(routes::api_calls::router())
        .merge(routes::actions::router())
}

/// The document, built once.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| api_router().split_for_parts().1)
}

pub(crate) async fn serve_document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(openapi_document())
}
