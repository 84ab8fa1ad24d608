//! API keys: how they are made, hashed and checked, and the [`Caller`] extractor every
//! `/api/v1` handler takes.
//!
//! A key is `chk_` followed by 32 random bytes in URL-safe base64. Only its SHA-256 is
//! stored; a random 256-bit secret needs no slow hash. Verified keys are cached for a few
//! seconds so the hot path does not query the database on every request; revoking a key
//! clears this process's cache at once (other processes notice within the cache TTL).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use casehook_core::event::{Actor, ActorKind};
use casehook_core::{ApiKeyId, Role, WorkspaceId};
use casehook_store::{ApiKeyRecord, NewApiKey, Store};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::fresh_cache::FreshCache;

const KEY_PREFIX: &str = "chk_";

/// A freshly generated key: the secret (shown once) and what is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    pub secret: String,
    pub stored: NewApiKey,
}

/// Make a new key, or adopt `secret` (the operator's bootstrap key).
pub fn generate_key(name: &str, role: Role, secret: Option<String>) -> GeneratedKey {
    let secret = secret.unwrap_or_else(|| {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    });
    let prefix: String = secret.chars().take(10).collect();
    let stored = NewApiKey {
        name: name.to_string(),
        role,
        hash: hash_key(&secret),
        prefix,
        hook_id: None,
    };
    GeneratedKey { secret, stored }
}

pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Verified-key cache: key hash → key (None for unknown keys, so floods of bad keys do not
/// reach the database either). A key changed through any process is read again at once.
#[derive(Clone, Debug)]
pub struct KeyCache(FreshCache<Option<ApiKeyRecord>>);

impl KeyCache {
    pub fn new(store: &Store) -> Self {
        Self(FreshCache::new(
            store,
            casehook_store::API_KEYS_CHANGED,
            10_000,
            Duration::from_secs(10),
        ))
    }

    pub(crate) async fn lookup(
        &self,
        store: &Store,
        secret: &str,
    ) -> Result<Option<ApiKeyRecord>, ApiError> {
        let hash = hash_key(secret);
        if let Some(hit) = self.0.get(&hash) {
            return Ok(hit);
        }
        let stamp = self.0.stamp();
        let found = store.find_api_key(&hash).await?;
        self.0.insert(hash, stamp, found.clone());
        Ok(found)
    }
}

/// The authenticated caller of an `/api/v1` request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub workspace: WorkspaceId,
    pub key_id: ApiKeyId,
    pub key_name: String,
    pub role: Role,
}

impl Caller {
    /// Refuse with 403 unless the key's role allows `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the `{needed}` role; the key has `{}`",
                self.role
            )))
        }
    }

    /// The actor recorded on changes this caller makes.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: ActorKind::ApiKey,
            id: Some(self.key_id.to_string()),
            name: self.key_name.clone(),
            chain: 0,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing `Authorization: Bearer <api key>` header")
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <api key>`")
            })?;
        let key = state
            .keys
            .lookup(&state.store, secret)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the API key is unknown or revoked"))?;
        Ok(Caller {
            workspace: key.workspace_id,
            key_id: key.id,
            key_name: key.name,
            role: key.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_prefixed_and_hashed() {
        let a = generate_key("a", Role::Admin, None);
        let b = generate_key("b", Role::Admin, None);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        assert_eq!(a.stored.hash, hash_key(&a.secret));
        assert!(!a.stored.hash.contains(&a.secret));
        assert!(a.secret.starts_with(&a.stored.prefix));
    }

    #[test]
    fn bootstrap_secret_is_adopted() {
        let k = generate_key("boot", Role::Admin, Some("chk_given".into()));
        assert_eq!(k.secret, "chk_given");
        assert_eq!(k.stored.hash, hash_key("chk_given"));
    }
}
