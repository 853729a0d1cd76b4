//! The kernel's view of a local peer process: who is on the other end of a Unix socket
//! (`SO_PEERCRED`), and that process pinned when the connection was accepted. It is the input
//! of workload attestation (AIMS §8), below both the Workload API that accepts the connection
//! and the attestors that read it (issue 23: the API that serves attestation's result does not
//! also define its input).
//!
//! `SO_PEERCRED` names the PID that called `connect()`. Read later, `/proc/<pid>` may describe
//! another process: the caller may have exited and its PID been reused, or it may have
//! `exec`'d another program (its fork children keep the socket). So at accept the agent opens
//! a pidfd for the PID and notes its start time and the device and inode of its executable;
//! attestation later requires the same process (start time), still alive (pidfd), running the
//! same executable. What remains is the moment between `connect()` and accept, which only
//! `SO_PEERPIDFD` (Linux 6.5) closes and which safe Rust cannot read here: see SECURITY.md.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixStream;

/// The kernel's view of the process on the other end of the socket (SO_PEERCRED), and that
/// process as it was when the connection was accepted.
#[derive(Debug, Clone)]
pub struct PeerCredentials {
    /// The peer's process id, when the kernel can map it into our PID namespace.
    pub pid: Option<i32>,
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
    /// The process pinned at accept (`None`: no PID, or the process was already gone).
    pub pin: Option<Arc<ProcessPin>>,
}

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
