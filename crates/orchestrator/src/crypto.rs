//! Seals workflow secrets at rest with XChaCha20-Poly1305. The key is the
//! SHA-256 of `SLIPWAY_SECRET_KEY`, so any string of enough entropy works;
//! each secret's workflow and name are bound in as associated data, so a
//! sealed value cannot be moved to another secret.
//!
//! Rotating the key: with the new key in `SLIPWAY_SECRET_KEY` and the old
//! one in `SLIPWAY_SECRET_KEY_PREVIOUS`, secrets open with either, and the
//! orchestrator seals every stored secret again with the new key at start
//! ([`SecretBox::reseal`]), after which the old key can go.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// A sealed secret could not be opened: the key changed or the row is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("secret {0} cannot be decrypted with the current SLIPWAY_SECRET_KEY")]
pub struct OpenError(pub String);

#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// The key being rotated away from: opens, never seals.
    previous: Option<XChaCha20Poly1305>,
}

/// What [`SecretBox::reseal`] made of a stored secret.
#[derive(Debug)]
pub enum Reseal {
    /// Already sealed with the current key.
    Current,
    /// Sealed with the previous key: `(nonce, ciphertext)` under the current one.
    Resealed(Vec<u8>, Vec<u8>),
    /// Neither key opens it.
    Unreadable,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn aad(workflow_id: i64, name: &str) -> Vec<u8> {
    format!("slipway-secret/{workflow_id}/{name}").into_bytes()
}

fn cipher(key: &str) -> XChaCha20Poly1305 {
    let digest = Sha256::digest(key.as_bytes());
    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(digest.as_slice()))
}

impl SecretBox {
    pub fn new(key: &str) -> Self {
        Self {
            cipher: cipher(key),
            previous: None,
        }
    }

    /// Also opens what `previous` sealed (empty: no previous key).
    pub fn with_previous(mut self, previous: &str) -> Self {
        self.previous = (!previous.is_empty()).then(|| cipher(previous));
        self
    }

    /// Whether a previous key is set, so stored secrets may need resealing.
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// A stored secret, sealed again with the current key when the previous
    /// one sealed it.
    pub fn reseal(&self, workflow_id: i64, name: &str, nonce: &[u8], ciphertext: &[u8]) -> Reseal {
        if decrypt(&self.cipher, workflow_id, name, nonce, ciphertext).is_some() {
            return Reseal::Current;
        }
        match self
            .previous
            .as_ref()
            .and_then(|p| decrypt(p, workflow_id, name, nonce, ciphertext))
        {
            Some(value) => {
                let (nonce, sealed) = self.seal(workflow_id, name, &value);
                Reseal::Resealed(nonce, sealed)
            }
            None => Reseal::Unreadable,
        }
    }

    /// Returns `(nonce, ciphertext)`.
    pub fn seal(&self, workflow_id: i64, name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(workflow_id, name);
        // Encryption with a valid key and nonce cannot fail for in-memory
        // input of this size; an empty ciphertext would fail to open later.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        (nonce.to_vec(), sealed)
    }

    pub fn open(
        &self,
        workflow_id: i64,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String, OpenError> {
        decrypt(&self.cipher, workflow_id, name, nonce, ciphertext)
            .or_else(|| {
                let previous = self.previous.as_ref()?;
                decrypt(previous, workflow_id, name, nonce, ciphertext)
            })
            .ok_or_else(|| OpenError(name.to_owned()))
    }
}

fn decrypt(
    cipher: &XChaCha20Poly1305,
    workflow_id: i64,
    name: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<String> {
    if nonce.len() != 24 {
        return None;
    }
    let aad = aad(workflow_id, name);
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let b = SecretBox::new("k");
        let (nonce, sealed) = b.seal(1, "TOKEN", "hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open(1, "TOKEN", &nonce, &sealed).unwrap(), "hunter2");
    }

    #[test]
    fn a_previous_key_opens_and_is_resealed_away() {
        let (nonce, sealed) = SecretBox::new("old").seal(1, "TOKEN", "hunter2");
        let rotating = SecretBox::new("new").with_previous("old");
        assert_eq!(
            rotating.open(1, "TOKEN", &nonce, &sealed).unwrap(),
            "hunter2"
        );
        let Reseal::Resealed(nonce, sealed) = rotating.reseal(1, "TOKEN", &nonce, &sealed) else {
            panic!("not resealed");
        };
        let new = SecretBox::new("new");
        assert_eq!(new.open(1, "TOKEN", &nonce, &sealed).unwrap(), "hunter2");
        assert!(matches!(
            rotating.reseal(1, "TOKEN", &nonce, &sealed),
            Reseal::Current
        ));
        let (n, s) = SecretBox::new("lost").seal(1, "TOKEN", "x");
        assert!(matches!(
            rotating.reseal(1, "TOKEN", &n, &s),
            Reseal::Unreadable
        ));
    }

    #[test]
    fn refuses_another_key_or_another_secret() {
        let (nonce, sealed) = SecretBox::new("k").seal(1, "TOKEN", "hunter2");
        assert!(
            SecretBox::new("other")
                .open(1, "TOKEN", &nonce, &sealed)
                .is_err()
        );
        assert!(
            SecretBox::new("k")
                .open(1, "OTHER", &nonce, &sealed)
                .is_err()
        );
        assert!(
            SecretBox::new("k")
                .open(2, "TOKEN", &nonce, &sealed)
                .is_err()
        );
    }
}
