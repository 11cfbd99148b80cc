//! The `warren` binary: settings (flags, `WARREN_*` environment, `--config` TOML), logging,
//! listeners, signals. Every startup failure is one sentence on stderr and a non-zero exit,
//! before anything is announced or created.

mod ctl;

use std::process::ExitCode;
use std::sync::Arc;
use tracing::{info, warn};
use warren::config::settings::Settings;
use warren::config::StartupError;
use warren::http::views::ListenerView;
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
    // Before the runtime's threads exist, so their arenas take the settings.
    let allocator = warren::allocator::configure();
    let settings = match Settings::load(std::env::args_os()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&StartupError(format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(start_and_serve(settings, allocator)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// A user error is a sentence, not a backtrace (anyhow prints one with RUST_BACKTRACE=1).
fn fail(e: &StartupError) -> ExitCode {
    eprintln!("warren: {e}");
    ExitCode::FAILURE
}

async fn start_and_serve(
    settings: Settings,
    allocator: Result<(), String>,
) -> Result<(), StartupError> {
    // Bind before touching the disk, so a taken port creates nothing.
    let (listeners, bind_warnings) = warren::server::bind_listeners(&settings.listen, "--listen")?;
    if listeners.is_empty() {
        return Err(StartupError(
            "no AMQP listener: --listen is none; give it an address such as 0.0.0.0:5672".into(),
        ));
    }
    let (amqps, amqps_warnings) = bind_amqps(&settings)?;
    let (management, management_warnings) = bind_optional(
        &settings.management_listen,
        settings.management_listen_explicit.as_deref(),
        "--management-listen",
        "management API",
    )?;
    let management_tls = bind_management_tls(&settings)?;
    let (prometheus, prometheus_warnings) = bind_optional(
        &settings.prometheus_listen,
        settings.prometheus_listen_explicit.as_deref(),
        "--prometheus-listen",
        "Prometheus metrics",
    )?;
    let logs = Arc::new(warren::logging::init(&settings.log)?);
    let open_files = warren::alarm::raise_open_file_limit();
    if let Err(e) = allocator {
        warn!(error = %e, "jemalloc settings not applied: freed memory may stay in RSS");
    }
    let broker = warren::server::open_broker(settings.config.clone())?;
    // Warnings after the last check that can refuse the start, so a refusal stays one line.
    for w in settings
        .warnings
        .iter()
        .chain(&bind_warnings)
        .chain(&amqps_warnings)
        .chain(&management_warnings)
        .chain(&prometheus_warnings)
    {
        warn!("{w}");
    }
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let amqps_addrs: Vec<String> = amqps
        .iter()
        .flat_map(|a| &a.listeners)
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if !amqps_addrs.is_empty() {
        info!(listen = %amqps_addrs.join(", "), "AMQPS (TLS) listener started");
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addrs.join(", "),
        data_dir = %settings.config.data_dir.display(),
        memory_high_watermark = settings.config.memory_high_watermark,
        ?open_files,
        "Warren started"
    );
    let amqp_views: Vec<ListenerView> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| ListenerView::plain("amqp", a))
        .chain(amqps.iter().flat_map(warren::server::AmqpsListeners::views))
        .collect();
    let management_addrs: Vec<String> = management
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if !management_addrs.is_empty() {
        info!(listen = %management_addrs.join(", "), "management API started");
    }
    let management_tls_addrs: Vec<String> = management_tls
        .iter()
        .flat_map(|t| &t.listeners)
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if !management_tls_addrs.is_empty() {
        info!(listen = %management_tls_addrs.join(", "), "management API over TLS started");
    }
    let stop_management = tokio_util::sync::CancellationToken::new();
    let mut management_tasks = warren::server::start_management_with_tls(
        &broker,
        management,
        management_tls,
        &amqp_views,
        stop_management.clone(),
    );
    let prometheus_addrs: Vec<String> = prometheus
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if !prometheus_addrs.is_empty() {
        info!(listen = %prometheus_addrs.join(", "), "Prometheus metrics started");
    }
    management_tasks.extend(warren::server::start_prometheus(
        &broker,
        prometheus,
        stop_management.clone(),
    ));
    // Every listener in the banner, so tools and tests that start Warren on port 0 find them.
    let mut banner_tail = String::new();
    for (label, bound) in [
        ("AMQPS", &amqps_addrs),
        ("management API", &management_addrs),
        ("management API over TLS", &management_tls_addrs),
        ("Prometheus", &prometheus_addrs),
    ] {
        if !bound.is_empty() {
            banner_tail.push_str(&format!("; {label} on {}", bound.join(", ")));
        }
    }
    println!(
        "Warren {} listening on {} (data dir {}){banner_tail}",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        settings.config.data_dir.display()
    );
    let tls = amqps.as_ref().map(|a| a.tls.clone());
    let reloads = tokio::spawn(reload_on_sighup(settings, logs, tls));
    let shutdown = async {
        shutdown_signal().await;
        stop_management.cancel();
    };
    warren::server::serve_with_tls(broker, listeners, amqps, shutdown).await;
    for task in management_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    reloads.abort();
    info!("Warren stopped");
    Ok(())
}

/// The management API's HTTPS listeners with the certificate loaded, when
/// `--management-tls-listen` is set (it must bind: the operator asked for it).
fn bind_management_tls(
    settings: &Settings,
) -> Result<Option<warren::server::ManagementTls>, StartupError> {
    let Some(tls_settings) = settings.management_tls() else {
        return Ok(None);
    };
    let config =
        warren::tls::load_server_config(&tls_settings).map_err(|e| settings.tls_error(&e))?;
    // Browsers and HTTP clients negotiate HTTP/1.1 by ALPN (the only version served).
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (listeners, _) = warren::server::bind_listeners(
        std::slice::from_ref(&settings.management_tls_listen),
        &settings.management_tls_names,
    )?;
    Ok(Some(warren::server::ManagementTls {
        listeners,
        config: Arc::new(config),
        certificates: warren::server::certificate_files(&tls_settings),
    }))
}

/// The AMQPS listeners with their certificates loaded, when `--amqps-listen` is set: a file
/// that cannot be used stops the start with its name and the setting that named it.
fn bind_amqps(
    settings: &Settings,
) -> Result<(Option<warren::server::AmqpsListeners>, Vec<String>), StartupError> {
    let Some(tls_settings) = settings.amqps() else {
        return Ok((None, Vec::new()));
    };
    let tls = warren::tls::ReloadableTls::load(tls_settings).map_err(|e| settings.tls_error(&e))?;
    let flag = &settings.tls.names.listen;
    let (listeners, warnings) = warren::server::bind_listeners(&settings.tls.listen, flag)?;
    Ok((
        Some(warren::server::AmqpsListeners { listeners, tls }),
        warnings,
    ))
}

/// An HTTP listener with a default port (the management API's 15672, Prometheus' 15692). An
/// address the operator asked for must bind (the error names it and the flag, like the AMQP
/// listeners'); the default is skipped with a warning when taken, so a RabbitMQ or another Warren
/// on the machine does not stop this one.
fn bind_optional(
    setting: &warren::config::listen::ListenerSetting,
    explicit: Option<&str>,
    flag: &str,
    what: &str,
) -> Result<(Vec<tokio::net::TcpListener>, Vec<String>), StartupError> {
    let setting = std::slice::from_ref(setting);
    match explicit {
        // Named as the operator set it (flag, variable or config key).
        Some(source) => warren::server::bind_listeners(setting, source),
        None => match warren::server::bind_listeners(setting, flag) {
            Ok(bound) => Ok(bound),
            Err(e) => Ok((Vec::new(), vec![format!("{what} not started: {e}")])),
        },
    }
}

/// SIGHUP: reopen the log file (logrotate), re-read the log level from the config file, and
/// re-read the TLS certificate files (new handshakes use them; open connections keep theirs).
async fn reload_on_sighup(
    settings: Settings,
    logs: Arc<LogHandle>,
    tls: Option<Arc<warren::tls::ReloadableTls>>,
) {
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
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => warn!(
                        error = %settings.tls_error(&e),
                        "SIGHUP: cannot reload the TLS certificates; keeping the old ones"
                    ),
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (settings, logs, tls);
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
