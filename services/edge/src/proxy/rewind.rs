//! A connection with bytes already read from it put back in front: what followed the
//! PROXY header in the same reads (the first SMPP PDUs, or the TLS ClientHello).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads `head` first, then `inner`; writes go to `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    head: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(head: Bytes, inner: S) -> Self {
        Self { head, inner }
    }

    /// `inner` with nothing in front.
    pub fn plain(inner: S) -> Self {
        Self::new(Bytes::new(), inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head.has_remaining() {
            let n = this.head.len().min(buf.remaining());
            buf.put_slice(&this.head[..n]);
            this.head.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_head_comes_first_then_the_connection_in_order() {
        let (mut peer, inner) = tokio::io::duplex(64);
        let mut s = Rewind::new(Bytes::from_static(b"abcdef"), inner);
        peer.write_all(b"ghi").await.expect("write");
        drop(peer);
        // A small buffer takes the head in parts.
        let mut small = [0u8; 4];
        assert_eq!(s.read(&mut small).await.expect("read"), 4);
        assert_eq!(&small, b"abcd");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"efghi");
    }

    #[tokio::test]
    async fn writes_reach_the_connection() {
        let (mut peer, inner) = tokio::io::duplex(64);
        let mut s = Rewind::plain(inner);
        s.write_all(b"out").await.expect("write");
        s.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"out");
    }
}
