//! The `unix` workload attestor: selectors from the kernel's peer credentials (SO_PEERCRED) of
//! the Workload API caller and from `/proc/<pid>`.
//!
//! Selectors: `unix:uid:<n>`, `unix:gid:<n>`, `unix:user:<name>`, `unix:group:<name>` from the
//! credentials; with a PID, `unix:path:<executable>` and `unix:sha256:<hex digest of the running
//! executable>`. The digest is read through `/proc/<pid>/exe`, so it is the binary actually
//! running, even if the file on disk was replaced after the process started.
//!
//! PID reuse and `exec`: the kernel records the peer's PID at `connect()`. If that process exits
//! and the PID is reused, `/proc/<pid>` describes a stranger; if it `exec`s another program, its
//! fork children still hold the socket. The Workload API pins the caller as the connection is
//! accepted ([`aims_peer::ProcessPin`]: a pidfd, the start time, the executable's
//! device and inode). The attestor requires the same start time before and after gathering
//! evidence, the same executable as at accept, the pinned process still alive afterwards, and
//! the process's real and effective uid and gid in `/proc/<pid>/status` equal to the peer
//! credentials; a process that changed underneath is refused, never attested.
//!
//! What `path` and `sha256` separate: which program a process of that uid was running when it
//! connected. They do not separate what that program was told to do: anything running as the
//! same uid can start the program itself (with its own arguments, environment, `LD_PRELOAD`,
//! or under `ptrace`) and so obtain its identity. Give agents that must not share an identity
//! different uids; use `path`/`sha256` to narrow within one.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Mutex;

use aims_peer::PeerCredentials;
use aims_peer::{ProcessPin, executable_of, process_start_time};
use aims_store::Selector;

use super::{AttestError, WorkloadAttestor};

/// The largest executable hashed (1 GiB); a bigger one gets no `sha256` selector.
const MAX_DIGEST_BYTES: u64 = 1 << 30;
/// Digests remembered, keyed by the executable's device, inode, size and modification time.
const DIGEST_CACHE: usize = 1024;

/// What identifies an executable's contents without reading them: device, inode, size and
/// modification time (seconds, nanoseconds).
type FileVersion = (u64, u64, u64, i64, i64);

/// The `unix` attestor.
pub struct UnixAttestor {
    proc_root: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    digests: Mutex<HashMap<FileVersion, String>>,
}

impl Default for UnixAttestor {
    fn default() -> Self {
        Self::new()
    }
}

fn selector(value: String) -> Selector {
    Selector {
        kind: "unix".into(),
        value,
    }
}

/// The name for `id` in an `/etc/passwd`- or `/etc/group`-format file.
fn name_for(file: &PathBuf, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let n: u32 = fields.next()?.parse().ok()?;
        (n == id && !name.is_empty()).then(|| name.to_owned())
    })
}

impl UnixAttestor {
    /// An attestor reading `/proc`, `/etc/passwd` and `/etc/group`.
    pub fn new() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// The process start time (clock ticks after boot).
    fn start_time(&self, pid: i32) -> Result<u64, AttestError> {
        process_start_time(&self.proc_root, pid).map_err(|_| AttestError::ProcessChanged(pid))
    }

    /// The process as pinned at accept: the same start time and executable, and alive.
    fn check_pin(&self, pid: i32, pin: Option<&ProcessPin>) -> Result<(), AttestError> {
        // A PID without a pin: the process was gone when its connection was accepted.
        let pin = pin.ok_or(AttestError::ProcessChanged(pid))?;
        if self.start_time(pid)? != pin.start_time || pin.exited() {
            return Err(AttestError::ProcessChanged(pid));
        }
        let now = executable_of(&self.proc_root, pid).ok();
        if now.is_none() || now != pin.executable {
            return Err(AttestError::Mismatch(format!(
                "process {pid} runs another executable than when it connected (exec)"
            )));
        }
        Ok(())
    }

    /// Checks that `/proc/<pid>/status` shows the peer's uid and gid (real and effective).
    fn check_ids(&self, pid: i32, peer: &PeerCredentials) -> Result<(), AttestError> {
        let status = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("status"))
            .map_err(|_| AttestError::ProcessChanged(pid))?;
        let ids = |key: &str| -> Vec<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|rest| {
                    rest.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (uids, gids) = (ids("Uid:"), ids("Gid:"));
        if uids.get(..2) != Some(&[peer.uid, peer.uid][..]) {
            return Err(AttestError::Mismatch(format!(
                "uids {uids:?}, peer uid {}",
                peer.uid
            )));
        }
        if gids.get(..2) != Some(&[peer.gid, peer.gid][..]) {
            return Err(AttestError::Mismatch(format!(
                "gids {gids:?}, peer gid {}",
                peer.gid
            )));
        }
        Ok(())
    }

    fn executable_selectors(&self, pid: i32) -> Result<Vec<Selector>, AttestError> {
        let exe = self.proc_root.join(pid.to_string()).join("exe");
        let target = std::fs::read_link(&exe).map_err(|_| AttestError::ProcessChanged(pid))?;
        let mut out = Vec::with_capacity(2);
        let path = target.to_string_lossy().into_owned();
        // A replaced or deleted binary shows as "… (deleted)": its path no longer names it.
        if !path.ends_with(" (deleted)") {
            out.push(selector(format!("path:{path}")));
        }
        let meta = std::fs::metadata(&exe).map_err(|_| AttestError::ProcessChanged(pid))?;
        if meta.len() > MAX_DIGEST_BYTES {
            return Ok(out);
        }
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let cached = self.digests.lock().ok().and_then(|c| c.get(&key).cloned());
        let digest = match cached {
            Some(d) => d,
            None => {
                let mut file =
                    std::fs::File::open(&exe).map_err(|_| AttestError::ProcessChanged(pid))?;
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file
                        .read(&mut buf)
                        .map_err(|e| AttestError::Unreadable(format!("executable: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                }
                let d = hex::encode(ctx.finish());
                if let Ok(mut c) = self.digests.lock() {
                    if c.len() >= DIGEST_CACHE {
                        c.clear();
                    }
                    c.insert(key, d.clone());
                }
                d
            }
        };
        out.push(selector(format!("sha256:{digest}")));
        Ok(out)
    }
}

impl WorkloadAttestor for UnixAttestor {
    fn kind(&self) -> &'static str {
        "unix"
    }

    fn attest(&self, peer: &PeerCredentials) -> Result<Vec<Selector>, AttestError> {
        let mut out = vec![
            selector(format!("uid:{}", peer.uid)),
            selector(format!("gid:{}", peer.gid)),
        ];
        if let Some(user) = name_for(&self.passwd, peer.uid) {
            out.push(selector(format!("user:{user}")));
        }
        if let Some(group) = name_for(&self.group, peer.gid) {
            out.push(selector(format!("group:{group}")));
        }
        // PID 0 means the kernel could not map the peer into our PID namespace: the uid and gid
        // still hold, but nothing can be said about its executable.
        if let Some(pid) = peer.pid.filter(|p| *p > 0) {
            let pin = peer.pin.as_deref();
            self.check_pin(pid, pin)?;
            self.check_ids(pid, peer)?;
            out.extend(self.executable_selectors(pid)?);
            self.check_pin(pid, pin)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> PeerCredentials {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let first = |k: &str| -> u32 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let pid = std::process::id() as i32;
        PeerCredentials {
            pid: Some(pid),
            uid: first("Uid:"),
            gid: first("Gid:"),
            pin: ProcessPin::capture(std::path::Path::new("/proc"), pid).map(std::sync::Arc::new),
        }
    }

    /// Issue 16: a caller that connects, then `exec`s another program (a fork child keeping the
    /// socket), is refused: its executable is not the one it connected with.
    #[test]
    fn refuses_a_caller_that_execs_after_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let script = format!(
                "import socket, os, time\n\
                 s = socket.socket(socket.AF_UNIX)\n\
                 s.connect({path:?})\n\
                 os.set_inheritable(s.fileno(), True)\n\
                 time.sleep(0.5)\n\
                 os.execv('/bin/sleep', ['sleep', '5'])\n",
                path = path.to_str().unwrap()
            );
            let mut child = std::process::Command::new("python3")
                .args(["-c", &script])
                .spawn()
                .unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let peer = aims_peer::peer_of(&stream, std::path::Path::new("/proc")).unwrap();
            let a = UnixAttestor::new();
            // As it connected: attested as python.
            let before = a.attest(&peer).unwrap();
            assert!(
                before
                    .iter()
                    .any(|s| s.value.starts_with("path:") && s.value.contains("python")),
                "{before:?}"
            );
            // After its exec: refused, never attested as /bin/sleep.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let err = loop {
                match a.attest(&peer) {
                    Err(e) => break e,
                    Ok(_) => {
                        assert!(std::time::Instant::now() < deadline, "never refused");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            };
            assert!(matches!(err, AttestError::Mismatch(_)), "{err}");
            let _ = child.kill();
            let _ = child.wait();
        });
    }

    #[test]
    fn attests_this_process() {
        let a = UnixAttestor::new();
        let peer = me();
        let sels = a.attest(&peer).unwrap();
        let values: Vec<String> = sels.iter().map(ToString::to_string).collect();
        assert!(
            values.contains(&format!("unix:uid:{}", peer.uid)),
            "{values:?}"
        );
        assert!(values.contains(&format!("unix:gid:{}", peer.gid)));
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(values.contains(&format!("unix:path:{}", exe.display())));
        let digest = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &std::fs::read(&exe).unwrap(),
        ));
        assert!(values.contains(&format!("unix:sha256:{digest}")));
        // Cached the second time, same answer.
        assert_eq!(a.attest(&peer).unwrap(), sels);
    }

    #[test]
    fn refuses_mismatched_credentials_and_missing_processes() {
        let a = UnixAttestor::new();
        let mut peer = me();
        peer.uid = peer.uid.wrapping_add(4242);
        assert!(matches!(a.attest(&peer), Err(AttestError::Mismatch(_))));
        let gone = PeerCredentials {
            pid: Some(i32::MAX - 7),
            ..me()
        };
        assert!(matches!(
            a.attest(&gone),
            Err(AttestError::ProcessChanged(_))
        ));
        // Without a PID only the credential selectors are given.
        let no_pid = PeerCredentials { pid: None, ..me() };
        assert!(
            a.attest(&no_pid)
                .unwrap()
                .iter()
                .all(|s| s.value.starts_with("uid:")
                    || s.value.starts_with("gid:")
                    || s.value.starts_with("user:")
                    || s.value.starts_with("group:"))
        );
    }

    #[test]
    fn names_come_from_passwd_and_group_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "# comment\nroot:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(
            name_for(&dir.path().join("passwd"), 1000).as_deref(),
            Some("alice")
        );
        assert_eq!(name_for(&dir.path().join("passwd"), 7), None);
        assert_eq!(name_for(&dir.path().join("missing"), 0), None);
    }
}
