//! The JWT ExaFS hands out for an API key, and when to stop reusing it.
//!
//! netban does not verify the token (ExaFS does, with its own secret); it only reads the
//! payload's `exp` claim to know when to fetch a new one. ExaFS computes `exp` from its local
//! time, so on a server not running in UTC the claim can be hours off: the token is then
//! simply renewed when ExaFS answers 401.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Renew this long before `exp`, so a request never leaves with a token about to lapse.
pub const RENEW_BEFORE_SECS: i64 = 60;

/// A token and the time (epoch seconds) after which it is not reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    /// `exp` minus [`RENEW_BEFORE_SECS`], or `None` when the payload has no readable `exp`
    /// (then the token is reused until ExaFS answers 401).
    pub renew_at: Option<i64>,
}

impl Token {
    pub fn new(value: String) -> Token {
        let renew_at = expiry_claim(&value).map(|exp| exp.saturating_sub(RENEW_BEFORE_SECS));
        Token { value, renew_at }
    }

    pub fn usable_at(&self, now: i64) -> bool {
        self.renew_at.is_none_or(|t| now < t)
    }
}

/// The `exp` claim (epoch seconds) of a JWT, read without verifying the signature.
pub fn expiry_claim(jwt: &str) -> Option<i64> {
    let mut parts = jwt.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a signature part must be there
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = &claims["exp"];
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload.as_bytes())
        )
    }

    #[test]
    fn reads_exp_without_verifying() {
        assert_eq!(
            expiry_claim(&jwt(r#"{"user":{"id":1},"exp":1795241791}"#)),
            Some(1795241791)
        );
        assert_eq!(expiry_claim(&jwt(r#"{"exp":17.9}"#)), Some(17));
        // Padding some encoders add is tolerated.
        let padded = format!("a.{}==.s", URL_SAFE_NO_PAD.encode(br#"{"exp":5}"#));
        assert_eq!(expiry_claim(&padded), Some(5));
    }

    #[test]
    fn unreadable_tokens_have_no_expiry() {
        for bad in [
            "",
            "abc",
            "a.b",
            "a.!!!.c",
            &jwt(r#"{"user":1}"#),
            &jwt("not json"),
        ] {
            assert_eq!(expiry_claim(bad), None, "{bad}");
        }
    }

    #[test]
    fn reuse_until_shortly_before_exp() {
        let t = Token::new(jwt(r#"{"exp":1000}"#));
        assert_eq!(t.renew_at, Some(1000 - RENEW_BEFORE_SECS));
        assert!(t.usable_at(900));
        assert!(!t.usable_at(940));
        assert!(!t.usable_at(2000));
        let forever = Token::new("opaque".into());
        assert!(forever.usable_at(i64::MAX));
    }

    #[test]
    fn an_exp_at_the_end_of_the_range_does_not_overflow() {
        // `-1e19` reads as i64::MIN, and subtracting the renewal margin overflowed (a panic in
        // debug builds; the exafs fuzz target, fuzz/corpus/exafs/exp-far-past).
        let past = Token::new(jwt(r#"{"exp":-1e19}"#));
        assert_eq!(past.renew_at, Some(i64::MIN));
        assert!(!past.usable_at(0));
        let future = Token::new(jwt(r#"{"exp":1e19}"#));
        assert_eq!(future.renew_at, Some(i64::MAX - RENEW_BEFORE_SECS));
    }
}
