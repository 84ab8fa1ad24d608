//! Inbound hooks: a hook and its URL tokens (rotation with an overlap, deletion that stops the
//! URL at once but keeps the request log), and `apply_inbound`, which writes every item of an
//! accepted request, its idempotency key and its log entry together or not at all: a key seen
//! before answers the first outcome (even under 50 concurrent retries), updates find their
//! case by external reference, field value or number, and a failing item leaves no trace.
//! Then the request log's filters and paging, and pruning.

use casehook_core::case::{Case, CaseRef};
use casehook_core::event::NewEvent;
use casehook_core::inbound::outcome::{Accepted, ItemAction, ItemOutcome};
use casehook_core::{CaseId, InboundHookId, InboundRequestId, WorkspaceId};
use casehook_store::{
    Applied, CaseMatch, HookToken, IdempotencyClaim, InboundHookChange, InboundHookRecord,
    InboundItem, InboundRequestFilter, InboundRequestRecord, InboundWrite, NewCase, NewHookToken,
    NewInboundHook, NewInboundRequest, Store, StoreError, from_micros, now_micros,
};
use serde_json::{Value, json};

use crate::fixtures::{Setup, actor, customer_form, patch};
use crate::harness::{TestDb, contract_tests};

const HOUR: i64 = 3_600_000_000;

fn token(hash: &str) -> NewHookToken {
    NewHookToken {
        hash: hash.into(),
        sealed: format!("sealed:{hash}").into_bytes(),
    }
}

fn new_hook(s: &Setup, name: &str, hash: &str) -> NewInboundHook {
    NewInboundHook {
        id: InboundHookId::new(),
        workspace: s.ws,
        name: name.into(),
        form_id: s.form.id,
        config: json!({"action": "create", "mapping": {"name": "$.name"}}),
        secrets: Some(vec![0xde, 0xad, name.len() as u8]),
        enabled: true,
        token: token(hash),
    }
}

/// A hook of `s`'s form whose URL token hashes to `hash`.
async fn hook(store: &Store, s: &Setup, hash: &str) -> InboundHookRecord {
    store
        .create_inbound_hook(new_hook(s, hash, hash))
        .await
        .expect("create an inbound hook")
}

/// A log entry for a request to `hook`, as the server fills it in before the store.
fn request(ws: WorkspaceId, hook: InboundHookId) -> NewInboundRequest {
    NewInboundRequest {
        id: InboundRequestId::new(),
        workspace: ws,
        hook_id: hook,
        received_at: now_micros(),
        source_ip: "203.0.113.7".into(),
        flags: vec!["skiptriggers"],
        query: Some("source=crm&token=[redacted]".into()),
        content_type: Some("application/json".into()),
        headers: json!([
            ["content-type", "application/json"],
            ["x-signature", "[redacted]"]
        ]),
        body: Some(br#"{"name":"Ada"}"#.to_vec()),
        body_bytes: 14,
        body_truncated: false,
        verification: "passed",
        verification_error: None,
        idempotency_key: None,
        status: 0,
        outcome: String::new(),
        response: Value::Null,
        case_id: None,
        replay_of: None,
    }
}

/// A failed request's log entry.
fn failure(ws: WorkspaceId, hook: InboundHookId, status: u16, outcome: &str) -> NewInboundRequest {
    NewInboundRequest {
        verification: "failed",
        verification_error: Some("signature mismatch".into()),
        status,
        outcome: outcome.into(),
        response: json!({"error": outcome}),
        body_truncated: true,
        body_bytes: 1_000_000,
        ..request(ws, hook)
    }
}

/// A request to `hook` carrying `items`, with the idempotency key `key` kept for an hour.
fn write(hook: &InboundHookRecord, items: Vec<InboundItem>, key: Option<&str>) -> InboundWrite {
    write_until(hook, items, key, now_micros() + HOUR)
}

fn write_until(
    hook: &InboundHookRecord,
    items: Vec<InboundItem>,
    key: Option<&str>,
    expires_at: i64,
) -> InboundWrite {
    let mut request = request(hook.workspace_id, hook.id);
    request.idempotency_key = key.map(str::to_owned);
    InboundWrite {
        form_id: hook.form_id,
        batch: items.len() > 1,
        items,
        idempotency: key.map(|k| IdempotencyClaim {
            key: k.into(),
            expires_at,
        }),
        request,
    }
}

fn update(target: CaseMatch, data: Value) -> InboundItem {
    InboundItem::Update {
        target,
        patch: patch(data),
        actor: actor(),
        skip_triggers: false,
        or_create: None,
    }
}

fn by_ref(reference: &str) -> CaseMatch {
    CaseMatch::ExternalRef {
        source: "stripe".into(),
        reference: reference.into(),
    }
}

fn by_field(key: &str, value: Value) -> CaseMatch {
    CaseMatch::Field {
        key: key.into(),
        value,
    }
}

async fn apply(store: &Store, write: InboundWrite) -> Applied {
    store.apply_inbound(write).await.expect("apply the request")
}

/// The outcome of a request that was processed now (not a duplicate).
async fn done(store: &Store, write: InboundWrite) -> Accepted {
    match apply(store, write).await {
        Applied::Done(accepted) => accepted,
        other => panic!("expected the request to be processed, got {other:?}"),
    }
}

/// The single item of a processed one-item request.
async fn done_one(store: &Store, write: InboundWrite) -> ItemOutcome {
    let accepted = done(store, write).await;
    assert_eq!(accepted.items.len(), 1, "{accepted:?}");
    accepted.items[0].clone()
}

/// The whole request log of a hook, newest first.
async fn log(store: &Store, hook: &InboundHookRecord) -> Vec<InboundRequestRecord> {
    log_where(store, hook, InboundRequestFilter::default()).await
}

async fn log_where(
    store: &Store,
    hook: &InboundHookRecord,
    mut filter: InboundRequestFilter,
) -> Vec<InboundRequestRecord> {
    if filter.limit == 0 {
        filter.limit = 1000;
    }
    store
        .list_inbound_requests(hook.workspace_id, hook.id, &filter)
        .await
        .expect("list the request log")
}

fn ids(log: &[InboundRequestRecord]) -> Vec<InboundRequestId> {
    log.iter().map(|r| r.id).collect()
}

/// A new case of `s` holding `stripe=reference`.
async fn create_with_ref(store: &Store, s: &Setup, data: Value, reference: &str) -> Case {
    store
        .create_case(s.case_with_ref(data, "stripe", reference))
        .await
        .expect("create a case with a reference")
        .0
}

async fn get_case(store: &Store, s: &Setup, id: CaseId) -> Case {
    store
        .get_case(s.ws, CaseRef::Id(id))
        .await
        .expect("get the case")
}

/// Fails unless `result` is item `index`'s failure with a source matching `expected`.
fn assert_item_error(
    result: Result<Applied, StoreError>,
    index: usize,
    expected: impl Fn(&StoreError) -> bool,
) {
    match result {
        Err(StoreError::Item { index: i, source }) => {
            assert_eq!(i, index, "the failing item: {source:?}");
            assert!(expected(&source), "unexpected cause: {source:?}");
        }
        other => panic!("expected item {index} to fail, got {other:?}"),
    }
}

// ---- hooks and their tokens ----

async fn create_hook_stores_it_with_its_first_token(store: Store) {
    let s = Setup::new(&store, "w").await;
    let new = new_hook(&s, "crm", "hash-1");
    let created = store
        .create_inbound_hook(new.clone())
        .await
        .expect("create the hook");
    assert_eq!(created.id, new.id, "the caller chooses the id");
    assert_eq!(created.workspace_id, s.ws);
    assert_eq!(created.name, "crm");
    assert_eq!(created.form_id, s.form.id);
    assert_eq!(created.config, new.config);
    assert_eq!(created.secrets, new.secrets);
    assert!(created.enabled);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);

    assert_eq!(
        store
            .find_inbound_hook_by_token("hash-1")
            .await
            .expect("find"),
        Some(created.clone())
    );
    assert_eq!(
        store
            .find_inbound_hook_by_token("hash-2")
            .await
            .expect("find"),
        None,
        "an unknown token names no hook"
    );
    let tokens = store
        .inbound_tokens(s.ws, created.id)
        .await
        .expect("tokens");
    assert_eq!(
        tokens,
        [HookToken {
            sealed: new.token.sealed.clone(),
            created_at: created.created_at,
            expires_at: None,
        }]
    );
    assert_eq!(
        store
            .get_inbound_hook(s.ws, created.id)
            .await
            .expect("get the hook"),
        created
    );
    assert_eq!(
        store.list_inbound_hooks(s.ws).await.expect("list"),
        [created]
    );
}

async fn hook_for_a_form_of_another_workspace_is_refused(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let mut new = new_hook(&a, "crm", "hash-1");
    new.form_id = b.form.id;
    let refused = store.create_inbound_hook(new.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound("form"))),
        "{refused:?}"
    );
    assert_eq!(store.list_inbound_hooks(a.ws).await.expect("list"), []);
    assert_eq!(store.list_inbound_hooks(b.ws).await.expect("list"), []);
    assert_eq!(
        store
            .find_inbound_hook_by_token("hash-1")
            .await
            .expect("find"),
        None,
        "the refused hook's token was not stored"
    );
    // The id and the token are still free: nothing of the refused hook remains.
    new.form_id = a.form.id;
    let created = store
        .create_inbound_hook(new.clone())
        .await
        .expect("the same hook on its own workspace's form");
    assert_eq!(created.id, new.id);
}

async fn hooks_are_read_and_updated_within_their_workspace(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let first = hook(&store, &a, "hash-a1").await;
    let second = hook(&store, &a, "hash-a2").await;
    let theirs = hook(&store, &b, "hash-b1").await;
    assert_eq!(
        store.list_inbound_hooks(a.ws).await.expect("list"),
        [first.clone(), second.clone()],
        "oldest first"
    );
    assert_eq!(
        store.list_inbound_hooks(b.ws).await.expect("list"),
        std::slice::from_ref(&theirs)
    );

    // Another workspace's id is not found, for reads and writes alike.
    let got = store.get_inbound_hook(b.ws, first.id).await;
    assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    let change = InboundHookChange {
        name: Some("taken over".into()),
        ..InboundHookChange::default()
    };
    let updated = store
        .update_inbound_hook(b.ws, first.id, change.clone(), None)
        .await;
    assert!(
        matches!(updated, Err(StoreError::NotFound(_))),
        "{updated:?}"
    );
    let deleted = store.delete_inbound_hook(b.ws, first.id).await;
    assert!(
        matches!(deleted, Err(StoreError::NotFound(_))),
        "{deleted:?}"
    );
    let rotated = store
        .rotate_inbound_token(b.ws, first.id, token("hash-x"), now_micros())
        .await;
    assert!(
        matches!(rotated, Err(StoreError::NotFound(_))),
        "{rotated:?}"
    );
    assert_eq!(
        store.inbound_tokens(b.ws, first.id).await.expect("tokens"),
        [],
        "another workspace sees none of its tokens"
    );
    assert_eq!(
        store
            .get_inbound_hook(a.ws, first.id)
            .await
            .expect("still there"),
        first,
        "untouched by the other workspace"
    );

    // An update at the current version applies and moves the version.
    let renamed = store
        .update_inbound_hook(
            a.ws,
            first.id,
            InboundHookChange {
                name: Some("renamed".into()),
                config: Some(json!({"action": "update"})),
                secrets: Some(None),
                enabled: Some(false),
                ..InboundHookChange::default()
            },
            Some(1),
        )
        .await
        .expect("update at the current version");
    assert_eq!(renamed.version, 2);
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.config, json!({"action": "update"}));
    assert_eq!(renamed.secrets, None, "Some(None) removes the secrets");
    assert!(!renamed.enabled);
    assert_eq!(renamed.form_id, first.form_id, "what is not named stays");
    assert_eq!(renamed.created_at, first.created_at);
    assert!(renamed.updated_at >= first.updated_at);
    assert_eq!(
        store.get_inbound_hook(a.ws, first.id).await.expect("get"),
        renamed
    );

    // A stale version is refused and changes nothing.
    let stale = store
        .update_inbound_hook(a.ws, first.id, change.clone(), Some(1))
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::VersionMismatch {
                expected: 1,
                current: 2
            })
        ),
        "{stale:?}"
    );
    // Another workspace's form is refused too.
    let foreign_form = store
        .update_inbound_hook(
            a.ws,
            first.id,
            InboundHookChange {
                form_id: Some(b.form.id),
                ..InboundHookChange::default()
            },
            None,
        )
        .await;
    assert!(
        matches!(foreign_form, Err(StoreError::NotFound("form"))),
        "{foreign_form:?}"
    );
    assert_eq!(
        store.get_inbound_hook(a.ws, first.id).await.expect("get"),
        renamed
    );

    // Without an expected version the update applies whatever the version.
    let secrets = store
        .update_inbound_hook(
            a.ws,
            first.id,
            InboundHookChange {
                secrets: Some(Some(vec![7, 7, 7])),
                ..InboundHookChange::default()
            },
            None,
        )
        .await
        .expect("update without a version");
    assert_eq!(secrets.version, 3);
    assert_eq!(secrets.secrets, Some(vec![7, 7, 7]));
    assert_eq!(secrets.name, "renamed");
    assert_eq!(
        store.get_inbound_hook(a.ws, second.id).await.expect("get"),
        second,
        "the other hook is untouched"
    );
    assert_eq!(
        store.get_inbound_hook(b.ws, theirs.id).await.expect("get"),
        theirs
    );
}

async fn rotated_token_works_beside_the_new_one_until_old_until(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let old_until = now_micros() + HOUR;
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-2"), old_until)
        .await
        .expect("rotate");
    for hash in ["hash-1", "hash-2"] {
        let found = store.find_inbound_hook_by_token(hash).await.expect("find");
        assert_eq!(found.map(|f| f.id), Some(h.id), "{hash} names the hook");
    }
    let tokens = store.inbound_tokens(s.ws, h.id).await.expect("tokens");
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(tokens[0].sealed, token("hash-2").sealed, "newest first");
    assert_eq!(tokens[0].expires_at, None, "the current token has no end");
    assert_eq!(tokens[1].sealed, token("hash-1").sealed);
    assert_eq!(
        tokens[1].expires_at,
        Some(from_micros(old_until).expect("a time"))
    );
    assert!(tokens[0].created_at >= tokens[1].created_at);

    // A second rotation with a later overlap does not extend the first old token's end.
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-3"), old_until + HOUR)
        .await
        .expect("rotate again");
    let tokens = store.inbound_tokens(s.ws, h.id).await.expect("tokens");
    let ends: Vec<_> = tokens
        .iter()
        .map(|t| (t.sealed.clone(), t.expires_at))
        .collect();
    assert_eq!(
        ends,
        [
            (token("hash-3").sealed, None),
            (
                token("hash-2").sealed,
                Some(from_micros(old_until + HOUR).expect("a time"))
            ),
            (
                token("hash-1").sealed,
                Some(from_micros(old_until).expect("a time"))
            ),
        ]
    );
}

async fn workspace_tokens_are_every_live_hooks_working_tokens(store: Store) {
    let s = Setup::new(&store, "w").await;
    let other = Setup::new(&store, "x").await;
    let rotated = hook(&store, &s, "hash-1").await;
    store
        .rotate_inbound_token(s.ws, rotated.id, token("hash-2"), now_micros() + HOUR)
        .await
        .expect("rotate");
    let plain = hook(&store, &s, "hash-3").await;
    let deleted = hook(&store, &s, "hash-4").await;
    store
        .delete_inbound_hook(s.ws, deleted.id)
        .await
        .expect("delete");
    let elsewhere = hook(&store, &other, "hash-5").await;

    let tokens = store
        .workspace_inbound_tokens(s.ws)
        .await
        .expect("the workspace's tokens");
    let mut hooks: Vec<_> = tokens.keys().copied().collect();
    hooks.sort();
    let mut expected = vec![rotated.id, plain.id];
    expected.sort();
    assert_eq!(hooks, expected, "live hooks of this workspace only");
    for id in [rotated.id, plain.id] {
        assert_eq!(
            tokens[&id],
            store.inbound_tokens(s.ws, id).await.expect("tokens"),
            "as the hook's own list, newest first"
        );
    }
    assert_eq!(tokens[&rotated.id].len(), 2);
    assert!(!tokens.contains_key(&elsewhere.id));
}

async fn rotation_with_old_until_past_retires_old_tokens_at_once(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-2"), now_micros() + HOUR)
        .await
        .expect("rotate with an overlap");
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-3"), now_micros() - 1_000_000)
        .await
        .expect("rotate without an overlap");
    for hash in ["hash-1", "hash-2"] {
        assert_eq!(
            store.find_inbound_hook_by_token(hash).await.expect("find"),
            None,
            "{hash} no longer works"
        );
    }
    let found = store
        .find_inbound_hook_by_token("hash-3")
        .await
        .expect("find");
    assert_eq!(found.map(|f| f.id), Some(h.id));
    let tokens = store.inbound_tokens(s.ws, h.id).await.expect("tokens");
    assert_eq!(
        tokens
            .iter()
            .map(|t| (t.sealed.clone(), t.expires_at))
            .collect::<Vec<_>>(),
        [(token("hash-3").sealed, None)]
    );
    // A retired token's hash can serve again (it is gone, not just hidden).
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-1"), now_micros() - 1_000_000)
        .await
        .expect("reuse a retired hash");
    let found = store
        .find_inbound_hook_by_token("hash-1")
        .await
        .expect("find");
    assert_eq!(found.map(|f| f.id), Some(h.id));
}

async fn deleted_hook_stops_answering_but_keeps_its_request_log(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let other = hook(&store, &s, "hash-other").await;
    store
        .rotate_inbound_token(s.ws, h.id, token("hash-2"), now_micros() + HOUR)
        .await
        .expect("rotate");
    let w = write(
        &h,
        vec![InboundItem::Create(s.case(json!({"name": "Ada"})))],
        Some("k1"),
    );
    let request_id = w.request.id;
    let accepted = done(&store, w).await;
    let failed = failure(s.ws, h.id, 401, "denied");
    store
        .log_inbound_request(failed.clone())
        .await
        .expect("log a failure");

    store
        .delete_inbound_hook(s.ws, h.id)
        .await
        .expect("delete the hook");
    for hash in ["hash-1", "hash-2"] {
        assert_eq!(
            store.find_inbound_hook_by_token(hash).await.expect("find"),
            None,
            "{hash} stopped working"
        );
    }
    assert_eq!(store.inbound_tokens(s.ws, h.id).await.expect("tokens"), []);
    let got = store.get_inbound_hook(s.ws, h.id).await;
    assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    assert_eq!(
        store.list_inbound_hooks(s.ws).await.expect("list"),
        std::slice::from_ref(&other)
    );
    let again = store.delete_inbound_hook(s.ws, h.id).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    let updated = store
        .update_inbound_hook(s.ws, h.id, InboundHookChange::default(), None)
        .await;
    assert!(
        matches!(updated, Err(StoreError::NotFound(_))),
        "{updated:?}"
    );
    let applied = store
        .apply_inbound(write(
            &h,
            vec![InboundItem::Create(s.case(json!({})))],
            None,
        ))
        .await;
    assert!(
        matches!(applied, Err(StoreError::NotFound(_))),
        "a deleted hook takes no requests: {applied:?}"
    );

    // The log stays readable.
    let logged = store
        .get_inbound_request(s.ws, h.id, request_id)
        .await
        .expect("the applied request is still logged");
    assert_eq!(logged.outcome, "created");
    assert_eq!(logged.response, accepted.body());
    let logged = store
        .get_inbound_request(s.ws, h.id, failed.id)
        .await
        .expect("the failed request is still logged");
    assert_eq!(logged.outcome, "denied");
    assert_eq!(ids(&log(&store, &h).await), [failed.id, request_id]);
    // The case it created is the workspace's, not the hook's: it stays.
    assert_eq!(
        get_case(&store, &s, accepted.items[0].case_id).await.number,
        1
    );
    assert_eq!(
        store
            .find_inbound_hook_by_token("hash-other")
            .await
            .expect("find")
            .map(|f| f.id),
        Some(other.id),
        "other hooks keep working"
    );
}

// ---- applying requests ----

async fn create_item_creates_a_case_and_logs_the_request(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let w = write(
        &h,
        vec![InboundItem::Create(s.case_with_ref(
            json!({"name": "Ada", "amount": 3}),
            "stripe",
            "cus_1",
        ))],
        None,
    );
    let sent = w.request.clone();
    let accepted = done(&store, w).await;
    assert_eq!(accepted.request_id, sent.id);
    assert!(!accepted.batch);
    assert_eq!(accepted.items.len(), 1);
    let item = &accepted.items[0];
    assert_eq!(item.action, ItemAction::Created);
    assert_eq!(item.case_number, 1);

    let case = get_case(&store, &s, item.case_id).await;
    assert_eq!(case.number, 1);
    assert_eq!(case.form_id, s.form.id);
    assert_eq!(
        Value::Object(case.data.clone()),
        json!({"name": "Ada", "amount": 3})
    );
    assert_eq!(
        store
            .find_case_by_ref(s.ws, "stripe", "cus_1")
            .await
            .expect("the reference was claimed")
            .id,
        case.id
    );
    let feed = s.feed(&store).await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].event_type, "case.created");
    assert_eq!(feed[0].case_id, Some(case.id));
    assert_eq!(item.event_ids, [feed[0].id]);

    let entries = log(&store, &h).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.id, sent.id);
    assert_eq!(entry.hook_id, h.id);
    assert_eq!(entry.status, 200);
    assert_eq!(entry.outcome, "created");
    assert_eq!(entry.response, accepted.body());
    assert_eq!(entry.response["case"]["number"], 1);
    assert_eq!(entry.case_id, Some(case.id));
    // What the server filled in is kept as given.
    assert_eq!(
        entry.received_at,
        from_micros(sent.received_at).expect("a time")
    );
    assert!(entry.duration_us >= 0);
    assert_eq!(entry.source_ip, sent.source_ip);
    assert_eq!(entry.flags, ["skiptriggers"]);
    assert_eq!(entry.query, sent.query);
    assert_eq!(entry.content_type, sent.content_type);
    assert_eq!(entry.headers, sent.headers);
    assert_eq!(entry.body, sent.body);
    assert_eq!(entry.body_bytes, 14);
    assert!(!entry.body_truncated);
    assert_eq!(entry.verification, "passed");
    assert_eq!(entry.verification_error, None);
    assert_eq!(entry.idempotency_key, None);
    assert_eq!(entry.replay_of, None);
    assert_eq!(
        &store
            .get_inbound_request(s.ws, h.id, sent.id)
            .await
            .expect("get the entry"),
        entry
    );
}

async fn repeated_idempotency_key_answers_the_first_outcome(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let first = write(
        &h,
        vec![InboundItem::Create(s.case(json!({"name": "first"})))],
        Some("order-1"),
    );
    let first_id = first.request.id;
    let accepted = done(&store, first).await;
    assert_eq!(accepted.request_id, first_id);

    let retry = write(
        &h,
        vec![InboundItem::Create(s.case(json!({"name": "retry"})))],
        Some("order-1"),
    );
    let retry_id = retry.request.id;
    assert_eq!(
        apply(&store, retry).await,
        Applied::Duplicate(accepted.clone()),
        "the retry gets the first request's outcome, request id included"
    );
    let cases = s.cases(&store, true).await;
    assert_eq!(cases.len(), 1, "the retry created no case");
    assert_eq!(cases[0].data["name"], "first");
    assert_eq!(s.feed(&store).await.len(), 1, "and wrote no event");

    let entries = log(&store, &h).await;
    assert_eq!(ids(&entries), [retry_id, first_id]);
    let dup = &entries[0];
    assert_eq!(dup.outcome, "duplicate");
    assert_eq!(dup.status, 200);
    assert_eq!(dup.response, accepted.body());
    assert_eq!(dup.response["request_id"], json!(first_id));
    assert_eq!(dup.case_id, Some(cases[0].id));
    assert_eq!(dup.idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(entries[1].outcome, "created");
}

async fn concurrent_requests_with_one_key_create_one_case(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let w = write(
                &h,
                vec![InboundItem::Create(
                    s.case(json!({"name": format!("try {i}")})),
                )],
                Some("order-1"),
            );
            tokio::spawn(async move { store.apply_inbound(w).await })
        })
        .collect();
    let mut processed = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.expect("the task does not panic") {
            Ok(Applied::Done(a)) => processed.push(a),
            Ok(Applied::Duplicate(a)) => duplicates.push(a),
            Err(e) => panic!("a retry failed: {e:?}"),
        }
    }
    assert_eq!(processed.len(), 1, "exactly one request is processed");
    assert_eq!(duplicates.len(), 49);
    assert!(
        duplicates.iter().all(|d| d == &processed[0]),
        "every duplicate answers the processed request's outcome"
    );
    let cases = s.cases(&store, true).await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].id, processed[0].items[0].case_id);
    assert_eq!(s.feed(&store).await.len(), 1);

    let entries = log(&store, &h).await;
    assert_eq!(entries.len(), 50);
    let created: Vec<_> = entries.iter().filter(|e| e.outcome == "created").collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].id, processed[0].request_id);
    assert_eq!(
        entries.iter().filter(|e| e.outcome == "duplicate").count(),
        49
    );
}

async fn concurrent_requests_through_two_stores_create_one_case(db: TestDb) {
    // Two server processes on one database, retrying the same request at once.
    let other = db.open_another().await;
    let store = db.store.clone();
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            let w = write(
                &h,
                vec![InboundItem::Create(s.case(json!({"amount": i})))],
                Some("order-1"),
            );
            tokio::spawn(async move { store.apply_inbound(w).await })
        })
        .collect();
    let mut processed = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.expect("the task does not panic") {
            Ok(Applied::Done(a)) => processed.push(a),
            Ok(Applied::Duplicate(a)) => duplicates.push(a),
            Err(e) => panic!("a retry failed: {e:?}"),
        }
    }
    assert_eq!(processed.len(), 1, "exactly one request is processed");
    assert_eq!(duplicates.len(), 39);
    assert!(duplicates.iter().all(|d| d == &processed[0]));
    assert_eq!(s.cases(&other, true).await.len(), 1);
    assert_eq!(log(&other, &h).await.len(), 40);
}

async fn concurrent_distinct_requests_each_get_their_own_answer(store: Store) {
    // A burst of distinct creations shares the writer's transactions (on PostgreSQL they are
    // applied as one set); a retry of a key processed before, in the same burst, still
    // answers the first outcome, and every request's log entry and key match its answer.
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let seen = done(
        &store,
        write(
            &h,
            vec![InboundItem::Create(s.case(json!({"name": "seen"})))],
            Some("seen"),
        ),
    )
    .await;
    let mut writes: Vec<InboundWrite> = (0..40)
        .map(|i| {
            let items: Vec<InboundItem> = (0..1 + i % 2)
                .map(|j| {
                    InboundItem::Create(s.case_with_ref(
                        json!({"name": format!("r{i}.{j}")}),
                        "stripe",
                        &format!("cus_{i}_{j}"),
                    ))
                })
                .collect();
            let key = (i % 3 != 0).then(|| format!("key-{i}"));
            let mut w = write(&h, items, key.as_deref());
            w.request.body = Some(format!("{{\"n\":{i}}}").into_bytes());
            w
        })
        .collect();
    writes.push(write(
        &h,
        vec![InboundItem::Create(s.case(json!({"name": "retry"})))],
        Some("seen"),
    ));
    let sent: Vec<InboundWrite> = writes.clone();
    let tasks: Vec<_> = writes
        .into_iter()
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.apply_inbound(w).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("no panic")
                .expect("every request is applied"),
        );
    }
    assert_eq!(answers.pop(), Some(Applied::Duplicate(seen.clone())));

    let entries = log(&store, &h).await;
    let mut numbers = vec![seen.items[0].case_number];
    for (w, answer) in sent.iter().zip(&answers) {
        let Applied::Done(accepted) = answer else {
            panic!("a distinct request was answered as a duplicate: {answer:?}");
        };
        assert_eq!(accepted.request_id, w.request.id);
        assert_eq!(accepted.items.len(), w.items.len());
        for (item, new) in accepted.items.iter().zip(&w.items) {
            let InboundItem::Create(new) = new else {
                unreachable!()
            };
            assert_eq!(item.action, ItemAction::Created);
            let case = get_case(&store, &s, item.case_id).await;
            assert_eq!(case.number, item.case_number);
            assert_eq!(case.data, new.data);
            let (source, reference) = new.external_refs.iter().next().expect("a reference");
            let by_ref = store
                .find_case_by_ref(s.ws, source, reference)
                .await
                .expect("the reference was claimed");
            assert_eq!(by_ref.id, case.id);
            numbers.push(case.number);
        }
        let entry = entries
            .iter()
            .find(|e| e.id == w.request.id)
            .expect("every request is logged");
        assert_eq!(entry.status, 200);
        assert_eq!(entry.outcome, "created");
        assert_eq!(entry.response, accepted.body());
        assert_eq!(entry.case_id, Some(accepted.items[0].case_id));
        assert_eq!(entry.body, w.request.body);
        assert_eq!(entry.headers, w.request.headers);
        assert_eq!(entry.flags, ["skiptriggers"]);
        assert_eq!(entry.query, w.request.query);
        assert_eq!(entry.idempotency_key, w.request.idempotency_key);
        // The key keeps this answer for the request's retries.
        if let Some(claim) = &w.idempotency {
            let retry = write(
                &h,
                vec![InboundItem::Create(s.case(json!({"name": "again"})))],
                Some(&claim.key),
            );
            assert_eq!(
                apply(&store, retry).await,
                Applied::Duplicate(accepted.clone())
            );
        }
    }
    numbers.sort_unstable();
    let expected: Vec<i64> = (1..=numbers.len() as i64).collect();
    assert_eq!(numbers, expected, "case numbers are gap-free and unique");
    assert_eq!(s.feed(&store).await.len(), numbers.len());
    assert_eq!(s.cases(&store, true).await.len(), numbers.len());
}

async fn expired_idempotency_key_is_processed_again(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let case = InboundItem::Create(s.case(json!({})));
    let first = done(
        &store,
        write_until(&h, vec![case.clone()], Some("k"), now_micros() - 1_000_000),
    )
    .await;
    let second = done(&store, write(&h, vec![case.clone()], Some("k"))).await;
    assert_ne!(second.request_id, first.request_id);
    assert_ne!(second.items[0].case_id, first.items[0].case_id);
    assert_eq!(s.cases(&store, true).await.len(), 2);
    // The key now holds the second request's outcome, within its new window.
    assert_eq!(
        apply(&store, write(&h, vec![case], Some("k"))).await,
        Applied::Duplicate(second)
    );
    assert_eq!(s.cases(&store, true).await.len(), 2);
}

async fn idempotency_keys_are_per_hook(store: Store) {
    let s = Setup::new(&store, "w").await;
    let a = hook(&store, &s, "hash-a").await;
    let b = hook(&store, &s, "hash-b").await;
    let case = InboundItem::Create(s.case(json!({})));
    let on_a = done(&store, write(&a, vec![case.clone()], Some("k"))).await;
    let on_b = done(&store, write(&b, vec![case.clone()], Some("k"))).await;
    assert_ne!(on_a.items[0].case_id, on_b.items[0].case_id);
    assert_eq!(
        apply(&store, write(&a, vec![case.clone()], Some("k"))).await,
        Applied::Duplicate(on_a)
    );
    assert_eq!(
        apply(&store, write(&b, vec![case], Some("k"))).await,
        Applied::Duplicate(on_b)
    );
    assert_eq!(s.cases(&store, true).await.len(), 2);
}

async fn update_items_match_by_ref_field_and_number(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let (ada, _) = store
        .create_case(s.case_with_ref(json!({"name": "Ada"}), "stripe", "cus_1"))
        .await
        .expect("create");
    let bob = s.create(&store, json!({"name": "Bob"})).await;
    let cy = s.create(&store, json!({"name": "Cy", "amount": 5})).await;
    let events_before = s.feed(&store).await.len();

    let cases = [
        (by_ref("cus_1"), json!({"amount": 10}), ada.id),
        (
            by_field("name", json!("Bob")),
            json!({"tier": "gold"}),
            bob.id,
        ),
        (
            CaseMatch::Number(cy.number),
            json!({"notes": "by number"}),
            cy.id,
        ),
        (
            by_field("amount", json!(5)),
            json!({"tier": "silver"}),
            cy.id,
        ),
    ];
    for (i, (target, data, expected)) in cases.into_iter().enumerate() {
        let w = write(&h, vec![update(target.clone(), data.clone())], None);
        let request_id = w.request.id;
        let item = done_one(&store, w).await;
        assert_eq!(item.action, ItemAction::Updated, "{target:?}");
        assert_eq!(item.case_id, expected, "{target:?} matched the wrong case");
        let case = get_case(&store, &s, expected).await;
        assert_eq!(item.case_number, case.number);
        for (key, value) in data.as_object().expect("an object") {
            assert_eq!(&case.data[key], value, "{target:?}");
        }
        let feed = s.feed(&store).await;
        assert_eq!(feed.len(), events_before + i + 1, "one event per update");
        let event = feed.last().expect("an event");
        assert_eq!(event.event_type, "case.updated");
        assert_eq!(event.case_id, Some(expected));
        assert_eq!(item.event_ids, [event.id]);
        let entry = store
            .get_inbound_request(s.ws, h.id, request_id)
            .await
            .expect("logged");
        assert_eq!(entry.outcome, "updated");
        assert_eq!(entry.status, 200);
        assert_eq!(entry.case_id, Some(expected));
    }
    // Each update touched only its own case.
    assert_eq!(
        Value::Object(get_case(&store, &s, ada.id).await.data),
        json!({"name": "Ada", "amount": 10})
    );
    assert_eq!(
        Value::Object(get_case(&store, &s, bob.id).await.data),
        json!({"name": "Bob", "tier": "gold"})
    );
    assert_eq!(
        Value::Object(get_case(&store, &s, cy.id).await.data),
        json!({"name": "Cy", "amount": 5, "notes": "by number", "tier": "silver"})
    );
}

async fn field_match_is_served_by_an_index_on_the_field(db: TestDb) {
    // Matching by a field's value must not read every case of the form: the first match on
    // a field makes an index on the expression the match compares.
    let store = db.store.clone();
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let ada = s.create(&store, json!({"name": "Ada"})).await;
    let set_amount = |amount: i64| {
        let items = vec![update(
            by_field("name", json!("Ada")),
            json!({"amount": amount}),
        )];
        done_one(&store, write(&h, items, None))
    };
    assert_eq!(set_amount(5).await.case_id, ada.id);
    let plan = if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url)
            .await
            .expect("open the file");
        // The match's own query (see `find_match`): `INDEXED BY` fails unless the index
        // answers the expression compared.
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT id FROM cases INDEXED BY cases_by_name WHERE workspace_id = x'00' AND form_id = x'00'
             AND deleted_at IS NULL AND json_type(data, '$.name') = 'text' AND data ->> '$.name' = 'Ada'
             ORDER BY number LIMIT 1",
        )
        .fetch_all(&pool)
        .await
        .expect("explain");
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        let mut conn = pool.acquire().await.expect("a connection");
        // On a table this small a sequential scan is cheaper; what matters is that the
        // index answers the match's expression at all.
        sqlx::raw_sql("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .expect("set");
        let rows: Vec<(String,)> = sqlx::query_as(
            "EXPLAIN SELECT id FROM cases WHERE workspace_id = '00000000-0000-0000-0000-000000000000'::uuid
             AND form_id = '00000000-0000-0000-0000-000000000000'::uuid AND deleted_at IS NULL
             AND data -> 'name' = '\"Ada\"'::jsonb",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("explain");
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
    };
    assert!(plan.contains("cases_by_name"), "the plan: {plan}");
    // Later matches on the field find the index made.
    assert_eq!(set_amount(6).await.case_id, ada.id);
    assert_eq!(get_case(&store, &s, ada.id).await.data["amount"], 6);
}

async fn field_match_takes_the_oldest_case_holding_the_value(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let older = s.create(&store, json!({"name": "Twin"})).await;
    let newer = s.create(&store, json!({"name": "Twin"})).await;
    let item = done_one(
        &store,
        write(
            &h,
            vec![update(
                by_field("name", json!("Twin")),
                json!({"amount": 1}),
            )],
            None,
        ),
    )
    .await;
    assert_eq!(item.case_id, older.id);
    assert_eq!(get_case(&store, &s, newer.id).await, newer);
}

async fn update_that_changes_nothing_is_unchanged(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let case = s.create(&store, json!({"name": "Ada", "amount": 1})).await;
    let feed_before = s.feed(&store).await;
    let w = write(
        &h,
        vec![update(CaseMatch::Number(case.number), json!({"amount": 1}))],
        None,
    );
    let request_id = w.request.id;
    let item = done_one(&store, w).await;
    assert_eq!(item.action, ItemAction::Unchanged);
    assert_eq!(item.case_id, case.id);
    assert_eq!(item.event_ids, []);
    assert_eq!(s.feed(&store).await, feed_before, "no event");
    assert_eq!(get_case(&store, &s, case.id).await, case, "no new version");
    let entry = store
        .get_inbound_request(s.ws, h.id, request_id)
        .await
        .expect("logged");
    assert_eq!(entry.outcome, "unchanged");
    assert_eq!(entry.case_id, Some(case.id));
}

async fn update_without_a_match_fails_and_writes_nothing(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let case = create_with_ref(&store, &s, json!({"name": "Ada"}), "cus_1").await;
    let feed_before = s.feed(&store).await;
    for target in [
        by_ref("cus_404"),
        by_field("name", json!("Nobody")),
        CaseMatch::Number(case.number + 1),
    ] {
        let result = store
            .apply_inbound(write(
                &h,
                vec![update(target.clone(), json!({"amount": 2}))],
                None,
            ))
            .await;
        assert_item_error(result, 0, |e| matches!(e, StoreError::NotFound("case")));
    }
    assert_eq!(s.feed(&store).await, feed_before, "no event");
    assert_eq!(
        s.cases(&store, true).await,
        [case],
        "no case changed or created"
    );
    assert_eq!(
        log(&store, &h).await,
        [],
        "the caller logs failures; the failed write logged nothing"
    );
}

async fn update_without_a_match_creates_with_or_create(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let upsert = InboundItem::Update {
        target: by_ref("cus_9"),
        patch: patch(json!({"name": "New"})),
        actor: actor(),
        skip_triggers: false,
        or_create: Some(s.case_with_ref(json!({"name": "New"}), "stripe", "cus_9")),
    };
    let w = write(&h, vec![upsert.clone()], None);
    let request_id = w.request.id;
    let item = done_one(&store, w).await;
    assert_eq!(item.action, ItemAction::Created);
    let created = get_case(&store, &s, item.case_id).await;
    assert_eq!(created.data["name"], "New");
    assert_eq!(
        store
            .find_case_by_ref(s.ws, "stripe", "cus_9")
            .await
            .expect("found")
            .id,
        created.id
    );
    let feed = s.feed(&store).await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].event_type, "case.created");
    assert_eq!(item.event_ids, [feed[0].id]);
    let entry = store
        .get_inbound_request(s.ws, h.id, request_id)
        .await
        .expect("logged");
    assert_eq!(entry.outcome, "created");
    assert_eq!(entry.case_id, Some(created.id));

    // Sent again, it now matches the case it created.
    let again = done_one(&store, write(&h, vec![upsert], None)).await;
    assert_eq!(again.action, ItemAction::Unchanged);
    assert_eq!(again.case_id, created.id);
    assert_eq!(s.cases(&store, true).await.len(), 1);
}

async fn matched_case_of_another_form_is_a_conflict(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let other_form = store
        .create_form(s.ws, {
            let mut spec = customer_form();
            spec.name = "Supplier".into();
            spec
        })
        .await
        .expect("a second form");
    let (theirs, _) = store
        .create_case(NewCase {
            form_id: other_form.id,
            form_version: other_form.version,
            ..s.case_with_ref(json!({"name": "Other"}), "stripe", "cus_other")
        })
        .await
        .expect("a case of the other form");
    let feed_before = s.feed(&store).await;
    for item in [
        update(by_ref("cus_other"), json!({"amount": 1})),
        update(CaseMatch::Number(theirs.number), json!({"amount": 1})),
        InboundItem::Event {
            target: CaseMatch::Number(theirs.number),
            event: custom_event(),
        },
    ] {
        let result = store.apply_inbound(write(&h, vec![item], None)).await;
        assert_item_error(result, 0, |e| matches!(e, StoreError::Conflict(_)));
    }
    // A field match only looks at the hook's form: the other form's case is no match.
    let result = store
        .apply_inbound(write(
            &h,
            vec![update(
                by_field("name", json!("Other")),
                json!({"amount": 1}),
            )],
            None,
        ))
        .await;
    assert_item_error(result, 0, |e| matches!(e, StoreError::NotFound("case")));
    assert_eq!(get_case(&store, &s, theirs.id).await, theirs);
    assert_eq!(s.feed(&store).await, feed_before);
    assert_eq!(log(&store, &h).await, []);
}

fn custom_event() -> NewEvent {
    NewEvent {
        event_type: "invoice.paid".into(),
        // Filled in by the store from the matched case, whatever the caller put here.
        case_id: Some(CaseId::new()),
        form_id: None,
        actor: actor(),
        data: json!({"invoice": "in_1", "amount": 42}),
        changes: None,
        skip_triggers: true,
    }
}

async fn event_item_is_appended_on_the_matched_case(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let _first = s.create(&store, json!({"name": "first"})).await;
    let case = create_with_ref(&store, &s, json!({"name": "Ada"}), "cus_1").await;
    let w = write(
        &h,
        vec![InboundItem::Event {
            target: by_ref("cus_1"),
            event: custom_event(),
        }],
        None,
    );
    let request_id = w.request.id;
    let item = done_one(&store, w).await;
    assert_eq!(item.action, ItemAction::Event);
    assert_eq!(item.case_id, case.id);
    assert_eq!(item.case_number, case.number);

    let feed = s.feed(&store).await;
    let event = feed.last().expect("an event");
    assert_eq!(item.event_ids, [event.id]);
    assert_eq!(event.event_type, "invoice.paid");
    assert_eq!(event.case_id, Some(case.id), "the matched case's id");
    assert_eq!(event.form_id, Some(case.form_id), "the matched case's form");
    assert_eq!(event.data, json!({"invoice": "in_1", "amount": 42}));
    assert!(event.skip_triggers);
    assert_eq!(event.sequence, 3);
    assert_eq!(
        get_case(&store, &s, case.id).await,
        case,
        "the case is unchanged"
    );
    let entry = store
        .get_inbound_request(s.ws, h.id, request_id)
        .await
        .expect("logged");
    assert_eq!(entry.outcome, "event");
    assert_eq!(entry.case_id, Some(case.id));
}

async fn failing_item_rolls_back_the_whole_batch(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let existing = s.create(&store, json!({"name": "Ada"})).await;
    let feed_before = s.feed(&store).await;
    let first_two = vec![
        InboundItem::Create(s.case_with_ref(json!({"name": "one"}), "stripe", "cus_1")),
        update(CaseMatch::Number(existing.number), json!({"amount": 7})),
    ];
    let mut items = first_two.clone();
    items.push(update(by_ref("cus_404"), json!({"amount": 1})));
    let result = store.apply_inbound(write(&h, items, Some("batch-1"))).await;
    assert_item_error(result, 2, |e| matches!(e, StoreError::NotFound("case")));

    assert_eq!(
        s.cases(&store, true).await,
        std::slice::from_ref(&existing),
        "no new case, no change"
    );
    assert_eq!(s.feed(&store).await, feed_before, "no event");
    let found = store.find_case_by_ref(s.ws, "stripe", "cus_1").await;
    assert!(
        matches!(found, Err(StoreError::NotFound(_))),
        "the reference was not claimed: {found:?}"
    );
    assert_eq!(log(&store, &h).await, []);

    // The key was not kept: the retry is processed, not a duplicate.
    let accepted = done(&store, write(&h, first_two, Some("batch-1"))).await;
    assert!(accepted.batch);
    assert_eq!(
        accepted.items.iter().map(|i| i.action).collect::<Vec<_>>(),
        [ItemAction::Created, ItemAction::Updated]
    );
    assert_eq!(
        accepted.items[0].case_number, 2,
        "the failed batch used up no case number"
    );
    assert_eq!(s.cases(&store, true).await.len(), 2);
    assert_eq!(get_case(&store, &s, existing.id).await.data["amount"], 7);
    let entries = log(&store, &h).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, "mixed");
    assert_eq!(entries[0].case_id, Some(accepted.items[0].case_id));
}

// ---- the request log ----

async fn request_log_stores_failures_and_filters_newest_first(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let t0 = now_micros() - 10_000_000;
    let mut denied = failure(s.ws, h.id, 401, "denied");
    denied.received_at = t0;
    store
        .log_inbound_request(denied.clone())
        .await
        .expect("log");
    let mut created = write(&h, vec![InboundItem::Create(s.case(json!({})))], None);
    created.request.received_at = t0 + 1_000;
    let created_id = created.request.id;
    let case_id = done_one(&store, created).await.case_id;
    let mut invalid = failure(s.ws, h.id, 422, "invalid");
    invalid.received_at = t0 + 2_000;
    invalid.replay_of = Some(denied.id);
    store
        .log_inbound_request(invalid.clone())
        .await
        .expect("log");
    let mut denied_again = failure(s.ws, h.id, 401, "denied");
    denied_again.received_at = t0 + 3_000;
    store
        .log_inbound_request(denied_again.clone())
        .await
        .expect("log");

    // A failure is stored as given.
    let stored = store
        .get_inbound_request(s.ws, h.id, denied.id)
        .await
        .expect("get");
    assert_eq!(stored.status, 401);
    assert_eq!(stored.outcome, "denied");
    assert_eq!(stored.response, json!({"error": "denied"}));
    assert_eq!(stored.verification, "failed");
    assert_eq!(
        stored.verification_error.as_deref(),
        Some("signature mismatch")
    );
    assert!(stored.body_truncated);
    assert_eq!(stored.body_bytes, 1_000_000);
    assert_eq!(stored.case_id, None);
    assert_eq!(stored.received_at, from_micros(t0).expect("a time"));
    assert_eq!(
        store
            .get_inbound_request(s.ws, h.id, invalid.id)
            .await
            .expect("get")
            .replay_of,
        Some(denied.id)
    );

    let all = [denied_again.id, invalid.id, created_id, denied.id];
    assert_eq!(ids(&log(&store, &h).await), all, "newest first");
    let filtered = |filter: InboundRequestFilter| {
        let store = store.clone();
        let h = h.clone();
        async move { ids(&log_where(&store, &h, filter).await) }
    };
    assert_eq!(
        filtered(InboundRequestFilter {
            outcome: Some("denied".into()),
            ..InboundRequestFilter::default()
        })
        .await,
        [denied_again.id, denied.id]
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            status: Some(422),
            ..InboundRequestFilter::default()
        })
        .await,
        [invalid.id]
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            status: Some(200),
            ..InboundRequestFilter::default()
        })
        .await,
        [created_id]
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            case_id: Some(case_id),
            ..InboundRequestFilter::default()
        })
        .await,
        [created_id]
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            outcome: Some("denied".into()),
            status: Some(422),
            ..InboundRequestFilter::default()
        })
        .await,
        [],
        "filters combine"
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            received_after: Some(t0 + 1_000),
            received_before: Some(t0 + 3_000),
            ..InboundRequestFilter::default()
        })
        .await,
        [invalid.id, created_id]
    );

    // Pages of two, following `before`.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = filtered(InboundRequestFilter {
            before,
            limit: 2,
            ..InboundRequestFilter::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        before = Some(*last);
        pages.push(page);
    }
    assert_eq!(
        pages,
        [vec![all[0], all[1]], vec![all[2], all[3]]],
        "two full pages, then an empty one"
    );
    assert_eq!(
        filtered(InboundRequestFilter {
            outcome: Some("denied".into()),
            before: Some(denied_again.id),
            limit: 1,
            ..InboundRequestFilter::default()
        })
        .await,
        [denied.id],
        "paging combines with filters"
    );
}

async fn request_log_is_per_hook_and_tenant_isolated(store: Store) {
    let a = Setup::new(&store, "a").await;
    let b = Setup::new(&store, "b").await;
    let h = hook(&store, &a, "hash-a").await;
    let sibling = hook(&store, &a, "hash-sibling").await;
    let theirs = hook(&store, &b, "hash-b").await;
    let mine = failure(a.ws, h.id, 401, "denied");
    store.log_inbound_request(mine.clone()).await.expect("log");
    let next_door = failure(a.ws, sibling.id, 401, "denied");
    store
        .log_inbound_request(next_door.clone())
        .await
        .expect("log");
    let other = failure(b.ws, theirs.id, 401, "denied");
    store.log_inbound_request(other.clone()).await.expect("log");

    assert_eq!(ids(&log(&store, &h).await), [mine.id]);
    assert_eq!(ids(&log(&store, &sibling).await), [next_door.id]);
    assert_eq!(ids(&log(&store, &theirs).await), [other.id]);
    let foreign = store
        .list_inbound_requests(
            b.ws,
            h.id,
            &InboundRequestFilter {
                limit: 100,
                ..InboundRequestFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(foreign, [], "another workspace sees none of the hook's log");
    for (ws, hook, id) in [
        (b.ws, h.id, mine.id),
        (a.ws, sibling.id, mine.id),
        (a.ws, theirs.id, other.id),
    ] {
        let got = store.get_inbound_request(ws, hook, id).await;
        assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    }
    assert_eq!(
        store
            .get_inbound_request(a.ws, h.id, mine.id)
            .await
            .expect("get")
            .id,
        mine.id
    );
}

async fn prune_removes_expired_keys_and_old_log_rows_only(store: Store) {
    let s = Setup::new(&store, "w").await;
    let h = hook(&store, &s, "hash-1").await;
    let now = now_micros();
    let day = 24 * HOUR;
    let case = || InboundItem::Create(s.case(json!({})));

    // Two keys past their window, one within it.
    for key in ["old-1", "old-2"] {
        done(
            &store,
            write_until(&h, vec![case()], Some(key), now - 1_000_000),
        )
        .await;
    }
    let live = done(&store, write(&h, vec![case()], Some("live"))).await;
    // Two log rows older than the cut, and the three (recent) rows of the writes above.
    let mut old = Vec::new();
    for days in [9, 8] {
        let mut r = failure(s.ws, h.id, 401, "denied");
        r.received_at = now - days * day;
        store.log_inbound_request(r.clone()).await.expect("log");
        old.push(r.id);
    }
    let recent = ids(&log(&store, &h).await)[2..].to_vec();
    assert_eq!(recent.len(), 3);
    let cases_before = s.cases(&store, true).await;
    let feed_before = s.feed(&store).await;

    // At most `limit` rows of each kind per call.
    let cut = now - day;
    assert_eq!(store.prune_inbound(cut, 1).await.expect("prune"), 2);
    assert_eq!(store.prune_inbound(cut, 1).await.expect("prune"), 2);
    assert_eq!(
        store.prune_inbound(cut, 100).await.expect("prune"),
        0,
        "nothing left to prune"
    );

    assert_eq!(ids(&log(&store, &h).await), recent, "recent rows stay");
    for id in old {
        let got = store.get_inbound_request(s.ws, h.id, id).await;
        assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    }
    // The live key still answers duplicates; the hook, its token, cases and events stay.
    assert_eq!(
        apply(&store, write(&h, vec![case()], Some("live"))).await,
        Applied::Duplicate(live)
    );
    assert_eq!(s.cases(&store, true).await, cases_before);
    assert_eq!(s.feed(&store).await, feed_before);
    assert_eq!(
        store
            .find_inbound_hook_by_token("hash-1")
            .await
            .expect("find")
            .map(|f| f.id),
        Some(h.id)
    );
    assert_eq!(store.get_inbound_hook(s.ws, h.id).await.expect("get"), h);
}

contract_tests!(
    create_hook_stores_it_with_its_first_token,
    hook_for_a_form_of_another_workspace_is_refused,
    hooks_are_read_and_updated_within_their_workspace,
    rotated_token_works_beside_the_new_one_until_old_until,
    rotation_with_old_until_past_retires_old_tokens_at_once,
    workspace_tokens_are_every_live_hooks_working_tokens,
    deleted_hook_stops_answering_but_keeps_its_request_log,
    create_item_creates_a_case_and_logs_the_request,
    repeated_idempotency_key_answers_the_first_outcome,
    concurrent_requests_with_one_key_create_one_case,
    concurrent_requests_through_two_stores_create_one_case,
    concurrent_distinct_requests_each_get_their_own_answer,
    expired_idempotency_key_is_processed_again,
    idempotency_keys_are_per_hook,
    update_items_match_by_ref_field_and_number,
    field_match_is_served_by_an_index_on_the_field,
    field_match_takes_the_oldest_case_holding_the_value,
    update_that_changes_nothing_is_unchanged,
    update_without_a_match_fails_and_writes_nothing,
    update_without_a_match_creates_with_or_create,
    matched_case_of_another_form_is_a_conflict,
    event_item_is_appended_on_the_matched_case,
    failing_item_rolls_back_the_whole_batch,
    request_log_stores_failures_and_filters_newest_first,
    request_log_is_per_hook_and_tenant_isolated,
    prune_removes_expired_keys_and_old_log_rows_only,
);
