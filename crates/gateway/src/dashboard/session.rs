//! The dashboard's login session: a cookie signed with the API token, so the
//! gateway keeps no session state (any gateway instance accepts it, and a
//! new token ends every session), and the CSRF token derived from it.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie that carries the session.
pub const COOKIE: &str = "slipway_session";

/// How long a login lasts.
pub const LIFETIME_SECS: i64 = 12 * 60 * 60;

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(key: &str, purpose: &str, value: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `presented` is the API token (in constant time); an empty
/// token never matches.
pub fn token_matches(token: &str, presented: &str) -> bool {
    !token.is_empty() && same(token, presented)
}

/// A new session cookie value, valid until `now + LIFETIME_SECS`.
pub fn issue(token: &str, now: i64) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let body = format!("{}.{nonce}", now + LIFETIME_SECS);
    let sig = mac(token, "session", &body);
    format!("{body}.{sig}")
}

/// Whether the cookie value is a session this token signed that has not
/// expired at `now`.
pub fn valid(token: &str, cookie: &str, now: i64) -> bool {
    if token.is_empty() {
        return false;
    }
    let Some((body, sig)) = cookie.rsplit_once('.') else {
        return false;
    };
    let Some(expires) = body.split('.').next().and_then(|e| e.parse::<i64>().ok()) else {
        return false;
    };
    same(&mac(token, "session", body), sig) && now < expires
}

/// The CSRF token of a session: forms carry it, and state-changing requests
/// must present it. A page from another site cannot read it.
pub fn csrf(token: &str, cookie: &str) -> String {
    mac(token, "csrf", cookie)
}

/// `value` signed with the API token for `purpose` (a flash message).
pub fn sign(token: &str, purpose: &str, value: &str) -> String {
    mac(token, purpose, value)
}

/// Whether `sig` is [`sign`]'s signature of `value`; nothing is signed
/// without a token.
pub fn signed(token: &str, purpose: &str, value: &str, sig: &str) -> bool {
    !token.is_empty() && same(&mac(token, purpose, value), sig)
}

/// Whether a form's CSRF field belongs to this session.
pub fn csrf_matches(token: &str, cookie: &str, presented: &str) -> bool {
    same(&csrf(token, cookie), presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires() {
        let cookie = issue("tok", 1000);
        assert!(valid("tok", &cookie, 1000));
        assert!(valid("tok", &cookie, 1000 + LIFETIME_SECS - 1));
        assert!(!valid("tok", &cookie, 1000 + LIFETIME_SECS));
    }

    #[test]
    fn another_token_or_a_changed_cookie_is_refused() {
        let cookie = issue("tok", 1000);
        assert!(!valid("other", &cookie, 1000));
        assert!(!valid("", &cookie, 1000));
        let forged = cookie.replacen(&(1000 + LIFETIME_SECS).to_string(), "99999999999", 1);
        assert!(!valid("tok", &forged, 1000));
        assert!(!valid("tok", "garbage", 1000));
        assert!(!valid("tok", "", 1000));
    }

    #[test]
    fn csrf_tokens_are_per_session() {
        let a = issue("tok", 1000);
        let b = issue("tok", 1000);
        assert!(csrf_matches("tok", &a, &csrf("tok", &a)));
        assert!(!csrf_matches("tok", &b, &csrf("tok", &a)));
        assert!(!csrf_matches("tok", &a, ""));
    }

    #[test]
    fn signatures_hold_for_their_purpose_and_value_only() {
        let sig = sign("tok", "flash", "a.b");
        assert!(signed("tok", "flash", "a.b", &sig));
        assert!(!signed("tok", "flash", "a.c", &sig));
        assert!(!signed("tok", "csrf", "a.b", &sig));
        assert!(!signed("", "flash", "a.b", &mac("", "flash", "a.b")));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret", "secre"));
        assert!(!token_matches("", ""));
    }
}
