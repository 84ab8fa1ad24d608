//! Small builders the contracts share: a workspace with a form, new cases and patches, and
//! readers that return a whole event feed or case list regardless of page sizes.

use std::collections::BTreeMap;

use casehook_core::case::{Case, Data};
use casehook_core::event::{Actor, ActorKind, Event};
use casehook_core::form::{FieldDef, FieldOption, FieldType, FormSpec};
use casehook_core::{CaseId, Role, WorkspaceId};
use casehook_store::{CaseFilter, CasePatch, EventFilter, FormRecord, NewApiKey, NewCase, Store};
use serde_json::Value;

/// A workspace and one form in it.
#[derive(Clone, Debug)]
pub struct Setup {
    pub ws: WorkspaceId,
    pub form: FormRecord,
}

impl Setup {
    /// A new workspace named `name` with the [`customer_form`].
    pub async fn new(store: &Store, name: &str) -> Self {
        let ws = workspace(store, name).await;
        let form = store
            .create_form(ws, customer_form())
            .await
            .expect("create the customer form");
        Self { ws, form }
    }

    /// A case of this setup's form with `data` (a JSON object) and the form's current version.
    pub fn case(&self, data: Value) -> NewCase {
        NewCase {
            workspace: self.ws,
            form_id: self.form.id,
            form_version: self.form.version,
            status: "open".into(),
            data: object(data),
            external_refs: BTreeMap::new(),
            actor: actor(),
            skip_triggers: false,
        }
    }

    /// Like [`Setup::case`], claiming `source=reference`.
    pub fn case_with_ref(&self, data: Value, source: &str, reference: &str) -> NewCase {
        let mut case = self.case(data);
        case.external_refs.insert(source.into(), reference.into());
        case
    }

    pub async fn create(&self, store: &Store, data: Value) -> Case {
        store
            .create_case(self.case(data))
            .await
            .expect("create a case")
            .0
    }

    pub async fn update(&self, store: &Store, id: CaseId, patch: CasePatch) -> (Case, Vec<Event>) {
        store
            .update_case(self.ws, id, patch, None, actor(), false)
            .await
            .expect("update the case")
    }

    /// Every event of the workspace, oldest first.
    pub async fn feed(&self, store: &Store) -> Vec<Event> {
        feed(store, self.ws, EventFilter::default()).await
    }

    /// Every case of the workspace, newest first.
    pub async fn cases(&self, store: &Store, include_deleted: bool) -> Vec<Case> {
        all_cases(
            store,
            self.ws,
            CaseFilter {
                include_deleted,
                ..CaseFilter::default()
            },
        )
        .await
    }
}

/// A workspace with an admin key whose hash is unique across the database.
pub async fn workspace(store: &Store, name: &str) -> WorkspaceId {
    let key = NewApiKey {
        name: "admin".into(),
        role: Role::Admin,
        hash: format!("hash-{}", uuid::Uuid::new_v4()),
        prefix: "ch_test".into(),
        hook_id: None,
    };
    store
        .create_workspace(name, key)
        .await
        .expect("create a workspace")
        .0
        .id
}

/// `name` (text), `amount` (number), `tier` (select: gold, silver) and `notes` (text).
pub fn customer_form() -> FormSpec {
    let mut tier = FieldDef::new("tier", FieldType::Select);
    tier.options = vec![FieldOption::new("gold"), FieldOption::new("silver")];
    FormSpec {
        fields: vec![
            FieldDef::new("name", FieldType::Text),
            FieldDef::new("amount", FieldType::Number),
            tier,
            FieldDef::new("notes", FieldType::Text),
        ],
        ..FormSpec::new("Customer")
    }
}

pub fn actor() -> Actor {
    Actor {
        kind: ActorKind::ApiKey,
        id: Some("key_1".into()),
        name: "test key".into(),
        chain: 0,
    }
}

/// A JSON object literal as case data.
pub fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("case data must be a JSON object, not {other}"),
    }
}

/// A patch of `data` only.
pub fn patch(data: Value) -> CasePatch {
    CasePatch {
        data: object(data),
        ..CasePatch::default()
    }
}

/// A patch of the status only.
pub fn status(status: &str) -> CasePatch {
    CasePatch {
        status: Some(status.into()),
        ..CasePatch::default()
    }
}

/// A patch setting (or, with `None`, removing) one external reference.
pub fn set_ref(source: &str, reference: Option<&str>) -> CasePatch {
    CasePatch {
        external_refs: BTreeMap::from([(source.to_string(), reference.map(str::to_string))]),
        ..CasePatch::default()
    }
}

/// The whole feed matching `filter` (its `after` and `limit` are used as the first page's).
pub async fn feed(store: &Store, ws: WorkspaceId, mut filter: EventFilter) -> Vec<Event> {
    let mut all = Vec::new();
    if filter.limit <= 0 {
        filter.limit = 100;
    }
    loop {
        let page = store.list_events(ws, &filter).await.expect("list events");
        let Some(last) = page.last() else { return all };
        filter.after = Some(last.sequence);
        all.extend(page);
    }
}

/// Every case matching `filter`, following the cursor.
pub async fn all_cases(store: &Store, ws: WorkspaceId, mut filter: CaseFilter) -> Vec<Case> {
    let mut all = Vec::new();
    if filter.limit <= 0 {
        filter.limit = 100;
    }
    loop {
        let page = store.list_cases(ws, &filter).await.expect("list cases");
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => filter.before_number = Some(cursor),
            None => return all,
        }
    }
}

/// The event sequences of `events`, in their order.
pub fn sequences(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.sequence).collect()
}
