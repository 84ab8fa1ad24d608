//! Response mapping: a successful delivery's JSON answer written back into the case.
//!
//! The write is a normal case update whose actor is the endpoint, so it produces a
//! `case.updated` event like any other change; the dispatcher never sends that event back to
//! the same endpoint, which cuts the simplest loop. Problems (no JSON, no case, a value that
//! does not fit its field) are logged and never fail the delivery, which did succeed.

use casehook_core::case::CaseRef;
use casehook_core::event::{Actor, ActorKind, Event};
use casehook_outbound::Exchange;
use casehook_store::{CasePatch, StoreError};
use serde_json::Value;

use crate::Engine;
use crate::live::LiveEndpoint;

pub(crate) async fn apply(
    engine: &Engine,
    endpoint: &LiveEndpoint,
    event: &Event,
    exchange: &Exchange,
) {
    let Some(mapping) = &endpoint.config.response_mapping else {
        return;
    };
    let Some(case_id) = event.case_id else {
        return;
    };
    let id = endpoint.record.id;
    let body = match exchange.full_body() {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(endpoint = %id, error = %e.message, "response too large to map");
            return;
        }
    };
    let response: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(endpoint = %id, error = %e, "response is not JSON; nothing mapped");
            return;
        }
    };
    let ws = event.workspace_id;
    let outcome = async {
        let case = engine.inner.store.get_case(ws, CaseRef::Id(case_id)).await?;
        let form = engine.inner.store.get_form(ws, case.form_id).await?;
        let mapped = mapping.apply(&response, &form.spec);
        for problem in &mapped.problems {
            tracing::info!(endpoint = %id, field = %problem.field, problem = %problem.message, "response value not mapped");
        }
        if mapped.data.is_empty() {
            return Ok::<_, StoreError>(None);
        }
        let patch = CasePatch {
            data: mapped.data,
            form_version: Some(form.version),
            ..CasePatch::default()
        };
        let actor = Actor {
            kind: ActorKind::Endpoint,
            id: Some(id.to_string()),
            name: format!("endpoint {}", endpoint.record.name),
            chain: event.actor.chain.saturating_add(1),
        };
        let (case, _) = engine.inner.store.update_case(ws, case_id, patch, None, actor, false).await?;
        Ok(Some(case.version))
    }
    .await;
    match outcome {
        Ok(Some(version)) => {
            tracing::debug!(endpoint = %id, case = %case_id, version, "response mapped into the case")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(endpoint = %id, case = %case_id, error = %e, "response could not be written back")
        }
    }
}
