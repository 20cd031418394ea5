//! HTTP/1.1 wire handling: head parsing, body framing and streaming, header rules and
//! canned responses. Knows nothing of auth, ACL, cache or sockets beyond generic async
//! readers and writers.

pub mod answer;
pub mod body;
pub mod edits;
pub mod framing;
pub mod head;
pub mod headers;
pub mod io;
pub mod origin;
pub mod rewrite;
pub mod target;

pub use framing::BodyLength;
pub use head::{RequestHead, ResponseHead, Version};
pub use headers::{Header, Headers};
pub use io::Reader;
pub use target::RequestTarget;
