//! Everything sealed under the master key, known in one place: the check value that tells a
//! server whether it holds the right key, and re-sealing every sealed column under a new key
//! in one transaction (`casehook secrets rotate-master-key`).

use casehook_core::sealed::{MasterKey, context};
use casehook_core::{ConnectionId, EndpointId, InboundHookId, SecretId};
use uuid::Uuid;

use crate::Store;
use crate::db::{Arg, Conn, args, now_micros};
use crate::error::{Result, StoreError};
use crate::writer::{Tx, WriteOp};

/// A column of sealed values: rows are found by `key`, and each value is bound to a context
/// computed from the uuid in `owner`.
struct SealedColumn {
    table: &'static str,
    key: &'static str,
    key_is_text: bool,
    owner: &'static str,
    column: &'static str,
    context: fn(Uuid) -> String,
}

const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "endpoints",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "secret",
        context: |id| context::endpoint_secret(EndpointId(id)),
    },
    SealedColumn {
        table: "endpoints",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "previous_secret",
        context: |id| context::endpoint_secret(EndpointId(id)),
    },
    SealedColumn {
        table: "endpoints",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "auth",
        context: |id| context::endpoint_auth(EndpointId(id)),
    },
    SealedColumn {
        table: "inbound_hooks",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "secrets",
        context: |id| context::inbound_secrets(InboundHookId(id)),
    },
    SealedColumn {
        table: "inbound_hook_tokens",
        key: "token_hash",
        key_is_text: true,
        owner: "hook_id",
        column: "token",
        context: |id| context::inbound_token(InboundHookId(id)),
    },
    SealedColumn {
        table: "secrets",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "value",
        context: |id| context::workspace_secret(SecretId(id)),
    },
    SealedColumn {
        table: "connections",
        key: "id",
        key_is_text: false,
        owner: "id",
        column: "credentials",
        context: |id| context::connection_credentials(ConnectionId(id)),
    },
    SealedColumn {
        table: "oauth2_refresh_tokens",
        key: "connection_id",
        key_is_text: false,
        owner: "connection_id",
        column: "token",
        context: |id| context::connection_refresh_token(ConnectionId(id)),
    },
];

/// What the database says about a master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// The key opens the check value.
    Matches,
    /// No check value yet (a new database, or one from before checks): this key's is stored.
    Installed,
    /// The database was sealed under another key, whose fingerprint is given.
    Mismatch { expected_fingerprint: String },
}

/// How many sealed values a rotation re-sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    pub values: usize,
}

async fn stored_check(conn: &mut Conn<'_>) -> Result<Option<(Vec<u8>, String)>> {
    let row = conn
        .fetch_optional(
            "SELECT sealed, fingerprint FROM master_key_check WHERE id = 1",
            &[],
        )
        .await?;
    row.map(|r| Ok((r.bytes("sealed")?, r.text("fingerprint")?)))
        .transpose()
}

/// Install `key`'s check value unless one is there; whether it was installed.
async fn install_check(conn: &mut Conn<'_>, key: &MasterKey) -> Result<bool> {
    let sealed = key
        .seal(key.fingerprint().as_bytes(), context::MASTER_KEY_CHECK)
        .map_err(|e| StoreError::Corrupt(format!("sealing the key check: {e}")))?;
    let inserted = conn
        .execute(
            "INSERT INTO master_key_check (id, sealed, fingerprint, updated_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &args![sealed, key.fingerprint(), now_micros()],
        )
        .await?;
    Ok(inserted == 1)
}

async fn store_check(conn: &mut Conn<'_>, key: &MasterKey) -> Result<()> {
    conn.execute("DELETE FROM master_key_check", &[]).await?;
    install_check(conn, key).await?;
    Ok(())
}

struct CheckKey(MasterKey);

impl WriteOp for CheckKey {
    type Output = KeyCheck;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<KeyCheck> {
        // On a new database the first key installs its check; processes starting together
        // race for it, and the others compare against the winner's.
        if install_check(&mut tx.conn, &self.0).await? {
            return Ok(KeyCheck::Installed);
        }
        match stored_check(&mut tx.conn).await? {
            Some((sealed, _)) if self.0.open(&sealed, context::MASTER_KEY_CHECK).is_ok() => {
                Ok(KeyCheck::Matches)
            }
            Some((_, fingerprint)) => Ok(KeyCheck::Mismatch {
                expected_fingerprint: fingerprint,
            }),
            None => Err(StoreError::Corrupt("the master key check vanished".into())),
        }
    }
}

struct Reseal {
    old: MasterKey,
    new: MasterKey,
}

impl WriteOp for Reseal {
    type Output = Resealed;
    async fn run(&mut self, tx: &mut Tx<'_>) -> Result<Resealed> {
        if let Some((sealed, fingerprint)) = stored_check(&mut tx.conn).await?
            && self.old.open(&sealed, context::MASTER_KEY_CHECK).is_err()
        {
            return Err(StoreError::Rejected {
                message: format!(
                    "the current master key (fingerprint {}) is not the one this database is sealed with (fingerprint {fingerprint})",
                    self.old.fingerprint()
                ),
                details: Vec::new(),
            });
        }
        let mut count = 0;
        for col in SEALED {
            let rows = tx
                .conn
                .fetch_all(
                    &format!(
                        "SELECT {key} AS k, {owner} AS owner, {column} AS v FROM {table} WHERE {column} IS NOT NULL",
                        key = col.key,
                        owner = col.owner,
                        column = col.column,
                        table = col.table
                    ),
                    &[],
                )
                .await?;
            for row in rows {
                let key: Arg = if col.key_is_text {
                    row.text("k")?.into()
                } else {
                    row.uuid("k")?.into()
                };
                let context = (col.context)(row.uuid("owner")?);
                let plain = self.old.open(&row.bytes("v")?, &context).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}.{} of row {context} does not open: {e}",
                        col.table, col.column
                    ))
                })?;
                let sealed = self
                    .new
                    .seal(&plain, &context)
                    .map_err(|e| StoreError::Corrupt(format!("sealing: {e}")))?;
                tx.conn
                    .execute(
                        &format!(
                            "UPDATE {table} SET {column} = $1 WHERE {key} = $2",
                            table = col.table,
                            column = col.column,
                            key = col.key
                        ),
                        &[Arg::from(sealed), key],
                    )
                    .await?;
                count += 1;
            }
        }
        store_check(&mut tx.conn, &self.new).await?;
        Ok(Resealed { values: count })
    }
}

impl Store {
    /// Whether `key` is the master key this database's sealed values were sealed with; a
    /// database without a check value yet takes this key's.
    pub async fn check_master_key(&self, key: &MasterKey) -> Result<KeyCheck> {
        let check = self.writer().run(CheckKey(key.clone())).await?;
        if !matches!(check, KeyCheck::Mismatch { .. }) {
            self.sealing_key().set(key.fingerprint());
        }
        Ok(check)
    }

    /// Re-seal every sealed value from `old` to `new`, all in one transaction: either every
    /// value opens under `new` afterwards, or nothing changed.
    pub async fn reseal_all(&self, old: &MasterKey, new: &MasterKey) -> Result<Resealed> {
        let resealed = self
            .writer()
            .run(Reseal {
                old: old.clone(),
                new: new.clone(),
            })
            .await?;
        self.sealing_key().set(new.fingerprint());
        Ok(resealed)
    }
}
