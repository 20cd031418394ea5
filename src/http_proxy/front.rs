//! The HTTP/1.1 front end's answers, as the exchange pipeline asks for them
//! ([`FrontEnd`]): `200 Connection Established` opens a tunnel (the bytes the client
//! sent behind its CONNECT head are relayed, not lost), a refusal is the catalogue's
//! status line and short body, and the connection closes after it.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;

use crate::client::ClientStream;
use crate::conn::FrontEnd;
use crate::error::ProxyError;
use crate::http::{Reader, answer};
use crate::upstream::Arrival;

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// One HTTP/1.1 client connection, as the pipeline sees it, and the name its answers'
/// `Proxy-Status` gives the proxy (the Via name).
pub(super) struct Http1<'a>(pub &'a mut Reader<ClientStream>, pub &'a str);

impl FrontEnd for Http1<'_> {
    type Io = ClientStream;

    fn arrival(&self) -> &dyn Arrival {
        self.0.get_ref()
    }

    fn io(&mut self) -> &mut ClientStream {
        self.0.get_mut()
    }

    async fn open(&mut self, _bound: SocketAddr) -> io::Result<u64> {
        self.0.get_mut().write_all(ESTABLISHED).await?;
        Ok(ESTABLISHED.len() as u64)
    }

    async fn refuse(&mut self, error: &ProxyError) -> u64 {
        let Some(answer) = answer::for_error(self.1, error) else {
            return 0;
        };
        let stream = self.0.get_mut();
        if stream.write_all(&answer).await.is_err() {
            return 0;
        }
        let _ = stream.shutdown().await;
        answer.len() as u64
    }

    fn early(&mut self) -> Bytes {
        self.0.take(usize::MAX)
    }
}
