//! `aims server`.

use anyhow::Context as _;

use crate::config::{self, ServerFlags};
use crate::up_file::UpFile;

/// Arguments of `aims server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub flags: ServerFlags,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let file = config::load_file(&args.flags.common)?;
    let settings = config::server_settings(&args.flags, &file, None)?;
    let data_dir = settings.data_dir.clone();
    let metrics = crate::telemetry::start(&args.flags.common, &file).await?;
    let server = aims_server::start(settings)
        .await
        .context("the server could not start")?;
    let up = UpFile::new(&data_dir, &server, None)?.with_metrics(metrics);
    up.write(&data_dir)?;
    super::shutdown_signal().await;
    server.stop().await;
    UpFile::remove(&data_dir);
    Ok(())
}
