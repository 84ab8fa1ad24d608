//! Endpoints as the workers use them: the stored record with its configuration compiled, its
//! signing secrets and credentials opened, and the per-process gates (in-flight and rate
//! limits) that outlive any one cached copy.
//!
//! Loaded endpoints are cached for a second: a busy endpoint costs one read per second, not one
//! per delivery, and a change made through any process is seen within that second (the server
//! also drops its own changes from the cache at once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use casehook_core::condition::Condition;
use casehook_core::endpoint::{EndpointAuth, EndpointConfig};
use casehook_core::sealed::MasterKey;
use casehook_core::signing::SigningSecret;
use casehook_core::{EndpointId, WorkspaceId};
use casehook_store::{EndpointRecord, Store};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::EngineError;
use crate::peers::Window;

/// How long a loaded endpoint is reused.
const TTL: Duration = Duration::from_secs(1);

/// The sealing context of an endpoint's signing secret.
pub fn secret_context(id: EndpointId) -> String {
    casehook_core::sealed::context::endpoint_secret(id)
}

/// The sealing context of an endpoint's credentials.
pub fn auth_context(id: EndpointId) -> String {
    casehook_core::sealed::context::endpoint_auth(id)
}

/// An endpoint ready to match events and send deliveries.
#[derive(Debug)]
pub struct LiveEndpoint {
    pub record: EndpointRecord,
    pub config: EndpointConfig,
    pub condition: Option<Condition>,
    /// The current secret first, then the previous one while its overlap lasts.
    pub secrets: Vec<SigningSecret>,
    pub auth: Option<EndpointAuth>,
    pub gate: Arc<Gate>,
}

impl LiveEndpoint {
    fn open(
        record: EndpointRecord,
        keys: &MasterKey,
        gate: Arc<Gate>,
    ) -> Result<Self, EngineError> {
        let id = record.id;
        let broken = |what: &str, e: &dyn std::fmt::Display| {
            EngineError::Endpoint(format!("endpoint {id}: {what}: {e}"))
        };
        let config = EndpointConfig::from_json(record.config.clone())
            .map_err(|e| broken("stored configuration", &e.message))?;
        let condition = match config.condition.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(source) => Some(Condition::compile(source).map_err(|e| broken("condition", &e))?),
        };
        let context = secret_context(id);
        let open_secret = |sealed: &[u8]| -> Result<SigningSecret, EngineError> {
            let text = keys
                .open_text(sealed, &context)
                .map_err(|e| broken("signing secret", &e))?;
            SigningSecret::parse(&text).map_err(|e| broken("signing secret", &e))
        };
        let mut secrets = vec![open_secret(&record.secret)?];
        if let Some((previous, until)) = &record.previous_secret
            && *until > OffsetDateTime::now_utc()
        {
            secrets.push(open_secret(previous)?);
        }
        let auth = match &record.auth {
            None => None,
            Some(sealed) => {
                let text = keys
                    .open(sealed, &auth_context(id))
                    .map_err(|e| broken("credentials", &e))?;
                Some(serde_json::from_slice(&text).map_err(|e| broken("credentials", &e))?)
            }
        };
        Ok(Self {
            record,
            config,
            condition,
            secrets,
            auth,
            gate,
        })
    }
}

/// This process's limits of one endpoint: requests in flight and requests per window.
#[derive(Debug)]
pub struct Gate {
    in_flight: Mutex<Option<(u32, Arc<Semaphore>)>>,
    /// When the requests of the last window were let through, oldest first. Kept per
    /// request rather than counted per fixed window, which would let twice the rate through
    /// across a window's edge: no window ever holds more than its count.
    recent: Mutex<VecDeque<Instant>>,
}

/// Why a delivery has to wait before it may go out.
#[derive(Debug)]
pub enum Wait {
    InFlight,
    Rate(Duration),
}

impl Gate {
    fn new() -> Self {
        Self {
            in_flight: Mutex::new(None),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Take a slot under the endpoint's limits (this process's share of them, see
    /// `peers`), or say how long to wait. The permit (if any) is held for the request's
    /// duration.
    pub fn admit(
        &self,
        max_in_flight: Option<u32>,
        rate: Option<Window>,
    ) -> Result<Option<OwnedSemaphorePermit>, Wait> {
        let permit = match max_in_flight {
            None => None,
            Some(max) => {
                let semaphore = {
                    let mut slot = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                    match &*slot {
                        Some((limit, s)) if *limit == max => s.clone(),
                        // New or changed limit: a fresh semaphore (requests already in flight
                        // under the old one finish against it).
                        _ => {
                            let s = Arc::new(Semaphore::new(max as usize));
                            *slot = Some((max, s.clone()));
                            s
                        }
                    }
                };
                Some(semaphore.try_acquire_owned().map_err(|_| Wait::InFlight)?)
            }
        };
        if let Some(Window { count, per }) = rate {
            let count = count as usize;
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            // Admissions older than the window are dropped; under a shorter window than
            // before, the oldest of those kept are past it and drop on the next calls.
            while recent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= per)
            {
                recent.pop_front();
            }
            if recent.len() >= count {
                // One more may go when this one is a window old (after a lowered limit,
                // enough older ones are a window old too).
                let frees = recent[recent.len() - count];
                return Err(Wait::Rate(per.saturating_sub(now.duration_since(frees))));
            }
            recent.push_back(now);
        }
        Ok(permit)
    }
}

/// Loaded endpoints and their gates.
#[derive(Debug)]
pub struct EndpointCache {
    store: Store,
    keys: MasterKey,
    loaded: moka::sync::Cache<EndpointId, Arc<LiveEndpoint>>,
    gates: Mutex<HashMap<EndpointId, Arc<Gate>>>,
    /// Whether some endpoint of the workspace had a condition when it was last listed.
    conditions: moka::sync::Cache<WorkspaceId, bool>,
}

impl EndpointCache {
    pub fn new(store: Store, keys: MasterKey) -> Self {
        Self {
            store,
            keys,
            loaded: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TTL)
                .build(),
            gates: Mutex::new(HashMap::new()),
            conditions: moka::sync::Cache::new(10_000),
        }
    }

    fn gate(&self, id: EndpointId) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(id)
            .or_insert_with(|| Arc::new(Gate::new()))
            .clone()
    }

    fn live(&self, record: EndpointRecord) -> Result<Arc<LiveEndpoint>, EngineError> {
        if let Some(hit) = self.loaded.get(&record.id)
            && hit.record.version == record.version
        {
            return Ok(hit);
        }
        let gate = self.gate(record.id);
        let live = Arc::new(LiveEndpoint::open(record, &self.keys, gate)?);
        self.loaded.insert(live.record.id, live.clone());
        Ok(live)
    }

    /// One endpoint of the workspace (not deleted; possibly disabled).
    pub async fn get(
        &self,
        workspace: WorkspaceId,
        id: EndpointId,
    ) -> Result<Arc<LiveEndpoint>, EngineError> {
        if let Some(hit) = self.loaded.get(&id)
            && hit.record.workspace_id == workspace
        {
            return Ok(hit);
        }
        let record = self.store.get_endpoint(workspace, id).await?;
        self.live(record)
    }

    /// Every endpoint of the workspace, enabled or not, freshly listed; configurations are
    /// compiled again only when their version changed.
    pub async fn list(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<Arc<LiveEndpoint>>, EngineError> {
        let records = self.store.list_endpoints(workspace).await?;
        let mut live = Vec::with_capacity(records.len());
        for record in records {
            match self.live(record) {
                Ok(endpoint) => live.push(endpoint),
                // One broken endpoint (say, a master key that changed) must not stop the
                // others from receiving their events.
                Err(e) => tracing::error!(error = %e, "endpoint cannot be loaded; skipping it"),
            }
        }
        self.conditions
            .insert(workspace, live.iter().any(|e| e.condition.is_some()));
        Ok(live)
    }

    /// Whether some endpoint of the workspace had a condition when the workspace's endpoints
    /// were last listed; `None` when they were not listed lately.
    pub fn had_conditions(&self, workspace: WorkspaceId) -> Option<bool> {
        self.conditions.get(&workspace)
    }

    /// The key secrets at rest are sealed under.
    pub fn keys(&self) -> &MasterKey {
        &self.keys
    }

    /// Forget a loaded endpoint (after a change through this process).
    pub fn forget(&self, id: EndpointId) {
        self.loaded.invalidate(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_bounds_requests_in_flight() {
        let gate = Gate::new();
        let first = gate.admit(Some(2), None).expect("room").expect("a permit");
        let _second = gate.admit(Some(2), None).expect("room").expect("a permit");
        assert!(matches!(gate.admit(Some(2), None), Err(Wait::InFlight)));
        drop(first);
        assert!(
            gate.admit(Some(2), None).is_ok(),
            "a finished request frees its slot"
        );
        assert!(gate.admit(None, None).expect("no limit").is_none());
    }

    #[test]
    fn the_gate_bounds_requests_per_second() {
        let gate = Gate::new();
        for _ in 0..3 {
            assert!(gate.admit(None, Some(Window::per_second(3))).is_ok());
        }
        match gate.admit(None, Some(Window::per_second(3))) {
            Err(Wait::Rate(wait)) => assert!(wait <= Duration::from_secs(1)),
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn no_second_holds_more_than_the_rate_even_across_a_window_edge() {
        let gate = Gate::new();
        // Late in the gate's first second, then just past it: a window counted from the
        // gate's creation would start afresh here and let two more through at once.
        std::thread::sleep(Duration::from_millis(950));
        for _ in 0..2 {
            assert!(gate.admit(None, Some(Window::per_second(2))).is_ok());
        }
        std::thread::sleep(Duration::from_millis(100));
        match gate.admit(None, Some(Window::per_second(2))) {
            Err(Wait::Rate(wait)) => assert!(wait <= Duration::from_secs(1)),
            other => panic!("a third request within a second, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_limit_takes_effect() {
        let gate = Gate::new();
        let _held = gate.admit(Some(1), None).expect("room");
        assert!(matches!(gate.admit(Some(1), None), Err(Wait::InFlight)));
        assert!(
            gate.admit(Some(5), None).is_ok(),
            "the new, larger limit applies at once"
        );
    }
}
