//! The `warren` binary: settings (flags, `WARREN_*` environment, `--config` TOML), logging,
//! listeners, signals. Every startup failure is one sentence on stderr and a non-zero exit,
//! before anything is announced or created.

use std::process::ExitCode;
use std::sync::Arc;
use tracing::{info, warn};
use warren::config::settings::Settings;
use warren::config::StartupError;
use warren::logging::LogHandle;

/// jemalloc gives freed memory back to the system after a deep queue drains (with glibc's
/// malloc the RSS stayed near its peak), at no cost in idle RSS. Also in the static musl
/// build, where musl's own malloc is much slower under many threads.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let settings = match Settings::load(std::env::args_os()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&StartupError(format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(start_and_serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// A user error is a sentence, not a backtrace (anyhow prints one with RUST_BACKTRACE=1).
fn fail(e: &StartupError) -> ExitCode {
    eprintln!("warren: {e}");
    ExitCode::FAILURE
}

async fn start_and_serve(settings: Settings) -> Result<(), StartupError> {
    settings.check_built()?;
    // Bind before touching the disk, so a taken port creates nothing.
    let (listeners, bind_warnings) = warren::server::bind_listeners(&settings.listen, "--listen")?;
    if listeners.is_empty() {
        return Err(StartupError(
            "no AMQP listener: --listen is none; give it an address such as 0.0.0.0:5672".into(),
        ));
    }
    let logs = Arc::new(warren::logging::init(&settings.log)?);
    for w in settings.warnings.iter().chain(&bind_warnings) {
        warn!("{w}");
    }
    let open_files = warren::alarm::raise_open_file_limit();
    let broker = warren::server::open_broker(settings.config.clone())?;
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addrs.join(", "),
        data_dir = %settings.config.data_dir.display(),
        memory_high_watermark = settings.config.memory_high_watermark,
        ?open_files,
        "Warren started"
    );
    for (what, setting) in [
        ("management API", &settings.management_listen),
        ("Prometheus metrics", &settings.prometheus_listen),
    ] {
        if setting.is_enabled() {
            tracing::debug!("{what} not built into this version; not listening for it");
        }
    }
    println!(
        "Warren {} listening on {} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        settings.config.data_dir.display()
    );
    let reloads = tokio::spawn(reload_on_sighup(settings, logs));
    warren::server::serve(broker, listeners, shutdown_signal()).await;
    reloads.abort();
    info!("Warren stopped");
    Ok(())
}

/// SIGHUP: reopen the log file (logrotate), re-read the log level from the config file.
/// Certificates will be reloaded here too once TLS is built.
async fn reload_on_sighup(settings: Settings, logs: Arc<LogHandle>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = logs.reopen() {
                warn!(error = %e, "SIGHUP: cannot reopen the log file; still writing the old one");
            }
            match settings.reload_log_level() {
                Ok(Some(level)) => match logs.set_level(&level) {
                    Ok(()) => info!(%level, "SIGHUP: log level reloaded"),
                    Err(e) => warn!(%level, error = %e, "SIGHUP: bad log level; keeping the old one"),
                },
                Ok(None) => info!("SIGHUP: log file reopened; log level unchanged (set by flag, environment or no config file)"),
                Err(e) => warn!(error = %e, "SIGHUP: cannot re-read the config file"),
            }
            // Hook: reload TLS certificates here once --amqps-listen is built.
        }
    }
    #[cfg(not(unix))]
    let _ = (settings, logs);
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
