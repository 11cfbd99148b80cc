//! The `warren` binary: settings (flags, `WARREN_*` environment, `--config` TOML), logging,
//! listeners, signals. Every startup failure is one sentence on stderr and a non-zero exit,
//! before anything is announced or created.

mod ctl;

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
    // `warren ctl …` is the management CLI, not the broker: dispatched before the broker's
    // settings are parsed (they would refuse its flags).
    if std::env::args_os().nth(1).is_some_and(|a| a == "ctl") {
        return ctl::main(std::env::args_os().collect());
    }
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
    let (management, management_warnings) = bind_management(&settings)?;
    let logs = Arc::new(warren::logging::init(&settings.log)?);
    let open_files = warren::alarm::raise_open_file_limit();
    let broker = warren::server::open_broker(settings.config.clone())?;
    // Warnings after the last check that can refuse the start, so a refusal stays one line.
    for w in settings
        .warnings
        .iter()
        .chain(&bind_warnings)
        .chain(&management_warnings)
    {
        warn!("{w}");
    }
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
    if settings.prometheus_listen.is_enabled() {
        tracing::debug!("Prometheus metrics not built into this version; not listening for it");
    }
    let amqp_addrs: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let management_addrs: Vec<String> = management
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if !management_addrs.is_empty() {
        info!(listen = %management_addrs.join(", "), "management API started");
    }
    let stop_management = tokio_util::sync::CancellationToken::new();
    let management_tasks =
        warren::server::start_management(&broker, management, &amqp_addrs, stop_management.clone());
    println!(
        "Warren {} listening on {} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        settings.config.data_dir.display()
    );
    let reloads = tokio::spawn(reload_on_sighup(settings, logs));
    let shutdown = async {
        shutdown_signal().await;
        stop_management.cancel();
    };
    warren::server::serve(broker, listeners, shutdown).await;
    for task in management_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    reloads.abort();
    info!("Warren stopped");
    Ok(())
}

/// The management API's listeners. An address the operator asked for must bind (the error names
/// it and the flag, like the AMQP listeners'); the default `0.0.0.0:15672` is skipped with a
/// warning when taken, so a RabbitMQ or another Warren on the machine does not stop this one.
fn bind_management(
    settings: &Settings,
) -> Result<(Vec<tokio::net::TcpListener>, Vec<String>), StartupError> {
    let setting = std::slice::from_ref(&settings.management_listen);
    match &settings.management_listen_explicit {
        Some(flag) => warren::server::bind_listeners(setting, flag),
        None => match warren::server::bind_listeners(setting, "--management-listen") {
            Ok(bound) => Ok(bound),
            Err(e) => Ok((Vec::new(), vec![format!("management API not started: {e}")])),
        },
    }
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
