//! `aims audit …`: the audit log's records (AIMS MO-1, MO-8), its signed checkpoint, offline
//! verification (MO-7), export and a task's execution chain (MO-11).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use aims_audit::{LogEntry, LogVerifier, NoteVerifier};
use anyhow::Context as _;
use serde_json::{Value, json};

use aims_admin::client::AdminClient;

use super::AdminArgs;
use super::entry::Output;

/// Entries fetched per admin call.
const PAGE: u64 = 10_000;

/// Export formats.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// JSON lines: one entry per line with the record's exact bytes (what `verify --log` reads).
    #[default]
    Jsonl,
    /// OpenTelemetry logs: one OTLP/JSON `ExportLogsServiceRequest`.
    Otlp,
}

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print records in order, from an index.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many, at most.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print the newest signed checkpoint (C2SP tlog-checkpoint), or the key that verifies it.
    Checkpoint {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the verifier key instead.
        #[arg(long)]
        vkey: bool,
    },
    /// Check the whole log against a signed checkpoint: every entry present, in order, and
    /// hashing to what the checkpoint signed. Names the first bad index.
    ///
    /// Without --log, fetches the log, the checkpoint and the key from the server; with
    /// --log, checks an export offline (then --checkpoint and --vkey are required).
    Verify {
        #[command(flatten)]
        admin: AdminArgs,
        /// An export (`aims audit export`), JSON lines.
        #[arg(long, requires_all = ["checkpoint", "vkey"])]
        log: Option<PathBuf>,
        /// The signed checkpoint file.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key (`aims audit checkpoint --vkey`).
        #[arg(long)]
        vkey: Option<String>,
    },
    /// Write the log (or a part) as JSON lines or OpenTelemetry logs.
    Export {
        #[command(flatten)]
        admin: AdminArgs,
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print how many records the log holds and the bytes its tables and indexes take in the
    /// store (with the mean per record).
    Stats {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print the execution chain of a task (its correlation id: a transaction token's `txn`)
    /// as a tree across people, agents, tools and hops.
    Trace {
        #[command(flatten)]
        admin: AdminArgs,
        /// The task's correlation id.
        id: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Every entry from `from`, page by page.
pub async fn fetch_all(client: &AdminClient, from: u64) -> anyhow::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let page = client.audit_records(at, PAGE).await?;
        let n = page.len() as u64;
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
        at += n;
    }
}

/// An entry for reading: the record parsed where it parses.
fn readable(e: &LogEntry) -> Value {
    json!({
        "index": e.index,
        "appended_at": e.appended_at,
        "leaf_hash": e.leaf_hash,
        "record": e.parsed().map_or_else(|_| Value::String(e.record.clone()), |r| json!(r)),
    })
}

fn print_entries(entries: &[LogEntry], output: Output) -> anyhow::Result<()> {
    for e in entries {
        match (output, e.parsed()) {
            (Output::Json, _) => println!("{}", serde_json::to_string(&readable(e))?),
            (Output::Text, Ok(r)) => println!(
                "{:>6}  {}  {:?}  {:<10} {:<6} {}  agent={}  policy=v{}  corr={}",
                e.index,
                aims_core::format_unix(r.time_ms / 1000),
                r.kind,
                r.action,
                r.decision
                    .map(|d| format!("{d:?}").to_lowercase())
                    .unwrap_or_default(),
                r.resource.as_deref().unwrap_or("-"),
                r.agent.as_deref().unwrap_or("-"),
                r.policy_version.map(|v| v.to_string()).unwrap_or_default(),
                r.correlation_id.as_deref().unwrap_or("-"),
            ),
            (Output::Text, Err(_)) => println!("{:>6}  (record does not parse)", e.index),
        }
    }
    Ok(())
}

/// What a successful verification says.
fn verified(done: &aims_audit::Verified) -> String {
    format!(
        "audit log verified: {} entries; checkpoint {} at size {} (root {})",
        done.entries,
        done.checkpoint.origin,
        done.checkpoint.size,
        hex::encode(done.checkpoint.root)
    )
}

/// Checks the server's whole log against its newest signed checkpoint; says what it checked.
pub async fn verify_against_server(client: &AdminClient) -> anyhow::Result<String> {
    let cp = client.audit_checkpoint().await?;
    let note = cp
        .note
        .context("the server has not signed a checkpoint yet; try again in a second")?;
    let verifier = NoteVerifier::from_vkey(&cp.vkey).context("verifier key")?;
    let mut check = LogVerifier::new(&note, &verifier)?;
    for entry in fetch_all(client, 0).await? {
        check.check(&entry)?;
    }
    Ok(verified(&check.finish()?))
}

async fn verify(
    admin: &AdminArgs,
    log: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    vkey: Option<String>,
) -> anyhow::Result<()> {
    let Some(path) = log else {
        println!("{}", verify_against_server(&admin.client()).await?);
        return Ok(());
    };
    let (note, vkey) = match (checkpoint, vkey) {
        (Some(cp), Some(vkey)) => (
            std::fs::read_to_string(&cp)
                .with_context(|| format!("read checkpoint {}", cp.display()))?,
            vkey,
        ),
        // An export checked against the server's newest checkpoint.
        _ => {
            let cp = admin.client().audit_checkpoint().await?;
            let note = cp
                .note
                .context("the server has not signed a checkpoint yet; try again in a second")?;
            (note, cp.vkey)
        }
    };
    let verifier = NoteVerifier::from_vkey(&vkey).context("verifier key")?;
    let mut check = LogVerifier::new(&note, &verifier)?;
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        let entry: LogEntry = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a log entry", path.display(), n + 1))?;
        check.check(&entry)?;
    }
    println!("{}", verified(&check.finish()?));
    Ok(())
}

/// Runs `aims audit …`.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List {
            admin,
            from,
            limit,
            output,
        } => print_entries(&admin.client().audit_records(from, limit).await?, output)?,
        AuditCommand::Stats { admin, output } => {
            let st = admin.client().audit_storage().await?;
            let per = st.bytes.checked_div(st.records).unwrap_or(0);
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"records": st.records, "bytes": st.bytes, "bytes_per_record": per})
                ),
                Output::Text => println!(
                    "{} records, {} bytes in the store ({per} bytes per record)",
                    st.records, st.bytes
                ),
            }
        }
        AuditCommand::Checkpoint { admin, vkey } => {
            let cp = admin.client().audit_checkpoint().await?;
            if vkey {
                println!("{}", cp.vkey);
            } else {
                print!(
                    "{}",
                    cp.note.context(
                        "the server has not signed a checkpoint yet; try again in a second"
                    )?
                );
            }
        }
        AuditCommand::Verify {
            admin,
            log,
            checkpoint,
            vkey,
        } => verify(&admin, log, checkpoint, vkey)
            .await
            .context("audit log verification failed")?,
        AuditCommand::Export {
            admin,
            from,
            format,
            out,
        } => {
            let entries = fetch_all(&admin.client(), from).await?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            match format {
                ExportFormat::Jsonl => {
                    for e in &entries {
                        serde_json::to_writer(&mut sink, e)?;
                        sink.write_all(b"\n")?;
                    }
                }
                ExportFormat::Otlp => {
                    serde_json::to_writer(&mut sink, &aims_audit::otlp_logs(&entries, "aims"))?;
                    sink.write_all(b"\n")?;
                }
            }
            sink.flush()?;
            if let Some(p) = out {
                eprintln!("wrote {} entries to {}", entries.len(), p.display());
            }
        }
        AuditCommand::Trace { admin, id, output } => {
            let entries = admin.client().audit_trace(&id).await?;
            anyhow::ensure!(!entries.is_empty(), "no audit records for task {id:?}");
            match output {
                Output::Text => print!("{}", aims_audit::render_trace(&id, &entries)),
                Output::Json => print_entries(&entries, Output::Json)?,
            }
        }
    }
    Ok(())
}
