//! Secrets at rest: values sealed with AES-256-GCM under the server's master key.
//!
//! A sealed value is `version ‖ nonce (12 bytes) ‖ ciphertext+tag`. The version byte names the
//! format (and so the cipher), leaving room for a new one without guessing. Every value is
//! sealed with associated data naming what it belongs to (e.g. `endpoint:<id>:secret`), so a
//! sealed blob copied onto another row does not open there. The master key itself comes from
//! the environment or a key file; loading it is the binary's business, not this module's.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// What each kind of sealed value is bound to. One place for all of them, so that re-sealing
/// under a new master key reaches every sealed column.
pub mod context {
    use crate::{ConnectionId, EndpointId, InboundHookId, SecretId};

    /// An endpoint's signing secret (current and previous).
    pub fn endpoint_secret(id: EndpointId) -> String {
        format!("endpoint:{id}:secret")
    }

    /// An endpoint's credentials for its receiver.
    pub fn endpoint_auth(id: EndpointId) -> String {
        format!("endpoint:{id}:auth")
    }

    /// An inbound hook's verification secrets.
    pub fn inbound_secrets(id: InboundHookId) -> String {
        format!("inbound-hook-secrets:{id}")
    }

    /// An inbound hook's URL token.
    pub fn inbound_token(id: InboundHookId) -> String {
        format!("inbound-hook-token:{id}")
    }

    /// A workspace secret's value.
    pub fn workspace_secret(id: SecretId) -> String {
        format!("secret:{id}")
    }

    /// A connection's credentials.
    pub fn connection_credentials(id: ConnectionId) -> String {
        format!("connection:{id}:credentials")
    }

    /// The refresh token an OAuth 2.0 server rotated in for a connection.
    pub fn connection_refresh_token(id: ConnectionId) -> String {
        format!("connection:{id}:refresh-token")
    }

    /// The known value that proves which master key the database is sealed with.
    pub const MASTER_KEY_CHECK: &str = "master-key-check";
}

/// The current format: AES-256-GCM with a random 96-bit nonce.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a value could not be sealed or opened, or a key not parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the master key must be 32 bytes, base64-encoded (it decoded to {0} bytes)")]
    KeyLength(usize),
    #[error("the master key is not valid base64")]
    KeyEncoding,
    #[error("the sealed value is too short or of an unknown format")]
    Format,
    #[error("the sealed value does not open with this master key (wrong key, or tampered)")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The 256-bit key every secret at rest is sealed under. `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// A short fingerprint (not secret) so operators can tell keys apart in logs.
    fingerprint: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(fingerprint {})", self.fingerprint)
    }
}

impl MasterKey {
    /// A fresh random key, with its base64 form (to write to a key file once).
    pub fn generate() -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let encoded = STANDARD.encode(bytes);
        (Self::from_bytes(&bytes), encoded)
    }

    /// Parse the base64 form (surrounding whitespace ignored).
    pub fn parse(encoded: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SealError::KeyEncoding)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SealError::KeyLength(bytes.len()))?;
        Ok(Self::from_bytes(&key))
    }

    fn from_bytes(key: &[u8; 32]) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key);
        let fingerprint = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            cipher: Aes256Gcm::new(key.into()),
            fingerprint,
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seal `plaintext`, bound to `context` (which must be given again to open it).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Open a value sealed for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let (version, rest) = sealed.split_first().ok_or(SealError::Format)?;
        if *version != FORMAT_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Format)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }

    /// Open a value that must be UTF-8 text.
    pub fn open_text(&self, sealed: &[u8], context: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| SealError::Format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let (key, encoded) = MasterKey::generate();
        let sealed = key.seal(b"whsec_abc", "endpoint:1:secret").expect("seal");
        assert_eq!(
            key.open(&sealed, "endpoint:1:secret").expect("open"),
            b"whsec_abc"
        );
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
        assert_eq!(key.open(&sealed, "endpoint:2:secret"), Err(SealError::Open));
        let (other, _) = MasterKey::generate();
        assert_eq!(
            other.open(&sealed, "endpoint:1:secret"),
            Err(SealError::Open)
        );
        let again = MasterKey::parse(&format!(" {encoded}\n")).expect("parse");
        assert_eq!(
            again.open_text(&sealed, "endpoint:1:secret").expect("open"),
            "whsec_abc"
        );
        assert_eq!(again.fingerprint(), key.fingerprint());
    }

    #[test]
    fn tampering_and_bad_input_are_refused() {
        let (key, _) = MasterKey::generate();
        let mut sealed = key.seal(b"value", "c").expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open(&sealed, "c"), Err(SealError::Open));
        assert_eq!(key.open(&[], "c"), Err(SealError::Format));
        assert_eq!(key.open(&[2; 40], "c"), Err(SealError::Format));
        assert!(matches!(
            MasterKey::parse("not base64!"),
            Err(SealError::KeyEncoding)
        ));
        assert!(matches!(
            MasterKey::parse("c2hvcnQ="),
            Err(SealError::KeyLength(5))
        ));
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let (key, _) = MasterKey::generate();
        assert_ne!(
            key.seal(b"v", "c").expect("seal"),
            key.seal(b"v", "c").expect("seal")
        );
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let (key, encoded) = MasterKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&encoded));
        assert!(shown.contains(key.fingerprint()));
    }
}
