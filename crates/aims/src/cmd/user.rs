//! `aims user create|list|disable|enable|delete|enrol`: the people who delegate to agents
//! (authorization code) and approve their requests (CIBA). A new user gets a single-use
//! enrolment link to register a passkey.

use std::io::Read as _;

use aims_admin::api::CreateUserRequest;
use anyhow::Context as _;

use super::AdminArgs;
use super::entry::Output;

/// User commands.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user and print their enrolment link.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// The sign-in name.
        username: String,
        /// The name pages show [default: the username].
        #[arg(long)]
        display_name: Option<String>,
        /// May sign in to the console.
        #[arg(long)]
        admin_user: bool,
        /// Read an initial password from standard input (the fallback to passkeys).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Disable a user: no sign-in, sessions end, no new approvals or delegations.
    Disable {
        #[command(flatten)]
        admin: AdminArgs,
        /// Username or user id.
        user: String,
    },
    /// Enable a disabled user.
    Enable {
        #[command(flatten)]
        admin: AdminArgs,
        /// Username or user id.
        user: String,
    },
    /// Delete a user with their passkeys, sessions, consents and pending approvals.
    Delete {
        #[command(flatten)]
        admin: AdminArgs,
        /// Username or user id.
        user: String,
    },
    /// Print a new single-use enrolment link (to register a passkey on a new device).
    Enrol {
        #[command(flatten)]
        admin: AdminArgs,
        /// Username or user id.
        user: String,
    },
}

/// Runs `aims user …`.
pub async fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            admin,
            username,
            display_name,
            admin_user,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_to_string(&mut p)
                    .context("cannot read the password from standard input")?;
                Some(p.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let created = admin
                .client()
                .create_user(&CreateUserRequest {
                    username,
                    display_name,
                    admin: admin_user,
                    password,
                })
                .await?;
            println!(
                "Created user {} ({}).",
                created["user"]["username"].as_str().unwrap_or("?"),
                created["user"]["user_id"].as_str().unwrap_or("?")
            );
            println!(
                "Enrolment link (single use; open it in the user's browser to register a passkey):\n  {}",
                created["enrolment_url"].as_str().unwrap_or("?")
            );
        }
        UserCommand::List { admin, output } => {
            let users = admin.client().list_users().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&users)?),
                Output::Text => {
                    if users.is_empty() {
                        println!("No users. Create one with `aims user create <username>`.");
                    }
                    for u in users {
                        println!(
                            "{}  {}{}{}\n  id       {}\n  created  {}",
                            u.username,
                            u.display_name,
                            if u.is_admin { "  [admin]" } else { "" },
                            if u.disabled { "  [disabled]" } else { "" },
                            u.user_id,
                            aims_core::format_unix(u.created_at)
                        );
                    }
                }
            }
        }
        UserCommand::Disable { admin, user } => {
            let u = admin.client().set_user_disabled(&user, true).await?;
            println!("Disabled {}: their sessions ended.", u.username);
        }
        UserCommand::Enable { admin, user } => {
            let u = admin.client().set_user_disabled(&user, false).await?;
            println!("Enabled {}.", u.username);
        }
        UserCommand::Delete { admin, user } => {
            admin.client().delete_user(&user).await?;
            println!("Deleted user {user}.");
        }
        UserCommand::Enrol { admin, user } => {
            let r = admin.client().enrol_user(&user).await?;
            println!(
                "Enrolment link (single use):\n  {}",
                r["enrolment_url"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
