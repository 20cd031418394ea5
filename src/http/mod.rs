//! HTTP/1.1 wire handling: head parsing, body framing, header rules and canned responses.
//! Knows nothing of auth, ACL, cache or sockets beyond generic async readers and writers.

pub mod headers;

pub use headers::{Header, Headers};
