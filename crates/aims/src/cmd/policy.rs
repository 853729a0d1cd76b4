//! `aims policy show|history|diff|apply|followers`: the versioned Cedar policy set (AIMS PO-2,
//! PO-3).

use std::path::PathBuf;

use aims_core::HumanDuration;
use anyhow::Context as _;

use super::AdminArgs;

/// Policy commands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the policy set in force (or a past version).
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// A recorded version instead of the one in force.
        #[arg(value_name = "VERSION")]
        number: Option<u64>,
        /// Print the version's application schema instead of its policies.
        #[arg(long, conflicts_with = "application_entities")]
        application_schema: bool,
        /// Print the version's application entities instead of its policies.
        #[arg(long)]
        application_entities: bool,
    },
    /// List every version put in force.
    History {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Validate a policy file against the AIMS schema and show what it would change.
    Diff {
        #[command(flatten)]
        admin: AdminArgs,
        /// The Cedar file.
        file: PathBuf,
        #[command(flatten)]
        application: ApplicationArgs,
    },
    /// Validate a policy file and put it in force as the next version, on every replica and
    /// gateway. An invalid file changes nothing.
    Apply {
        #[command(flatten)]
        admin: AdminArgs,
        /// The Cedar file.
        file: PathBuf,
        #[command(flatten)]
        application: ApplicationArgs,
        /// Who applies it (recorded with the version) [default: $USER].
        #[arg(long, env = "USER")]
        author: Option<String>,
        /// Return only once every gateway following the policy decides with this version.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits before naming the gateways that have not followed.
        #[arg(long, value_name = "DURATION", default_value = "30s")]
        wait_timeout: HumanDuration,
    },
    /// List the gateways following the policy and the version each decides with.
    Followers {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the AIMS Cedar schema policies are validated against.
    Schema,
}

/// An application the policy also decides for through the AuthZEN API: its own entity types
/// and actions, and the facts its decisions read.
#[derive(Debug, clap::Args)]
pub struct ApplicationArgs {
    /// A Cedar schema of the application's own namespace(s) (Cedar schema syntax), joined to
    /// the AIMS schema: AuthZEN requests naming one of its actions are decided in it.
    #[arg(long, value_name = "FILE")]
    application_schema: Option<PathBuf>,
    /// The application's entities (Cedar JSON entity format), e.g. its users and their roles.
    #[arg(long, value_name = "FILE", requires = "application_schema")]
    application_entities: Option<PathBuf>,
}

impl ApplicationArgs {
    fn read(&self) -> anyhow::Result<Option<aims_policy::Application>> {
        let Some(schema) = &self.application_schema else {
            return Ok(None);
        };
        Ok(Some(aims_policy::Application {
            schema: read(schema)?,
            entities: self
                .application_entities
                .as_ref()
                .map(read)
                .transpose()?
                .unwrap_or_default(),
        }))
    }
}

/// Waits until every gateway following the policy decides with `version` or newer (each says
/// so as it asks for the next one); returns how many there are, or names the ones behind.
pub(crate) async fn wait_for_followers(
    client: &aims_admin::AdminClient,
    version: u64,
    timeout: std::time::Duration,
) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let followers = client.policy_followers().await?;
        let behind: Vec<_> = followers.iter().filter(|f| f.version < version).collect();
        if behind.is_empty() {
            return Ok(followers.len());
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<String> = behind
                .iter()
                .map(|f| format!("{} (version {})", f.spiffe_id, f.version))
                .collect();
            anyhow::bail!(
                "version {version} is in force, but after {} these gateways still decide with an older one: {}",
                HumanDuration(timeout),
                names.join(", ")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Runs `aims policy …`.
pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Show {
            admin,
            number,
            application_schema,
            application_entities,
        } => {
            let doc = match number {
                Some(v) => {
                    aims_policy::service::stored_document(&admin.client().policy_version(v).await?)
                }
                None => admin.client().current_policy().await?,
            };
            if application_schema || application_entities {
                let app = doc.application.as_ref().with_context(|| {
                    format!("policy version {} has no application", doc.version)
                })?;
                let part = if application_schema {
                    &app.schema
                } else {
                    &app.entities
                };
                print!("{part}");
                return Ok(());
            }
            println!("// version {} ({})", doc.version, doc.hash);
            if let Some(app) = &doc.application {
                // Comments, so that the output applies again as it is.
                println!(
                    "// with an application: a schema of {} lines and {} bytes of entities \
                     (aims policy show --application-schema / --application-entities)",
                    app.schema.lines().count(),
                    app.entities.len()
                );
            }
            print!("{}", doc.text);
        }
        PolicyCommand::History { admin } => {
            for row in admin.client().policy_history().await? {
                println!(
                    "{:>5}  {}  {}  {}",
                    row.version,
                    aims_core::format_unix(row.created_at),
                    row.hash,
                    row.author
                );
            }
        }
        PolicyCommand::Diff {
            admin,
            file,
            application,
        } => {
            let out = admin
                .client()
                .apply_policy(&read(&file)?, application.read()?, true, None)
                .await?;
            println!("{} validates against the AIMS schema.", file.display());
            print!("{}", out.diff);
        }
        PolicyCommand::Apply {
            admin,
            file,
            application,
            author,
            wait,
            wait_timeout,
        } => {
            let client = admin.client();
            let out = client
                .apply_policy(&read(&file)?, application.read()?, false, author)
                .await?;
            print!("{}", out.diff);
            if out.applied {
                println!(
                    "Policy version {} ({}) is in force.",
                    out.document.version, out.document.hash
                );
            } else {
                println!(
                    "Unchanged: version {} stays in force.",
                    out.document.version
                );
            }
            if wait {
                let n = wait_for_followers(&client, out.document.version, wait_timeout.0).await?;
                println!(
                    "{n} gateway(s) decide with version {}.",
                    out.document.version
                );
            }
        }
        PolicyCommand::Followers { admin } => {
            let now = aims_core::unix_seconds(std::time::SystemTime::now());
            for f in admin.client().policy_followers().await? {
                println!(
                    "{:>5}  {:>4}s ago  {}",
                    f.version,
                    now.saturating_sub(f.seen_at),
                    f.spiffe_id
                );
            }
        }
        PolicyCommand::Schema => print!("{}", aims_policy::SCHEMA_TEXT),
    }
    Ok(())
}
