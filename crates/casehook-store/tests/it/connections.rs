//! Secrets read together by name; OAuth 2.0 refresh tokens kept for connections: one per
//! connection (the newest wins), visible only in the connection's workspace, gone with the
//! connection, and re-sealed with every other secret when the master key rotates; and a
//! process whose key was rotated away seals nothing more.

use casehook_core::sealed::{MasterKey, context};
use casehook_core::{ConnectionId, SecretId};
use casehook_store::RefreshTokenOwner::{Connection, Inline};
use casehook_store::{NewConnection, NewSecret, Store, StoreError};
use serde_json::json;

use crate::fixtures::workspace;
use crate::harness::{TestDb, contract_tests};

async fn connection(store: &Store, ws: casehook_core::WorkspaceId) -> ConnectionId {
    let id = ConnectionId::new();
    store
        .create_connection(NewConnection {
            id,
            workspace: ws,
            name: "crm".into(),
            config: json!({"base_url": "https://crm.example"}),
            credentials: None,
        })
        .await
        .expect("create a connection");
    id
}

fn sealed(key: &MasterKey, id: ConnectionId, token: &str) -> Vec<u8> {
    key.seal(token.as_bytes(), &context::connection_refresh_token(id))
        .expect("seal")
}

fn opened(key: &MasterKey, id: ConnectionId, sealed: &[u8]) -> String {
    key.open_text(sealed, &context::connection_refresh_token(id))
        .expect("opens under this key")
}

async fn the_newest_refresh_token_is_kept_per_connection_and_workspace(store: Store) {
    let (key, _) = MasterKey::generate();
    let ws = workspace(&store, "w").await;
    let other_ws = workspace(&store, "other").await;
    let crm = connection(&store, ws).await;
    let erp = connection(&store, other_ws).await;
    assert_eq!(
        store
            .rotated_refresh_token(Connection(ws, crm))
            .await
            .expect("read"),
        None
    );

    for token in ["rt-1", "rt-2"] {
        store
            .keep_rotated_refresh_token(Connection(ws, crm), sealed(&key, crm, token))
            .await
            .expect("keep");
    }
    let kept = store
        .rotated_refresh_token(Connection(ws, crm))
        .await
        .expect("read");
    assert_eq!(opened(&key, crm, &kept.expect("kept")), "rt-2");
    assert_eq!(
        store
            .rotated_refresh_token(Connection(other_ws, crm))
            .await
            .expect("read"),
        None,
        "another workspace sees nothing"
    );
    let refused = store
        .keep_rotated_refresh_token(Connection(other_ws, crm), sealed(&key, crm, "rt-x"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "{refused:?}"
    );
    assert_eq!(
        store
            .rotated_refresh_token(Connection(other_ws, erp))
            .await
            .expect("read"),
        None
    );

    store.delete_connection(ws, crm).await.expect("delete");
    assert_eq!(
        store
            .rotated_refresh_token(Connection(ws, crm))
            .await
            .expect("read"),
        None
    );
    let refused = store
        .keep_rotated_refresh_token(Connection(ws, crm), sealed(&key, crm, "rt-3"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "nothing is kept for a deleted connection: {refused:?}"
    );
}

/// A request's own auth (no connection) keeps its rotated token under a key derived from
/// the grant: no connection needs to exist, the newest wins, and only its workspace reads it
/// (and only as an inline token, not as a connection's).
async fn inline_refresh_tokens_are_kept_per_key_and_workspace(store: Store) {
    let (key, _) = MasterKey::generate();
    let ws = workspace(&store, "w").await;
    let other_ws = workspace(&store, "other").await;
    let grant = ConnectionId::new();
    assert_eq!(
        store
            .rotated_refresh_token(Inline(ws, grant))
            .await
            .expect("read"),
        None
    );
    for token in ["rt-1", "rt-2"] {
        store
            .keep_rotated_refresh_token(Inline(ws, grant), sealed(&key, grant, token))
            .await
            .expect("keep without a connection");
    }
    let kept = store
        .rotated_refresh_token(Inline(ws, grant))
        .await
        .expect("read");
    assert_eq!(opened(&key, grant, &kept.expect("kept")), "rt-2");
    assert_eq!(
        store
            .rotated_refresh_token(Inline(other_ws, grant))
            .await
            .expect("read"),
        None,
        "another workspace sees nothing"
    );
    assert_eq!(
        store
            .rotated_refresh_token(Connection(ws, grant))
            .await
            .expect("read"),
        None,
        "not a connection's token"
    );
}

async fn kept_refresh_tokens_are_resealed_with_the_master_key(store: Store) {
    let (old, _) = MasterKey::generate();
    let (new, _) = MasterKey::generate();
    store
        .check_master_key(&old)
        .await
        .expect("install the check");
    let ws = workspace(&store, "w").await;
    let crm = connection(&store, ws).await;
    store
        .keep_rotated_refresh_token(Connection(ws, crm), sealed(&old, crm, "rt-kept"))
        .await
        .expect("keep");

    let resealed = store.reseal_all(&old, &new).await.expect("reseal");
    assert_eq!(resealed.values, 1);
    let kept = store
        .rotated_refresh_token(Connection(ws, crm))
        .await
        .expect("read")
        .expect("still kept");
    assert_eq!(opened(&new, crm, &kept), "rt-kept");
    assert!(
        old.open(&kept, &context::connection_refresh_token(crm))
            .is_err()
    );
}

async fn a_process_whose_master_key_was_rotated_away_seals_nothing(db: TestDb) {
    // This process checked its key; another (`casehook secrets rotate-master-key`, run
    // while this one kept serving) re-sealed everything under a new one.
    let (old, _) = MasterKey::generate();
    let (new, _) = MasterKey::generate();
    let store = &db.store;
    store.check_master_key(&old).await.expect("check");
    let ws = workspace(store, "w").await;
    let crm = connection(store, ws).await;
    let other = db.open_another().await;
    other.reseal_all(&old, &new).await.expect("reseal");

    let refused = store
        .keep_rotated_refresh_token(Connection(ws, crm), sealed(&old, crm, "rt-stale"))
        .await;
    match refused {
        Err(StoreError::KeyRotated { ours, theirs }) => {
            assert_eq!(ours, old.fingerprint());
            assert_eq!(theirs, new.fingerprint());
        }
        other => panic!("expected KeyRotated, got {other:?}"),
    }
    let refused = store
        .create_secret(NewSecret {
            id: SecretId::new(),
            workspace: ws,
            name: "bureau".into(),
            description: None,
            sealed: vec![1, 2, 3],
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::KeyRotated { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store
            .rotated_refresh_token(Connection(ws, crm))
            .await
            .expect("read"),
        None
    );
    assert!(
        store.list_secrets(ws).await.expect("list").is_empty(),
        "nothing written"
    );

    // Writes that seal nothing go on; and once restarted with the new key, sealing does.
    workspace(store, "still writing").await;
    store.check_master_key(&new).await.expect("check");
    store
        .keep_rotated_refresh_token(Connection(ws, crm), sealed(&new, crm, "rt-new"))
        .await
        .expect("sealed under the database's key");
}

async fn secrets_are_read_together_by_name_within_their_workspace(store: Store) {
    let ws = workspace(&store, "w").await;
    let other_ws = workspace(&store, "other").await;
    for (w, name) in [
        (ws, "bureau"),
        (ws, "crm"),
        (ws, "unused"),
        (other_ws, "crm-elsewhere"),
    ] {
        store
            .create_secret(NewSecret {
                id: SecretId::new(),
                workspace: w,
                name: name.into(),
                description: None,
                sealed: name.as_bytes().to_vec(),
            })
            .await
            .expect("create a secret");
    }
    let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut found: Vec<String> = store
        .get_secrets(ws, &names(&["crm", "bureau", "missing", "crm-elsewhere"]))
        .await
        .expect("read")
        .into_iter()
        .map(|s| s.name)
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["bureau", "crm"],
        "only this workspace's, only those named"
    );
    assert!(store.get_secrets(ws, &[]).await.expect("read").is_empty());
}

contract_tests!(
    secrets_are_read_together_by_name_within_their_workspace,
    the_newest_refresh_token_is_kept_per_connection_and_workspace,
    inline_refresh_tokens_are_kept_per_key_and_workspace,
    kept_refresh_tokens_are_resealed_with_the_master_key,
    a_process_whose_master_key_was_rotated_away_seals_nothing,
);
