//! `aims-bench`: the AIMS benchmark harness.
//!
//! Every scenario measures its baseline in the same run and reports ratios, so figures compare
//! across machines and across noisy runs. Results print as a table and are written as JSON and
//! an SVG chart per scenario.
#![forbid(unsafe_code)]

mod load;
mod measure;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::measure::Timing;

/// The scenarios, in the order `all` runs them.
const SCENARIOS: &[&str] = &[
    "svid",
    "jwt-svid",
    "mtls",
    "wpt",
    "httpsig",
    "workload-api",
    "token",
    "token-exchange",
    "txn-token",
    "gateway",
    "audit",
    "revocation",
    "policy",
    "scale",
    "replicas",
    "sync",
    "people",
    "pdp",
];

/// Run AIMS benchmarks.
#[derive(Parser)]
#[command(name = "aims-bench", version)]
struct Args {
    /// Scenarios to run (default: all): svid, jwt-svid, mtls, wpt, httpsig, workload-api
    /// (needs `cargo build --release -p aims` first), token (the token endpoint against node
    /// oidc-provider; needs the `aims` binary, Node.js with npm, and taskset), gateway (the
    /// enforcement gateway against the tool called directly; needs the `aims` binary and
    /// taskset), audit (durable appends on SQLite and PostgreSQL, checkpoint lag, inclusion
    /// proofs at 10 million entries; PostgreSQL at AIMS_TEST_POSTGRES_URL), revocation
    /// (operator revoke → gateway refuses; needs the `aims` binary), policy (policy apply →
    /// the gateway decides with the new version; needs the `aims` binary), token-exchange and
    /// txn-token (those grants alone; need the `aims` binary and taskset), pdp (Cedar decisions
    /// in process), scale (the token endpoint on 1 and 2 cores, over an empty store and one
    /// with 10,000 clients and 100,000 revoked principals; needs the `aims` binary and
    /// taskset), people (consent and
    /// approvals pages under 100 sessions, CIBA approval → token; needs the `aims` binary and
    /// taskset), replicas (the token endpoint on 1–3 `aims server` replicas sharing
    /// PostgreSQL, with each process's CPU; needs the `aims` binary, taskset and PostgreSQL on
    /// 127.0.0.1:5432), sync (1,000 agents with incremental sync streams over 10,000 entries:
    /// store statements at rest and per change, entry change → SVID; same needs as replicas).
    scenarios: Vec<String>,
    /// Measured seconds per row and repetition.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Warm-up seconds per row.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Repetitions per scenario; each row reports its median repetition.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Where to write JSON and SVG results.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let timing = Timing {
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.seconds),
        reps: args.reps,
    };
    let selected: Vec<&str> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        args.scenarios.iter().map(String::as_str).collect()
    };
    let machine = report::Machine::current();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!(
        "aims-bench on {} ({} CPUs), {}s per row",
        machine.cpu, machine.cpus, args.seconds
    );
    let mut tables = String::new();
    for name in selected {
        eprintln!("scenario {name}:");
        let mut r = match name {
            "svid" => scenarios::credentials::svid(timing)?,
            "jwt-svid" => scenarios::credentials::jwt_svid(timing)?,
            "mtls" => scenarios::authn::mtls(timing)?,
            "wpt" => scenarios::authn::wpt(timing)?,
            "httpsig" => scenarios::authn::httpsig(timing)?,
            "workload-api" => scenarios::workload::workload_api(timing)?,
            "token" => scenarios::oauth::token(timing)?,
            "token-exchange" | "txn-token" => scenarios::oauth::delegation(timing, name)?,
            "gateway" => scenarios::gateway::gateway(timing)?,
            "audit" => scenarios::audit::audit(timing)?,
            "revocation" | "revoke" => scenarios::propagation::revocation(timing)?,
            "policy" => scenarios::propagation::policy(timing)?,
            "replicas" => scenarios::replicas::replicas(timing)?,
            "sync" => scenarios::sync::sync(timing)?,
            "pdp" => scenarios::gateway::pdp(timing)?,
            "scale" => scenarios::scale::scale(timing)?,
            "people" => scenarios::people::people(timing)?,
            other => anyhow::bail!(
                "unknown scenario {other:?}; known: {}",
                SCENARIOS.join(", ")
            ),
        };
        // These two measure latencies of single events, not interleaved throughput.
        if !matches!(
            name,
            "audit" | "revocation" | "revoke" | "policy" | "people" | "replicas" | "sync"
        ) {
            r.notes.push(format!(
                "baseline and AIMS rows run interleaved in 100 ms slices for {}s each per repetition; each row is the median of {} repetitions",
                args.seconds, args.reps
            ));
        }
        report::write(&args.out, &machine, &command, &r)?;
        tables.push_str(&report::table(&r));
    }
    println!("{tables}");
    println!("results written to {}/", args.out.display());
    Ok(())
}
