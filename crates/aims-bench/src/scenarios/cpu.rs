//! CPU used during a measurement, in shares of one core: by given processes (user + system
//! time of all their threads, `/proc/<pid>/stat`) and by PostgreSQL. A throughput says how
//! fast; these say which process was the limit and what one request cost it.

use std::sync::OnceLock;
use std::time::Instant;

/// CPU time (user + system) of process `pid`, in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = s.get(s.rfind(')')? + 2..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// CPU ticks of every PostgreSQL process on this machine.
fn postgres_ticks() -> u64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(process_ticks)
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    static TICK: OnceLock<f64> = OnceLock::new();
    *TICK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A share of one core as a percentage.
pub fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// CPU used by some processes and PostgreSQL since [`CpuWatch::start`].
pub struct CpuWatch {
    pids: Vec<u32>,
    before: Vec<u64>,
    pg_before: u64,
    started: Instant,
}

impl CpuWatch {
    /// Starts watching `pids`.
    pub fn start(pids: Vec<u32>) -> Self {
        let before = pids.iter().map(|p| process_ticks(*p)).collect();
        Self {
            pids,
            before,
            pg_before: postgres_ticks(),
            started: Instant::now(),
        }
    }

    fn share(&self, ticks: u64) -> f64 {
        ticks as f64 / ticks_per_second() / self.started.elapsed().as_secs_f64()
    }

    /// Each watched process's share of one core, in the order given.
    pub fn processes(&self) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.before)
            .map(|(p, b)| self.share(process_ticks(*p).saturating_sub(*b)))
            .collect()
    }

    /// PostgreSQL's share of one core (all its processes).
    pub fn postgres(&self) -> f64 {
        self.share(postgres_ticks().saturating_sub(self.pg_before))
    }

    /// Each process's share joined by ` + `, then PostgreSQL's.
    pub fn shares(&self) -> (String, String) {
        let each: Vec<String> = self.processes().into_iter().map(percent).collect();
        (each.join(" + "), percent(self.postgres()))
    }
}
