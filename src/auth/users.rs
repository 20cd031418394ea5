//! The `--auth-file` users file: one `user:password` per line, the password in clear
//! text or as a bcrypt hash written by `htpasswd -nbB user pass`. Clear passwords are
//! kept only as a SHA-256 digest so they can be compared in constant time and never
//! printed; nothing in this module's `Debug` output reveals a secret.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::files::{FileErrors, LineError, WHOLE_FILE, content_lines};

/// Hash schemes that `htpasswd` can write but this proxy does not verify. Reading
/// them as clear-text passwords would silently lock the user out, so they are errors.
const UNSUPPORTED_HASH_PREFIXES: &[(&str, &str)] = &[
    ("$apr1$", "Apache MD5"),
    ("{SHA}", "SHA-1"),
    ("$1$", "MD5-crypt"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
];

/// How a user's password is stored.
#[derive(Clone)]
pub enum Secret {
    /// SHA-256 of the clear-text password.
    Clear([u8; 32]),
    /// A bcrypt hash (`$2y$`, `$2b$`, `$2a$`), checked at load time to be well-formed.
    Bcrypt(Arc<str>),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Clear(_) => f.write_str("Clear(<redacted>)"),
            Secret::Bcrypt(_) => f.write_str("Bcrypt(<redacted>)"),
        }
    }
}

/// The users of one users file, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, Secret>,
}

impl Users {
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.by_name.get(user)
    }

    /// One of the bcrypt hashes in the file, if any: checking an unknown user's password
    /// against it costs what checking a known user's does.
    pub fn a_bcrypt_hash(&self) -> Option<&Arc<str>> {
        self.by_name.values().find_map(|secret| match secret {
            Secret::Bcrypt(hash) => Some(hash),
            Secret::Clear(_) => None,
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// SHA-256 of `bytes`, the digest used for clear passwords and cache keys.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Reads a users file's text. Leading and trailing blanks of a line are ignored;
/// everything after the first `:` is the password, `#` and `:` included.
pub fn parse_users(text: &str, file: &str) -> Result<Users, FileErrors> {
    let mut by_name = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    for (line, content) in content_lines(text) {
        let error = |reason: String| LineError {
            file: file.to_string(),
            line,
            reason,
        };
        match parse_line(content) {
            Ok((user, secret)) => {
                if let Some(first) = first_line.get(&user) {
                    errors.push(error(format!(
                        "duplicate user {user:?} (first defined on line {first})"
                    )));
                    continue;
                }
                first_line.insert(user.clone(), line);
                by_name.insert(user, secret);
            }
            Err(reason) => errors.push(error(reason)),
        }
    }
    if errors.is_empty() {
        Ok(Users { by_name })
    } else {
        Err(FileErrors(errors))
    }
}

/// Reads and parses a users file. An unreadable file is one whole-file error.
pub fn load_users(path: &Path) -> Result<Users, FileErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_users(&text, &file),
        Err(e) => Err(FileErrors(vec![LineError {
            file,
            line: WHOLE_FILE,
            reason: format!("cannot read users file: {e}"),
        }])),
    }
}

/// One `user:password` line. Error messages name the user, never the password.
fn parse_line(content: &str) -> Result<(String, Secret), String> {
    let Some((user, password)) = content.split_once(':') else {
        return Err("expected user:password (no ':' on the line)".into());
    };
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if user.chars().any(char::is_control) {
        return Err("control character in user name".into());
    }
    if password.is_empty() {
        return Err(format!("empty password for user {user:?}"));
    }
    for (prefix, scheme) in UNSUPPORTED_HASH_PREFIXES {
        if password.starts_with(prefix) {
            return Err(format!(
                "user {user:?}: {scheme} hashes are not supported; use bcrypt (htpasswd -nbB)"
            ));
        }
    }
    let secret = if password.starts_with("$2") {
        if bcrypt::HashParts::from_str(password).is_err() {
            return Err(format!("user {user:?}: malformed bcrypt hash"));
        }
        Secret::Bcrypt(Arc::from(password))
    } else {
        Secret::Clear(sha256(password.as_bytes()))
    };
    Ok((user.to_string(), secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u";

    fn errors(text: &str) -> Vec<String> {
        match parse_users(text, "users.txt") {
            Ok(_) => panic!("expected errors"),
            Err(FileErrors(e)) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn clear_and_bcrypt_users() {
        let text = format!("# users\n\nalice:s3cret\nbob:{HASH}\n  carol:pa:ss#word  \n");
        let users = parse_users(&text, "users.txt").unwrap();
        assert_eq!(users.len(), 3);
        assert!(matches!(users.get("alice"), Some(Secret::Clear(d)) if *d == sha256(b"s3cret")));
        assert!(matches!(users.get("bob"), Some(Secret::Bcrypt(h)) if &**h == HASH));
        assert!(
            matches!(users.get("carol"), Some(Secret::Clear(d)) if *d == sha256(b"pa:ss#word")),
            "password keeps ':' and '#' after the first colon"
        );
        assert!(users.get("mallory").is_none());
    }

    #[test]
    fn bad_lines_with_numbers() {
        let text = "alice:pw-one-xyz\n\
                    nocolon\n\
                    :nouser\n\
                    alice:pw-two-xyz\n\
                    dave:\n\
                    erin:$apr1$xyz$def\n\
                    frank:$2y$05$tooshort\n";
        let errs = errors(text);
        let want = [
            ("users.txt:2: ", "no ':'"),
            ("users.txt:3: ", "empty user name"),
            (
                "users.txt:4: ",
                "duplicate user \"alice\" (first defined on line 1)",
            ),
            ("users.txt:5: ", "empty password"),
            ("users.txt:6: ", "Apache MD5"),
            ("users.txt:7: ", "malformed bcrypt hash"),
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (err, (prefix, reason)) in errs.iter().zip(want) {
            assert!(err.starts_with(prefix) && err.contains(reason), "{err}");
        }
        assert!(!errs.concat().contains("xyz"), "no password in any message");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let users = parse_users(&format!("alice:hunter2\nbob:{HASH}\n"), "u").unwrap();
        let shown = format!("{users:?}");
        assert!(shown.contains("alice") && shown.contains("<redacted>"));
        assert!(!shown.contains("hunter2") && !shown.contains("L6Bc"));
    }

    #[test]
    fn unreadable_file() {
        let Err(FileErrors(e)) = load_users(Path::new("/nonexistent/users.txt")) else {
            panic!("missing file must fail");
        };
        assert!(
            e[0].to_string()
                .starts_with("/nonexistent/users.txt: cannot read users file")
        );
    }
}
