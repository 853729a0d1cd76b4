//! A Workload API connection with its caller pinned as it is accepted (issue 16; SPIFFE
//! Workload Endpoint §3: the caller is identified out of band): [`aims_peer`] reads the
//! kernel's view, this wraps the stream so each request sees it.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use aims_peer::{PeerCredentials, peer_of};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

/// An accepted Workload API connection, its caller pinned.
#[derive(Debug)]
pub struct PinnedStream {
    inner: UnixStream,
    peer: Option<PeerCredentials>,
}

impl PinnedStream {
    /// Pins the caller of `inner` as it is accepted.
    pub fn accept(inner: UnixStream) -> Self {
        let peer = peer_of(&inner, Path::new("/proc"));
        Self { inner, peer }
    }
}

/// What a request on a pinned connection knows of its caller.
#[derive(Debug, Clone)]
pub struct PinnedInfo {
    /// The caller, pinned at accept; `None` if the kernel gave no credentials.
    pub peer: Option<PeerCredentials>,
}

impl Connected for PinnedStream {
    type ConnectInfo = PinnedInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        PinnedInfo {
            peer: self.peer.clone(),
        }
    }
}

impl AsyncRead for PinnedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PinnedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
