//! Resolving an API-call field's configuration into the requests it makes: an inline
//! request, a connection's operation, or the steps of a sequence, each with its connection
//! (credentials opened), condition and outputs, and the mapping into the case.

use std::collections::BTreeMap;
use std::sync::Arc;

use casehook_core::WorkspaceId;
use casehook_core::apicall::{ApiCallSpec, Source};
use casehook_core::condition::Condition;
use casehook_core::connection::{MappingSpec, RequestSpec};
use casehook_core::form::FormSpec;
use casehook_core::mapping::ResponseMapping;
use casehook_store::StoreError;

use super::prepare::LiveConnection;
use crate::Engine;

/// One request of a resolved configuration.
#[derive(Debug)]
pub struct ResolvedStep {
    /// The step's name (empty for a single request).
    pub name: String,
    pub request: RequestSpec,
    pub connection: Option<Arc<LiveConnection>>,
    /// The operation's name, when the request is one.
    pub operation: Option<String>,
    pub when: Option<Condition>,
    /// Output name → JSONPath (steps of a sequence only).
    pub outputs: BTreeMap<String, String>,
}

/// The requests an API-call field makes, and the mapping that applies to the answer (for a
/// sequence, to `{"steps": {<step>: {<output>: …}}}`).
#[derive(Debug)]
pub struct Resolved {
    pub spec: ApiCallSpec,
    pub steps: Vec<ResolvedStep>,
    pub sequence: bool,
    pub mapping: ResponseMapping,
}

/// Why a call could not even be attempted: a configuration problem, never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Engine {
    /// Resolve an API-call field of a form.
    pub async fn resolve_api_call(
        &self,
        workspace: WorkspaceId,
        form: &FormSpec,
        field: &str,
    ) -> Result<Resolved, ConfigError> {
        let spec = casehook_core::apicall::spec_of(form, field).ok_or_else(|| {
            ConfigError(format!("`{field}` is not an API-call field of the form"))
        })?;
        self.resolve_spec(workspace, spec, field).await
    }

    /// Resolve a configuration: its requests, connections and mapping (into `field`).
    pub async fn resolve_spec(
        &self,
        workspace: WorkspaceId,
        spec: ApiCallSpec,
        field: &str,
    ) -> Result<Resolved, ConfigError> {
        let (steps, op_mapping) = match &spec.source {
            Source::Inline { api_config } => {
                let step = self
                    .inline_step(workspace, String::new(), api_config)
                    .await?;
                (vec![step], None)
            }
            Source::Operation {
                connection,
                operation,
            } => {
                let (step, mapping) = self
                    .operation_step(workspace, String::new(), connection, operation)
                    .await?;
                (vec![step], mapping)
            }
            Source::Sequence { sequence } => {
                let mut steps = Vec::with_capacity(sequence.len());
                for s in sequence {
                    let mut step = match (&s.connection, &s.operation, &s.api_config) {
                        (Some(c), Some(o), _) => {
                            self.operation_step(workspace, s.name.clone(), c, o)
                                .await?
                                .0
                        }
                        (_, _, Some(config)) => {
                            self.inline_step(workspace, s.name.clone(), config).await?
                        }
                        _ => {
                            return Err(ConfigError(format!(
                                "step `{}` has neither an operation nor an api_config",
                                s.name
                            )));
                        }
                    };
                    step.when = match &s.when {
                        Some(source) => Some(Condition::compile_step(source).map_err(|e| {
                            ConfigError(format!("step `{}`: condition: {e}", s.name))
                        })?),
                        None => None,
                    };
                    step.outputs = s.outputs.clone();
                    steps.push(step);
                }
                (steps, None)
            }
        };
        let sequence = matches!(spec.source, Source::Sequence { .. });
        let mapping = if sequence && spec.settings.response_mapping.is_none() {
            ResponseMapping::default()
        } else {
            spec.mapping(field, op_mapping.as_ref())
        };
        Ok(Resolved {
            spec,
            steps,
            sequence,
            mapping,
        })
    }

    async fn inline_step(
        &self,
        workspace: WorkspaceId,
        name: String,
        config: &RequestSpec,
    ) -> Result<ResolvedStep, ConfigError> {
        let connection = match &config.connection {
            Some(c) => Some(self.connection(workspace, c).await?),
            None => None,
        };
        Ok(ResolvedStep {
            name,
            request: config.clone(),
            connection,
            operation: None,
            when: None,
            outputs: BTreeMap::new(),
        })
    }

    async fn operation_step(
        &self,
        workspace: WorkspaceId,
        name: String,
        connection: &str,
        operation: &str,
    ) -> Result<(ResolvedStep, Option<MappingSpec>), ConfigError> {
        let live = self.connection(workspace, connection).await?;
        let op = live
            .config
            .operations
            .get(operation)
            .cloned()
            .ok_or_else(|| {
                ConfigError(format!(
                    "the connection `{connection}` has no operation `{operation}`"
                ))
            })?;
        let mapping = op.response_mapping.clone();
        Ok((
            ResolvedStep {
                name,
                request: op,
                connection: Some(live),
                operation: Some(operation.to_owned()),
                when: None,
                outputs: BTreeMap::new(),
            },
            mapping,
        ))
    }

    async fn connection(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<Arc<LiveConnection>, ConfigError> {
        let record = match self.inner.store.find_connection(workspace, name).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => {
                return Err(ConfigError(format!("there is no connection `{name}`")));
            }
            Err(e) => return Err(ConfigError(format!("loading connection `{name}`: {e}"))),
        };
        LiveConnection::open(record, self.keys())
            .map(Arc::new)
            .map_err(ConfigError)
    }
}
