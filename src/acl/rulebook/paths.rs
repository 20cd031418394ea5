//! A rule's `paths` condition: request paths as patterns in which `*` matches any run of
//! characters (`/admin/*`, `/api/*/upload`), compared with the path of the request
//! without its query. Both sides are normalised the same way first, so that spellings
//! an origin reads as the same path cannot slip past a deny rule: percent-encoded
//! unreserved characters are decoded (`/%61dmin` is `/admin`, RFC 3986 §6.2.2.2) and dot
//! segments are removed (`/public/../admin` is `/admin`, §5.2.4 and §6.2.2.3).
//! Case is kept: paths are case-sensitive (§6.2.2.1).

use std::borrow::Cow;

/// One `paths` entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Box<str>);

impl PathPattern {
    /// A pattern as the policy file writes it: starts with `/`, no query.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with `/`"));
        }
        if text.contains(['?', '#']) {
            return Err(format!(
                "{text:?}: the query is not part of the path; leave it out"
            ));
        }
        if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "{text:?}: a path is ASCII without spaces (percent-encode the rest)"
            ));
        }
        Ok(PathPattern(normalise_path(text).into_owned().into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (already normalised) matches.
    pub fn matches(&self, path: &str) -> bool {
        wildcard_match(self.0.as_bytes(), path.as_bytes())
    }
}

/// The path of a request target (`/a/b?q`) as rules compare it: the query cut off,
/// unreserved characters decoded, dot segments removed. Borrows when there is nothing
/// to change, which is the common case.
pub fn normalise_path(target: &str) -> Cow<'_, str> {
    let path = match target.find(['?', '#']) {
        Some(end) => &target[..end],
        None => target,
    };
    let decoded = decode_unreserved(path);
    if !has_dot_segment(&decoded) {
        return decoded;
    }
    Cow::Owned(remove_dot_segments(&decoded))
}

fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            None => {
                // The path is ASCII (the HTTP front end sees to it), so bytes are chars.
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments dropped, `..` removes the one
/// before it (never above the root); a trailing `.` or `..` leaves a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    kept.pop();
                }
                if index == last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `*` matches any run of bytes, every other byte itself. Greedy with one backtrack
/// point (the last `*`), so it costs at most pattern × path steps and usually one pass.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, target: &str) -> bool {
        PathPattern::parse(pattern)
            .unwrap()
            .matches(&normalise_path(target))
    }

    #[test]
    fn star_matches_any_run_and_the_query_is_not_the_path() {
        assert!(matches("/admin/*", "/admin/x"));
        assert!(matches("/admin/*", "/admin/"));
        assert!(matches("/admin/*", "/admin/a/b?x=1"));
        assert!(!matches("/admin/*", "/admin"));
        assert!(!matches("/admin/*", "/public?next=/admin/x"));
        assert!(matches("/api/v1/upload", "/api/v1/upload?big=1"));
        assert!(!matches("/api/v1/upload", "/api/v1/upload/more"));
        assert!(matches("/api/*/upload", "/api/v2/x/upload"));
        assert!(matches("/*.php", "/app/index.php"));
        assert!(matches("/a*b*c", "/aXbYbZc"));
        assert!(!matches("/a*b*c", "/aXbYbZ"));
        assert!(!matches("/Admin/*", "/admin/x"), "paths are case-sensitive");
    }

    #[test]
    fn spellings_an_origin_reads_as_the_same_path_match() {
        assert!(matches("/admin/*", "/%61dmin/x"));
        assert!(matches("/admin/*", "/public/../admin/x"));
        assert!(matches("/admin/*", "/./admin/./x"));
        assert!(
            matches("/admin/*", "/%2e%2e/admin/x"),
            "encoded dots are dots"
        );
        assert!(
            matches("/admin/*", "/../../admin/x"),
            "never above the root"
        );
        assert!(
            !matches("/admin/*", "/admin%2Fx"),
            "an encoded slash is not a slash"
        );
        assert_eq!(normalise_path("/a/b/.."), "/a/");
        assert_eq!(normalise_path("/.."), "/");
        assert!(matches!(
            normalise_path("/plain/path?q"),
            Cow::Borrowed("/plain/path")
        ));
    }

    #[test]
    fn patterns_start_with_a_slash_and_have_no_query() {
        assert!(PathPattern::parse("admin/*").is_err());
        assert!(PathPattern::parse("/search?q=*").is_err());
        assert!(PathPattern::parse("/a b").is_err());
        assert_eq!(
            PathPattern::parse("/%7Euser/*").unwrap().as_str(),
            "/~user/*"
        );
    }
}
