//! Reading a `Proxy-Authorization` field value (RFC 9110 §11.7.1) in the Basic scheme
//! (RFC 7617 §2): `Basic base64(user-id ":" password)`. The decoded bytes are held
//! only as long as the check needs them, and `Debug` never shows the password.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::AuthError;

/// Standard base64 that accepts the token with or without `=` padding: RFC 7617
/// requires padding, but some clients drop it and nothing is gained by refusing them.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decoded Basic credentials: the raw `user:password` bytes, valid UTF-8, with the
/// position of the first colon (RFC 7617 §2: a user-id cannot contain one).
pub struct Credentials {
    raw: String,
    colon: usize,
}

impl Credentials {
    pub fn parse(field: &[u8]) -> Result<Credentials, AuthError> {
        let field = field.trim_ascii();
        let split = field.iter().position(|b| *b == b' ' || *b == b'\t');
        let (scheme, token) = match split {
            Some(i) => (&field[..i], field[i..].trim_ascii()),
            None => (field, &b""[..]),
        };
        // Auth-scheme names are case-insensitive (RFC 9110 §11.1).
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Err(AuthError::Malformed("scheme is not Basic"));
        }
        if token.is_empty() {
            return Err(AuthError::Malformed("no credentials after Basic"));
        }
        let decoded = BASE64
            .decode(token)
            .map_err(|_| AuthError::Malformed("credentials are not valid base64"))?;
        let raw = String::from_utf8(decoded)
            .map_err(|_| AuthError::Malformed("credentials are not UTF-8"))?;
        let colon = raw
            .find(':')
            .ok_or(AuthError::Malformed("credentials have no ':'"))?;
        Ok(Credentials { raw, colon })
    }

    /// Credentials given as a user name and a password (SOCKS5, RFC 1929 §2), checked
    /// like Basic ones: UTF-8, and no colon in the user name (none is in the users file).
    pub fn from_parts(user: &[u8], password: &[u8]) -> Result<Credentials, AuthError> {
        let user = std::str::from_utf8(user)
            .map_err(|_| AuthError::Malformed("user name is not UTF-8"))?;
        let password = std::str::from_utf8(password)
            .map_err(|_| AuthError::Malformed("password is not UTF-8"))?;
        if user.contains(':') {
            return Err(AuthError::Rejected {
                user: user.to_string(),
            });
        }
        Ok(Credentials {
            raw: format!("{user}:{password}"),
            colon: user.len(),
        })
    }

    pub fn user(&self) -> &str {
        &self.raw[..self.colon]
    }

    pub fn password(&self) -> &str {
        &self.raw[self.colon + 1..]
    }

    /// The whole decoded `user:password`, for the verification-cache digest.
    pub fn raw(&self) -> &[u8] {
        self.raw.as_bytes()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user())
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(scheme: &str, plain: &[u8]) -> Vec<u8> {
        format!(
            "{scheme} {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        )
        .into_bytes()
    }

    fn malformed(field: &[u8]) -> &'static str {
        match Credentials::parse(field) {
            Err(AuthError::Malformed(why)) => why,
            other => panic!("expected Malformed for {field:?}, got {other:?}"),
        }
    }

    #[test]
    fn basic_in_any_case_with_odd_spacing() {
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let c = Credentials::parse(&header(scheme, b"alice:pa:ss")).unwrap();
            assert_eq!((c.user(), c.password()), ("alice", "pa:ss"));
        }
        let c = Credentials::parse(b"  Basic \t YWxpY2U6eA==  ").unwrap();
        assert_eq!((c.user(), c.password()), ("alice", "x"));
        let unpadded = Credentials::parse(b"Basic YWxpY2U6eA").unwrap();
        assert_eq!(unpadded.password(), "x");
    }

    #[test]
    fn empty_user_or_password_still_parse() {
        let c = Credentials::parse(&header("Basic", b":")).unwrap();
        assert_eq!((c.user(), c.password()), ("", ""));
    }

    #[test]
    fn every_malformed_form() {
        assert_eq!(
            malformed(&header("Bearer", b"alice:x")),
            "scheme is not Basic"
        );
        assert_eq!(malformed(b"Digest username=\"a\""), "scheme is not Basic");
        assert_eq!(malformed(b""), "scheme is not Basic");
        assert_eq!(malformed(b"Basic"), "no credentials after Basic");
        assert_eq!(malformed(b"Basic    "), "no credentials after Basic");
        assert_eq!(
            malformed(b"Basic !!!notbase64"),
            "credentials are not valid base64"
        );
        assert_eq!(
            malformed(b"Basic YWxp Y2U6eA=="),
            "credentials are not valid base64"
        );
        assert_eq!(
            malformed(&header("Basic", b"alice")),
            "credentials have no ':'"
        );
        assert_eq!(
            malformed(&header("Basic", b"al\xffce:x")),
            "credentials are not UTF-8"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::parse(&header("Basic", b"alice:hunter2")).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("alice") && !shown.contains("hunter2"));
    }
}
