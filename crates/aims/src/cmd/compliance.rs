//! `aims compliance …`: compliance reports from recorded evidence against versioned rules
//! (AIMS CO-1).

use std::path::PathBuf;

use anyhow::Context as _;

use super::AdminArgs;

/// Compliance commands.
#[derive(Debug, clap::Subcommand)]
pub enum ComplianceCommand {
    /// Evaluate the rules over the server's evidence (audit log, issued credentials, clients,
    /// the signed checkpoint) and write `compliance-report.json` and `compliance-report.html`.
    Report {
        #[command(flatten)]
        admin: AdminArgs,
        /// Rule document (TOML) [default: the shipped rules, see `aims compliance rules`].
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Directory to write the reports to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Exit with status 1 when a rule fails (for CI).
        #[arg(long)]
        strict: bool,
    },
    /// Print the shipped rule document, a starting point for your own.
    Rules,
}

/// Runs `aims compliance …`.
pub async fn run(cmd: ComplianceCommand) -> anyhow::Result<()> {
    match cmd {
        ComplianceCommand::Rules => print!("{}", aims_compliance::DEFAULT_RULES),
        ComplianceCommand::Report {
            admin,
            rules,
            out,
            strict,
        } => {
            let text = rules
                .as_ref()
                .map(|p| {
                    std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))
                })
                .transpose()?;
            let report = admin.client().compliance_report(text).await?;
            std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
            let json = out.join("compliance-report.json");
            let html = out.join("compliance-report.html");
            std::fs::write(&json, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("write {}", json.display()))?;
            std::fs::write(&html, report.html())
                .with_context(|| format!("write {}", html.display()))?;
            for r in &report.results {
                println!(
                    "{:<5} {:<28} {} ({} checked, {} findings)",
                    format!("{:?}", r.status).to_uppercase(),
                    r.id,
                    r.title,
                    r.evaluated,
                    r.findings.len()
                );
            }
            println!(
                "rules {} ({} passed, {} failed); wrote {} and {}",
                report.rules_version,
                report.passed,
                report.failed,
                json.display(),
                html.display()
            );
            if strict && report.failed > 0 {
                anyhow::bail!("{} compliance rules failed", report.failed);
            }
        }
    }
    Ok(())
}
