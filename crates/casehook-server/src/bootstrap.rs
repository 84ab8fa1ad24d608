//! The very first start: with no workspace in the database, create the default workspace
//! and its admin key, which the operator sees once.

use casehook_core::Role;
use casehook_store::{Store, StoreError, Workspace};

use crate::auth::generate_key;

/// What the first start created: print the key, it is not stored in clear anywhere.
#[derive(Debug)]
pub struct FirstStart {
    pub workspace: Workspace,
    pub admin_key: String,
}

/// Create the default workspace and admin key if the database has no workspace yet.
/// `bootstrap_key` (from `CASEHOOK_BOOTSTRAP_ADMIN_KEY`) becomes the key instead of a
/// generated one; it is ignored on every later start.
pub async fn ensure_default_workspace(
    store: &Store,
    bootstrap_key: Option<String>,
) -> Result<Option<FirstStart>, StoreError> {
    if store.workspace_count().await? > 0 {
        return Ok(None);
    }
    let key = generate_key(
        "bootstrap admin",
        Role::Admin,
        bootstrap_key.filter(|k| !k.trim().is_empty()),
    );
    let created = store.create_first_workspace("default", key.stored).await?;
    Ok(created.map(|(workspace, _)| FirstStart {
        workspace,
        admin_key: key.secret,
    }))
}
