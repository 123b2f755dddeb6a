//! Webhook authentication: GitHub's HMAC-SHA256 signature of the raw body,
//! and GitLab's shared token. Both compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `header` (`sha256=<hex>`) is the HMAC of `body` under `secret`.
pub fn github_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Whether the presented GitLab token equals the configured one.
pub fn gitlab_valid(expected: &[u8], presented: Option<&str>) -> bool {
    match presented {
        Some(p) => bool::from(p.as_bytes().ct_eq(expected)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn github_signatures() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = sign(b"s3cret", body);
        let cases: &[(&[u8], Option<&str>, bool)] = &[
            (b"s3cret", Some(&good), true),
            (b"other", Some(&good), false),
            (b"s3cret", None, false),
            (b"s3cret", Some("sha256="), false),
            (b"s3cret", Some("sha256=zz"), false),
            (b"s3cret", Some("sha1=abcd"), false),
            (b"s3cret", Some(&good[..good.len() - 2]), false),
        ];
        for (secret, header, want) in cases {
            assert_eq!(github_valid(secret, body, *header), *want, "{header:?}");
        }
        // The documented example of GitHub's docs.
        assert!(github_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        ));
        assert!(!github_valid(b"s3cret", b"tampered", Some(&good)));
    }

    #[test]
    fn gitlab_tokens() {
        assert!(gitlab_valid(b"tok", Some("tok")));
        assert!(!gitlab_valid(b"tok", Some("tok2")));
        assert!(!gitlab_valid(b"tok", Some("")));
        assert!(!gitlab_valid(b"tok", None));
    }
}
