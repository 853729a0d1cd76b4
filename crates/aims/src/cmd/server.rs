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

/// Set by `aims up --replicas` on the replicas it starts, to its own pid: they stop when it
/// ends, however it ends (SIGKILL included), instead of living on as orphans.
pub const EXIT_WITH_PARENT_ENV: &str = "AIMS_EXIT_WITH_PARENT";

/// Asks the kernel for SIGTERM when the parent named by [`EXIT_WITH_PARENT_ENV`] dies
/// (`PR_SET_PDEATHSIG`), and refuses to start if it already has.
fn exit_with_parent() -> anyhow::Result<()> {
    let Ok(expected) = std::env::var(EXIT_WITH_PARENT_ENV) else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("cannot ask to stop with the parent process")?;
    // The parent may have died before the request above took effect.
    let parent = rustix::process::Pid::as_raw(rustix::process::getppid());
    anyhow::ensure!(
        parent.to_string() == expected,
        "the aims up that started this replica (pid {expected}) has gone"
    );
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    exit_with_parent()?;
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
