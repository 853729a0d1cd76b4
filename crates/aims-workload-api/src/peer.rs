//! The process at the other end of a Workload API connection, pinned when the connection is
//! accepted (issue 16; SPIFFE Workload Endpoint §3: the caller is identified out of band).
//!
//! `SO_PEERCRED` names the PID that called `connect()`. Read later, `/proc/<pid>` may describe
//! another process: the caller may have exited and its PID been reused, or it may have
//! `exec`'d another program (its fork children keep the socket). So at accept the agent opens
//! a pidfd for the PID and notes its start time and the device and inode of its executable;
//! attestation later requires the same process (start time), still alive (pidfd), running the
//! same executable. What remains is the moment between `connect()` and accept, which only
//! `SO_PEERPIDFD` (Linux 6.5) closes and which safe Rust cannot read here: see SECURITY.md.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

use crate::provider::PeerCredentials;

/// The process start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`).
pub fn process_start_time(proc_root: &Path, pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))?;
    let malformed = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat");
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let (_, after) = stat.rsplit_once(')').ok_or_else(malformed)?;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(malformed)
}

/// Device and inode of the executable a process runs.
pub fn executable_of(proc_root: &Path, pid: i32) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(proc_root.join(pid.to_string()).join("exe"))?;
    Ok((meta.dev(), meta.ino()))
}

/// A process as it was when its connection was accepted.
#[derive(Debug)]
pub struct ProcessPin {
    /// Its start time.
    pub start_time: u64,
    /// Its executable (device, inode), when it could be read.
    pub executable: Option<(u64, u64)>,
    /// A pidfd for it: readable once it exits.
    pidfd: Option<OwnedFd>,
}

impl ProcessPin {
    /// Pins `pid` now; `None` if it is already gone.
    pub fn capture(proc_root: &Path, pid: i32) -> Option<Self> {
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let start_time = process_start_time(proc_root, pid).ok()?;
        Some(Self {
            start_time,
            executable: executable_of(proc_root, pid).ok(),
            pidfd,
        })
    }

    /// Whether the pinned process has exited (then its PID may name a stranger). Without a
    /// pidfd (an old kernel), `false`: the start time check still applies.
    pub fn exited(&self) -> bool {
        let Some(fd) = &self.pidfd else {
            return false;
        };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }
}

/// The peer credentials of `stream`, with its process pinned (reading `proc_root`).
pub fn peer_of(stream: &UnixStream, proc_root: &Path) -> Option<PeerCredentials> {
    let cred = stream.peer_cred().ok()?;
    let pid = cred.pid().filter(|p| *p > 0);
    Some(PeerCredentials {
        pid,
        uid: cred.uid(),
        gid: cred.gid(),
        pin: pid.and_then(|p| ProcessPin::capture(proc_root, p).map(Arc::new)),
    })
}

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
