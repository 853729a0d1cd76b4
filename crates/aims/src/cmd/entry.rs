//! `aims entry create|list|show|update|delete`.

use aims_core::{HumanDuration, SpiffeId};
use aims_store::{EntryUpdate, NewEntry, RegistrationEntry, Selector};
use anyhow::Context as _;

use super::AdminArgs;

/// Output format of list and show.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Output {
    /// Readable text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// Registration entry commands.
#[derive(Debug, clap::Subcommand)]
pub enum EntryCommand {
    /// Register a workload: the SPIFFE ID it gets and the selectors it must present.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// The SPIFFE ID to issue, e.g. spiffe://aims.local/agent/planner.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// The agent (node) under which the entry applies [default: the `aims up` agent,
        /// spiffe://TRUST_DOMAIN/aims/agent/local].
        #[arg(long)]
        parent_id: Option<SpiffeId>,
        /// A selector the workload must present (repeat for several; all must match),
        /// e.g. unix:uid:1000, unix:sha256:<hex>.
        #[arg(long = "selector", short = 's', required = true)]
        selectors: Vec<Selector>,
        /// X509-SVID lifetime, e.g. 30m [default: the server's].
        #[arg(long)]
        x509_svid_ttl: Option<HumanDuration>,
        /// JWT-SVID lifetime, e.g. 5m [default: the server's].
        #[arg(long)]
        jwt_svid_ttl: Option<HumanDuration>,
        /// A DNS name for the X509-SVID (repeatable).
        #[arg(long = "dns-name")]
        dns_names: Vec<String>,
        /// Let this identity use the admin API.
        #[arg(long = "admin")]
        admin_flag: bool,
        /// Workload API hint.
        #[arg(long)]
        hint: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List entries.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only entries with this SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<SpiffeId>,
        /// Only entries under this parent.
        #[arg(long)]
        parent_id: Option<SpiffeId>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one entry.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// Entry id.
        id: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Change an entry; fields not given stay as they are.
    Update {
        #[command(flatten)]
        admin: AdminArgs,
        /// Entry id.
        id: String,
        /// New parent.
        #[arg(long)]
        parent_id: Option<SpiffeId>,
        /// Replace the selectors (repeatable).
        #[arg(long = "selector", short = 's')]
        selectors: Vec<Selector>,
        /// New X509-SVID lifetime.
        #[arg(long)]
        x509_svid_ttl: Option<HumanDuration>,
        /// New JWT-SVID lifetime.
        #[arg(long)]
        jwt_svid_ttl: Option<HumanDuration>,
        /// Replace the DNS names (repeatable).
        #[arg(long = "dns-name")]
        dns_names: Vec<String>,
        /// Set or clear the admin flag (true or false).
        #[arg(long = "admin")]
        admin_flag: Option<bool>,
        /// New hint.
        #[arg(long)]
        hint: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete an entry.
    Delete {
        #[command(flatten)]
        admin: AdminArgs,
        /// Entry id.
        id: String,
    },
}

fn ttl_secs(d: Option<HumanDuration>) -> anyhow::Result<Option<u32>> {
    d.map(|d| u32::try_from(d.0.as_secs()).context("TTL too large"))
        .transpose()
}

fn print_entry(e: &RegistrationEntry, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(e)?),
        Output::Text => {
            let ttl = |t: u32| {
                if t == 0 {
                    "server default".to_owned()
                } else {
                    aims_core::format_duration(std::time::Duration::from_secs(u64::from(t)))
                }
            };
            println!("Entry ID      : {}", e.id);
            println!("SPIFFE ID     : {}", e.spiffe_id);
            println!("Parent ID     : {}", e.parent_id);
            for s in &e.selectors {
                println!("Selector      : {s}");
            }
            println!("X509-SVID TTL : {}", ttl(e.x509_svid_ttl));
            println!("JWT-SVID TTL  : {}", ttl(e.jwt_svid_ttl));
            for d in &e.dns_names {
                println!("DNS name      : {d}");
            }
            if e.admin {
                println!("Admin         : true");
            }
            if let Some(h) = &e.hint {
                println!("Hint          : {h}");
            }
            if e.disabled {
                println!(
                    "Disabled      : true (no SVIDs are issued; `aims revoke entry --enable`)"
                );
            }
            println!("Revision      : {}", e.revision);
        }
    }
    Ok(())
}

/// Runs an entry command.
pub async fn run(cmd: EntryCommand) -> anyhow::Result<()> {
    match cmd {
        EntryCommand::Create {
            admin,
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl,
            jwt_svid_ttl,
            dns_names,
            admin_flag,
            hint,
            output,
        } => {
            let client = admin.client();
            let parent_id = match parent_id {
                Some(p) => p,
                None => SpiffeId::from_parts(&spiffe_id.trust_domain(), "/aims/agent/local")?,
            };
            let entry = client
                .create_entry(&NewEntry {
                    spiffe_id,
                    parent_id,
                    selectors,
                    x509_svid_ttl: ttl_secs(x509_svid_ttl)?.unwrap_or(0),
                    jwt_svid_ttl: ttl_secs(jwt_svid_ttl)?.unwrap_or(0),
                    dns_names,
                    admin: admin_flag,
                    hint,
                })
                .await?;
            print_entry(&entry, output)
        }
        EntryCommand::List {
            admin,
            spiffe_id,
            parent_id,
            output,
        } => {
            let entries = admin
                .client()
                .list_entries(spiffe_id.as_ref(), parent_id.as_ref())
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
                Output::Text => {
                    println!(
                        "Found {} entr{}",
                        entries.len(),
                        if entries.len() == 1 { "y" } else { "ies" }
                    );
                    for e in &entries {
                        println!();
                        print_entry(e, Output::Text)?;
                    }
                }
            }
            Ok(())
        }
        EntryCommand::Show { admin, id, output } => {
            print_entry(&admin.client().show_entry(&id).await?, output)
        }
        EntryCommand::Update {
            admin,
            id,
            parent_id,
            selectors,
            x509_svid_ttl,
            jwt_svid_ttl,
            dns_names,
            admin_flag,
            hint,
            output,
        } => {
            let update = EntryUpdate {
                parent_id,
                selectors: (!selectors.is_empty()).then_some(selectors),
                x509_svid_ttl: ttl_secs(x509_svid_ttl)?,
                jwt_svid_ttl: ttl_secs(jwt_svid_ttl)?,
                dns_names: (!dns_names.is_empty()).then_some(dns_names),
                admin: admin_flag,
                hint: hint.map(Some),
                disabled: None,
            };
            print_entry(&admin.client().update_entry(&id, &update).await?, output)
        }
        EntryCommand::Delete { admin, id } => {
            admin.client().delete_entry(&id).await?;
            println!("Deleted entry {id}");
            Ok(())
        }
    }
}
