//! Sealing what an inbound hook keeps secret: its URL token and its verifications' secrets.
//! Both are sealed with the master key and bound to the hook's id, so a sealed value copied
//! to another hook's row does not open.

use casehook_core::InboundHookId;
use casehook_core::sealed::MasterKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// Bytes of randomness in a URL token (256 bits; at least 128 are required).
const TOKEN_BYTES: usize = 32;

/// One secret of a verification; a rotated-out secret has an end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredSecret {
    pub value: String,
    /// Microseconds since the epoch after which the secret no longer verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// The secrets of each verification of a hook, by position.
pub(crate) type SecretSets = Vec<Vec<StoredSecret>>;

pub(crate) fn secrets_context(id: InboundHookId) -> String {
    casehook_core::sealed::context::inbound_secrets(id)
}

pub(crate) fn token_context(id: InboundHookId) -> String {
    casehook_core::sealed::context::inbound_token(id)
}

/// A fresh URL token: URL-safe base64 of 256 random bits.
pub(crate) fn generate_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a token is looked up by.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn seal_secrets(
    keys: &MasterKey,
    id: InboundHookId,
    sets: &SecretSets,
) -> ApiResult<Option<Vec<u8>>> {
    if sets.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let plain = serde_json::to_vec(sets).map_err(|e| ApiError::internal(&e))?;
    keys.seal(&plain, &secrets_context(id))
        .map(Some)
        .map_err(|e| ApiError::internal(&e))
}

pub(crate) fn open_secrets(
    keys: &MasterKey,
    id: InboundHookId,
    sealed: Option<&[u8]>,
) -> ApiResult<SecretSets> {
    let Some(sealed) = sealed else {
        return Ok(Vec::new());
    };
    let plain = keys
        .open(sealed, &secrets_context(id))
        .map_err(|e| ApiError::internal(&e))?;
    serde_json::from_slice(&plain).map_err(|e| ApiError::internal(&e))
}

pub(crate) fn seal_token(keys: &MasterKey, id: InboundHookId, token: &str) -> ApiResult<Vec<u8>> {
    keys.seal(token.as_bytes(), &token_context(id))
        .map_err(|e| ApiError::internal(&e))
}

pub(crate) fn open_token(keys: &MasterKey, id: InboundHookId, sealed: &[u8]) -> ApiResult<String> {
    keys.open_text(sealed, &token_context(id))
        .map_err(|e| ApiError::internal(&e))
}

/// The secrets of a set that still verify at `now` (microseconds).
pub(crate) fn active(set: &[StoredSecret], now: i64) -> Vec<&str> {
    set.iter()
        .filter(|s| s.until.is_none_or(|until| until > now))
        .map(|s| s.value.as_str())
        .collect()
}
