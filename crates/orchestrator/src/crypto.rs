//! Seals workflow secrets at rest with XChaCha20-Poly1305. The key is the
//! SHA-256 of `SLIPWAY_SECRET_KEY`, so any string of enough entropy works;
//! each secret's workflow and name are bound in as associated data, so a
//! sealed value cannot be moved to another secret.

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
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn aad(workflow_id: i64, name: &str) -> Vec<u8> {
    format!("slipway-secret/{workflow_id}/{name}").into_bytes()
}

impl SecretBox {
    pub fn new(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self {
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(digest.as_slice())),
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
        let err = || OpenError(name.to_owned());
        if nonce.len() != 24 {
            return Err(err());
        }
        let aad = aad(workflow_id, name);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| err())?;
        String::from_utf8(plain).map_err(|_| err())
    }
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
