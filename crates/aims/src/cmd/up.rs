//! `aims up`: the local stack on one data directory.

use anyhow::Context as _;

use crate::config::{self, DEFAULT_TRUST_DOMAIN, ServerFlags};
use crate::up_file::UpFile;

/// Arguments of `aims up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub flags: ServerFlags,
}

/// Runs the stack until Ctrl-C or SIGTERM, printing its endpoints.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let file = config::load_file(&args.flags)?;
    let settings = config::server_settings(&args.flags, &file, Some(DEFAULT_TRUST_DOMAIN))?;
    let data_dir = settings.data_dir.clone();
    let server = aims_server::start(settings)
        .await
        .context("AIMS could not start")?;
    let up = UpFile::for_server(&data_dir, &server)?;
    let path = up.write(&data_dir)?;
    println!("{}", up.table());
    println!(
        "Endpoints written to {}. Press Ctrl-C to stop.",
        path.display()
    );
    super::shutdown_signal().await;
    server.stop().await;
    UpFile::remove(&data_dir);
    Ok(())
}
