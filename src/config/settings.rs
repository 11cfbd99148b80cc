//! The operator's settings: command-line flags, `WARREN_*` environment variables and a TOML file
//! (`--config`), in that order of precedence, over defaults. Every error names the setting as the
//! operator wrote it (`--listen`, `WARREN_LISTEN` or `listen` in the file) and what it expects.

use super::listen::{every_interface, ListenerSetting};
use super::memory::Watermark;
use super::{Config, StartupError};
use crate::tls::CertLoginFrom;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// An AMQP 0-9-1 message broker that RabbitMQ clients talk to unchanged.
///
/// Every flag is also an environment variable (`WARREN_` and the flag's name in capitals) and a
/// key in the `--config` TOML file (the flag's name with `_` for `-`); flags win over the
/// environment, which wins over the file. See packaging/warren.toml for a commented example.
#[derive(Parser, Debug, Default)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// TOML settings file.
    #[arg(long, env = "WARREN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept AMQP connections on: HOST:PORT, [IPv6]:PORT, PORT (every interface)
    /// or none; repeat for several [default: [::]:5672 and 0.0.0.0:5672].
    #[arg(
        long,
        env = "WARREN_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Address for AMQP over TLS (RabbitMQ's 5671) [default: none].
    #[arg(
        long,
        env = "WARREN_AMQPS_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub amqps_listen: Vec<String>,
    /// The server certificate (PEM) for --amqps-listen.
    #[arg(long, env = "WARREN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "WARREN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are checked against.
    #[arg(long, env = "WARREN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Ask clients for a certificate and check it (RabbitMQ's verify_peer).
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_verify_peer: Option<bool>,
    /// Refuse clients without a certificate (RabbitMQ's fail_if_no_peer_cert).
    #[arg(long, env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_fail_if_no_peer_cert: Option<bool>,
    /// For the EXTERNAL mechanism: the user name is the certificate's common_name or
    /// distinguished_name.
    #[arg(long, env = "WARREN_SSL_CERT_LOGIN_FROM", value_name = "FIELD")]
    pub ssl_cert_login_from: Option<String>,
    /// Address of the management HTTP API, or none [default: 0.0.0.0:15672].
    #[arg(long, env = "WARREN_MANAGEMENT_LISTEN", value_name = "ADDR")]
    pub management_listen: Option<String>,
    /// Address of the management HTTP API over TLS (HTTPS, with --tls-cert and --tls-key),
    /// or none [default: none; RabbitMQ's usual port is 15671].
    #[arg(long, env = "WARREN_MANAGEMENT_TLS_LISTEN", value_name = "ADDR")]
    pub management_tls_listen: Option<String>,
    /// Address of the Prometheus metrics endpoint, or none [default: 0.0.0.0:15692].
    #[arg(long, env = "WARREN_PROMETHEUS_LISTEN", value_name = "ADDR")]
    pub prometheus_listen: Option<String>,
    /// A definitions file (RabbitMQ's JSON export) to import at start.
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS", value_name = "FILE")]
    pub load_definitions: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "WARREN_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Write logs to this file (appended; reopened on SIGHUP for logrotate) instead of stderr.
    #[arg(long, env = "WARREN_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, or e.g. "info,warren::store=debug");
    /// re-read from the config file on SIGHUP [default: info, or RUST_LOG].
    #[arg(long, env = "WARREN_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Directory for durable state (created if missing) [default: data].
    #[arg(long, env = "WARREN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest frame accepted, proposed to clients in connection.tune (bytes, at least 4096)
    /// [default: 131072].
    #[arg(long, env = "WARREN_FRAME_MAX", value_name = "BYTES")]
    pub frame_max: Option<u32>,
    /// Heartbeat interval proposed to clients (seconds; 0 disables) [default: 60].
    #[arg(long, env = "WARREN_HEARTBEAT", value_name = "SECONDS")]
    pub heartbeat: Option<u16>,
    /// Highest channel number a client may open [default: 2047].
    #[arg(long, env = "WARREN_CHANNEL_MAX", value_name = "N")]
    pub channel_max: Option<u16>,
    /// Default user's name (allowed from loopback only unless --default-user-remote)
    /// [default: guest].
    #[arg(long, env = "WARREN_DEFAULT_USER", value_name = "NAME")]
    pub default_user: Option<String>,
    /// Default user's password [default: guest].
    #[arg(
        long,
        env = "WARREN_DEFAULT_PASS",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub default_pass: Option<String>,
    /// Let the default user connect from any address, not only loopback.
    #[arg(long, env = "WARREN_DEFAULT_USER_REMOTE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub default_user_remote: Option<bool>,
    /// Queued-message memory above which publishers are blocked (connection.blocked): a
    /// fraction of RAM (or of the container's cgroup limit) such as 0.4, or an amount such as
    /// 1GB, 512MiB [default: 0.4].
    #[arg(
        long,
        env = "WARREN_MEMORY_HIGH_WATERMARK",
        value_name = "FRACTION|AMOUNT"
    )]
    pub memory_high_watermark: Option<String>,
    /// Free bytes on the data directory's filesystem below which publishers are blocked
    /// (RabbitMQ's disk_free_limit; 0 disables) [default: 50000000].
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", value_name = "BYTES")]
    pub disk_free_limit: Option<u64>,
    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size)
    /// [default: 134217728].
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<u64>,
    /// Seconds a client has to finish the handshake (RabbitMQ's handshake_timeout)
    /// [default: 10].
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT", value_name = "SECONDS")]
    pub handshake_timeout: Option<f64>,
    /// Most client connections at once (RabbitMQ's connection_max) [default: unlimited].
    #[arg(long, env = "WARREN_CONNECTION_MAX", value_name = "N")]
    pub connection_max: Option<usize>,
    /// Pause deliveries on channel.flow(active=false) instead of closing the connection with
    /// 540 NOT_IMPLEMENTED as RabbitMQ 3.x does.
    #[arg(long, env = "WARREN_HONOUR_CHANNEL_FLOW", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub honour_channel_flow: Option<bool>,
    /// Milliseconds a delivery may stay unacknowledged before its channel is closed with 406
    /// and it is requeued (RabbitMQ's consumer_timeout); `false` disables it [default: 1800000].
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT", value_name = "MS|false")]
    pub consumer_timeout: Option<String>,
}

/// The `--config` file: the same settings, named with `_`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<OneOrMany>,
    amqps_listen: Option<OneOrMany>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_verify_peer: Option<bool>,
    tls_fail_if_no_peer_cert: Option<bool>,
    ssl_cert_login_from: Option<String>,
    management_listen: Option<String>,
    management_tls_listen: Option<String>,
    prometheus_listen: Option<String>,
    load_definitions: Option<PathBuf>,
    log_format: Option<String>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    data_dir: Option<PathBuf>,
    frame_max: Option<u32>,
    heartbeat: Option<u16>,
    channel_max: Option<u16>,
    default_user: Option<String>,
    default_pass: Option<String>,
    default_user_remote: Option<bool>,
    memory_high_watermark: Option<NumberOrText>,
    disk_free_limit: Option<u64>,
    max_message_size: Option<u64>,
    handshake_timeout: Option<f64>,
    connection_max: Option<usize>,
    honour_channel_flow: Option<bool>,
    consumer_timeout: Option<MillisOrOff>,
}

/// `consumer_timeout` in the file: milliseconds, or `false` (RabbitMQ's way to disable it).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum MillisOrOff {
    Millis(u64),
    Flag(bool),
    Text(String),
}

impl MillisOrOff {
    fn into_text(self) -> String {
        match self {
            MillisOrOff::Millis(ms) => ms.to_string(),
            MillisOrOff::Flag(b) => b.to_string(),
            MillisOrOff::Text(t) => t,
        }
    }
}

/// Parses a consumer timeout: milliseconds, or `false`/`none`/`off` for none.
fn parse_consumer_timeout(text: &str) -> Result<Option<std::time::Duration>, String> {
    match text.trim() {
        "false" | "none" | "off" | "undefined" => Ok(None),
        ms => ms
            .parse::<u64>()
            .map(|ms| Some(std::time::Duration::from_millis(ms)))
            .map_err(|_| format!("expected milliseconds or false, got {ms:?}")),
    }
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `memory_high_watermark = 0.4` and `= "1GB"` both work in the file.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum NumberOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl NumberOrText {
    fn into_text(self) -> String {
        match self {
            NumberOrText::Int(i) => i.to_string(),
            NumberOrText::Float(f) => f.to_string(),
            NumberOrText::Text(t) => t,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and how to log.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// A file to append to, or stderr when `None`.
    pub file: Option<PathBuf>,
    /// An `EnvFilter` directive (`info`, `warn,warren::store=debug`…).
    pub level: String,
}

/// AMQP over TLS: the listeners and the files `crate::tls` loads (see [`Settings::amqps`]).
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// `--amqps-listen`.
    pub listen: Vec<ListenerSetting>,
    /// Server certificate.
    pub cert: Option<PathBuf>,
    /// Private key.
    pub key: Option<PathBuf>,
    /// CA bundle.
    pub ca: Option<PathBuf>,
    /// verify_peer.
    pub verify_peer: bool,
    /// fail_if_no_peer_cert.
    pub fail_if_no_peer_cert: bool,
    /// common_name or distinguished_name.
    pub cert_login_from: Option<String>,
    /// How the operator named each setting (`--tls-cert`, `WARREN_TLS_CERT`, the file key), so
    /// that an unusable file is reported with what set it.
    pub names: TlsSettingNames,
}

/// How the TLS settings were named where they were set, for startup errors.
#[derive(Clone, Debug, Default)]
pub struct TlsSettingNames {
    /// `--amqps-listen` or its variable or key.
    pub listen: String,
    /// `--tls-cert` …
    pub cert: String,
    /// `--tls-key` …
    pub key: String,
    /// `--tls-ca` …
    pub ca: String,
}

/// Everything `warren` was asked to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The broker's own settings.
    pub config: Config,
    /// Plain AMQP listeners.
    pub listen: Vec<ListenerSetting>,
    /// AMQP over TLS.
    pub tls: TlsSettings,
    /// Management HTTP API.
    pub management_listen: ListenerSetting,
    /// How the operator named the management listener when they set it (`--management-listen`,
    /// the variable or the file key); `None` when it is the default. An address they asked for
    /// must bind; the default one is skipped with a warning when taken (another Warren or a
    /// RabbitMQ on the machine), so that it never stops the broker from starting.
    pub management_listen_explicit: Option<String>,
    /// Management HTTP API over TLS (off unless set; it must bind when set).
    pub management_tls_listen: ListenerSetting,
    /// How the operator named it (`--management-tls-listen`, the variable or the file key).
    pub management_tls_names: String,
    /// Prometheus endpoint.
    pub prometheus_listen: ListenerSetting,
    /// How the operator named the Prometheus listener when they set it; `None` for the
    /// default, which is skipped with a warning when taken (as the management listener's).
    pub prometheus_listen_explicit: Option<String>,
    /// Definitions to import at start.
    pub load_definitions: Option<PathBuf>,
    /// Logging.
    pub log: LogSettings,
    /// The TOML file these settings came from, re-read on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// Warnings to log once logging is set up (e.g. a frame_max raised to the minimum).
    pub warnings: Vec<String>,
}

/// Where a value came from, to name it in errors as the operator wrote it.
struct Sources<'a> {
    matches: &'a ArgMatches,
    file: Option<&'a Path>,
}

impl Sources<'_> {
    /// `--frame-max`, `WARREN_FRAME_MAX` or "`frame_max` in FILE", whichever set `id`.
    fn name(&self, id: &str) -> String {
        let flag = format!("--{}", id.replace('_', "-"));
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => flag,
            Some(ValueSource::EnvVariable) => format!("WARREN_{}", id.to_uppercase()),
            _ => match self.file {
                Some(file) => format!("`{id}` in {}", file.display()),
                None => flag,
            },
        }
    }
}

impl Settings {
    /// Reads flags from `args` (the first item is the program name), the environment and the
    /// `--config` file. Usage errors (unknown flag, not a number) exit as clap does.
    pub fn load(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Self, StartupError> {
        let matches = Args::command().get_matches_from(args);
        let parsed = Args::from_arg_matches(&matches).map_err(|e| StartupError(e.to_string()))?;
        Self::from_parts(parsed, &matches)
    }

    /// Merges parsed flags (and environment) with the file they name.
    fn from_parts(args: Args, matches: &ArgMatches) -> Result<Self, StartupError> {
        let file = match &args.config {
            Some(path) => read_file(
                path,
                &Sources {
                    matches,
                    file: None,
                }
                .name("config"),
            )?,
            None => FileSettings::default(),
        };
        let sources = Sources {
            matches,
            file: args.config.as_deref(),
        };
        let mut warnings = Vec::new();

        let listen_texts = non_empty(args.listen).or(file.listen.map(OneOrMany::into_vec));
        let listen = match listen_texts {
            Some(texts) => parse_listeners(&texts, &sources.name("listen"))?,
            None => vec![ListenerSetting::Addrs(every_interface(5672))],
        };
        let amqps_listen =
            match non_empty(args.amqps_listen).or(file.amqps_listen.map(OneOrMany::into_vec)) {
                Some(texts) => parse_listeners(&texts, &sources.name("amqps_listen"))?,
                None => Vec::new(),
            };
        let tls = TlsSettings {
            listen: amqps_listen,
            cert: args.tls_cert.or(file.tls_cert),
            key: args.tls_key.or(file.tls_key),
            ca: args.tls_ca.or(file.tls_ca),
            verify_peer: args
                .tls_verify_peer
                .or(file.tls_verify_peer)
                .unwrap_or(false),
            fail_if_no_peer_cert: args
                .tls_fail_if_no_peer_cert
                .or(file.tls_fail_if_no_peer_cert)
                .unwrap_or(false),
            cert_login_from: args.ssl_cert_login_from.or(file.ssl_cert_login_from),
            names: TlsSettingNames {
                listen: sources.name("amqps_listen"),
                cert: sources.name("tls_cert"),
                key: sources.name("tls_key"),
                ca: sources.name("tls_ca"),
            },
        };
        if let Some(from) = &tls.cert_login_from {
            if CertLoginFrom::try_from_name(from).is_none() {
                return Err(StartupError(format!(
                    "{}: '{from}' is not common_name or distinguished_name",
                    sources.name("ssl_cert_login_from")
                )));
            }
        }
        check_tls(&tls, &sources, &mut warnings)?;

        let management_listen = optional_listener(
            args.management_listen.or(file.management_listen),
            "0.0.0.0:15672",
            &sources.name("management_listen"),
        )?;
        let management_tls_names = sources.name("management_tls_listen");
        let (management_tls_listen, _) = optional_listener(
            args.management_tls_listen.or(file.management_tls_listen),
            "none",
            &management_tls_names,
        )?;
        if management_tls_listen.is_enabled() && (tls.cert.is_none() || tls.key.is_none()) {
            return Err(StartupError(format!(
                "{management_tls_names}: the management API over TLS needs a server certificate \
                 and its private key; give them with --tls-cert FILE and --tls-key FILE"
            )));
        }
        let prometheus_listen = optional_listener(
            args.prometheus_listen.or(file.prometheus_listen),
            "0.0.0.0:15692",
            &sources.name("prometheus_listen"),
        )?;
        let load_definitions = args.load_definitions.or(file.load_definitions);

        let log = LogSettings {
            format: match args
                .log_format
                .or(file.log_format)
                .as_deref()
                .unwrap_or("text")
            {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(StartupError(format!(
                        "{}: '{other}' is not a log format; use text or json",
                        sources.name("log_format")
                    )))
                }
            },
            file: args.log_file.or(file.log_file),
            level: args
                .log_level
                .or(file.log_level)
                .or_else(|| std::env::var("RUST_LOG").ok())
                .unwrap_or_else(|| "info".into()),
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
            return Err(StartupError(format!(
                "{}: '{}' is not a log level or filter ({e}); use error, warn, info, debug or \
                 trace",
                sources.name("log_level"),
                log.level
            )));
        }

        let defaults = Config::default();
        let mut frame_max = args
            .frame_max
            .or(file.frame_max)
            .unwrap_or(defaults.frame_max);
        if frame_max < warren_protocol::FRAME_MIN_SIZE {
            warnings.push(format!(
                "{} {frame_max} is below AMQP's minimum frame size; using {}",
                sources.name("frame_max"),
                warren_protocol::FRAME_MIN_SIZE
            ));
            frame_max = warren_protocol::FRAME_MIN_SIZE;
        }
        let watermark = match args
            .memory_high_watermark
            .or(file.memory_high_watermark.map(NumberOrText::into_text))
        {
            Some(text) => Watermark::parse(&text).map_err(|e| {
                StartupError(format!("{}: {e}", sources.name("memory_high_watermark")))
            })?,
            None => Watermark::default(),
        };
        let consumer_timeout = match args
            .consumer_timeout
            .or(file.consumer_timeout.map(MillisOrOff::into_text))
        {
            Some(text) => parse_consumer_timeout(&text)
                .map_err(|e| StartupError(format!("{}: {e}", sources.name("consumer_timeout"))))?,
            None => defaults.consumer_timeout,
        };
        // Fields not settable here keep their defaults (none today; kept for the next one).
        #[allow(clippy::needless_update)]
        let config = Config {
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            frame_max,
            channel_max: args
                .channel_max
                .or(file.channel_max)
                .unwrap_or(defaults.channel_max),
            heartbeat: args
                .heartbeat
                .or(file.heartbeat)
                .unwrap_or(defaults.heartbeat),
            default_user: args
                .default_user
                .or(file.default_user)
                .unwrap_or(defaults.default_user),
            default_pass: args
                .default_pass
                .or(file.default_pass)
                .unwrap_or(defaults.default_pass),
            default_user_loopback_only: !args
                .default_user_remote
                .or(file.default_user_remote)
                .unwrap_or(false),
            memory_high_watermark: watermark.bytes(super::memory::available_memory()),
            disk_free_limit: args
                .disk_free_limit
                .or(file.disk_free_limit)
                .unwrap_or(defaults.disk_free_limit),
            max_message_size: args
                .max_message_size
                .or(file.max_message_size)
                .unwrap_or(defaults.max_message_size),
            handshake_timeout: args
                .handshake_timeout
                .or(file.handshake_timeout)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(
                    defaults.handshake_timeout,
                    std::time::Duration::from_secs_f64,
                ),
            connection_max: args
                .connection_max
                .or(file.connection_max)
                .unwrap_or(defaults.connection_max),
            honour_channel_flow: args
                .honour_channel_flow
                .or(file.honour_channel_flow)
                .unwrap_or(defaults.honour_channel_flow),
            load_definitions: load_definitions.clone(),
            consumer_timeout,
        };
        Ok(Settings {
            config,
            listen,
            tls,
            management_listen: management_listen.0,
            management_listen_explicit: management_listen
                .1
                .then(|| sources.name("management_listen")),
            management_tls_listen,
            management_tls_names,
            prometheus_listen: prometheus_listen.0,
            prometheus_listen_explicit: prometheus_listen
                .1
                .then(|| sources.name("prometheus_listen")),
            load_definitions,
            log,
            config_file: args.config,
            warnings,
        })
    }

    /// What the AMQPS listener serves (`crate::tls` loads it), when `--amqps-listen` is
    /// enabled; [`Settings::load`] already checked that the files are named.
    pub fn amqps(&self) -> Option<crate::tls::TlsSettings> {
        let tls = &self.tls;
        if !tls.listen.iter().any(ListenerSetting::is_enabled) {
            return None;
        }
        Some(crate::tls::TlsSettings {
            cert: tls.cert.clone()?,
            key: tls.key.clone()?,
            ca: tls.ca.clone(),
            verify_peer: tls.verify_peer,
            fail_if_no_peer_cert: tls.fail_if_no_peer_cert,
            login_from: tls
                .cert_login_from
                .as_deref()
                .and_then(CertLoginFrom::try_from_name)
                .unwrap_or_default(),
        })
    }

    /// The certificate for the management API over TLS, when `--management-tls-listen` is set:
    /// the AMQPS certificate and key, without asking browsers for client certificates.
    pub fn management_tls(&self) -> Option<crate::tls::TlsSettings> {
        if !self.management_tls_listen.is_enabled() {
            return None;
        }
        Some(crate::tls::TlsSettings {
            cert: self.tls.cert.clone()?,
            key: self.tls.key.clone()?,
            ca: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
            login_from: CertLoginFrom::default(),
        })
    }

    /// A TLS file that cannot be used, as a startup error that names the file and the setting
    /// that named it (`--tls-cert: cannot read certificate file …`).
    pub fn tls_error(&self, e: &crate::tls::TlsError) -> StartupError {
        use crate::tls::TlsError;
        let names = &self.tls.names;
        let setting = match e {
            TlsError::Read { what, .. } | TlsError::Pem { what, .. } => match *what {
                "certificate" => &names.cert,
                "private key" => &names.key,
                _ => &names.ca,
            },
            TlsError::KeyMismatch { .. } => &names.key,
            TlsError::BadCa { .. } | TlsError::VerifyPeerWithoutCa => &names.ca,
        };
        StartupError(format!("{setting}: {e}"))
    }

    /// The log level the config file sets now (for SIGHUP), unless a flag or the environment
    /// set it, which keep winning.
    pub fn reload_log_level(&self) -> Result<Option<String>, StartupError> {
        let from_env_or_flag = std::env::var_os("WARREN_LOG_LEVEL").is_some()
            || std::env::args().any(|a| a == "--log-level" || a.starts_with("--log-level="));
        let Some(path) = &self.config_file else {
            return Ok(None);
        };
        if from_env_or_flag {
            return Ok(None);
        }
        Ok(read_file(path, "--config")?.log_level)
    }
}

/// An AMQPS listener needs a certificate and its key; verify_peer needs CAs. Certificates
/// without a listener serve nothing: a warning, as RabbitMQ's `ssl_options` without
/// `ssl_listeners`.
fn check_tls(
    tls: &TlsSettings,
    sources: &Sources<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), StartupError> {
    let names = &tls.names;
    if tls.listen.iter().any(ListenerSetting::is_enabled) {
        if tls.cert.is_none() {
            return Err(StartupError(format!(
                "{}: AMQP over TLS needs a server certificate; give it with --tls-cert FILE \
                 and its private key with --tls-key FILE",
                names.listen
            )));
        }
        if tls.key.is_none() {
            return Err(StartupError(format!(
                "{}: AMQP over TLS needs the private key of {} {}; give it with --tls-key FILE",
                names.listen,
                names.cert,
                tls.cert.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        if tls.verify_peer && tls.ca.is_none() {
            return Err(StartupError(format!(
                "{} needs --tls-ca FILE: the CA certificates that client certificates must \
                 chain to",
                sources.name("tls_verify_peer")
            )));
        }
        if tls.fail_if_no_peer_cert && !tls.verify_peer {
            warnings.push(format!(
                "{} has no effect without --tls-verify-peer: clients are not asked for a \
                 certificate",
                sources.name("tls_fail_if_no_peer_cert")
            ));
        }
    } else if tls.cert.is_some() {
        warnings.push(format!(
            "{} is set but no --amqps-listen is: not listening for AMQP over TLS",
            names.cert
        ));
    }
    Ok(())
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

fn parse_listeners(texts: &[String], name: &str) -> Result<Vec<ListenerSetting>, StartupError> {
    texts
        .iter()
        .map(|t| ListenerSetting::parse(t).map_err(|e| StartupError(format!("{name}: {e}"))))
        .collect()
}

/// A listener that defaults to `default`: returns the setting and whether it was explicitly
/// asked for (set, and not `none`).
fn optional_listener(
    value: Option<String>,
    default: &str,
    name: &str,
) -> Result<(ListenerSetting, bool), StartupError> {
    let explicit = value.is_some();
    let setting = ListenerSetting::parse(value.as_deref().unwrap_or(default))
        .map_err(|e| StartupError(format!("{name}: {e}")))?;
    let requested = explicit && setting.is_enabled();
    Ok((setting, requested))
}

fn read_file(path: &Path, name: &str) -> Result<FileSettings, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StartupError(format!(
            "cannot read the config file {} (from {name}): {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(" line {}", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        StartupError(format!(
            "config file {}{line}: {}",
            path.display(),
            e.message().trim_end().replace('\n', " ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Settings, StartupError> {
        let matches = Args::command()
            .try_get_matches_from(std::iter::once("warren").chain(args.iter().copied()))
            .expect("flags parse");
        let parsed = Args::from_arg_matches(&matches).expect("args");
        Settings::from_parts(parsed, &matches)
    }

    /// packaging/warren.toml documents every key, each example value parses.
    #[test]
    fn the_example_file_documents_every_key_with_valid_values() {
        let example = include_str!("../../packaging/warren.toml");
        let mut seen = std::collections::BTreeSet::new();
        let mut toml_text = String::new();
        for line in example.lines() {
            let Some(setting) = line.strip_prefix("# ") else {
                continue;
            };
            let Some((key, _)) = setting.split_once(" = ") else {
                continue;
            };
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && seen.insert(key) {
                let value = setting.split(" # ").next().unwrap_or(setting);
                toml_text.push_str(value);
                toml_text.push('\n');
            }
        }
        let parsed: Result<FileSettings, _> = toml::from_str(&toml_text);
        assert!(parsed.is_ok(), "{parsed:?}\n{toml_text}");
        let documented: Vec<&str> = seen.into_iter().collect();
        let mut fields: Vec<&str> = FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(documented, fields);
    }

    /// Every key of [`FileSettings`].
    const FIELDS: [&str; 23] = [
        "listen",
        "amqps_listen",
        "tls_cert",
        "tls_key",
        "tls_ca",
        "tls_verify_peer",
        "tls_fail_if_no_peer_cert",
        "ssl_cert_login_from",
        "management_listen",
        "management_tls_listen",
        "prometheus_listen",
        "load_definitions",
        "log_format",
        "log_file",
        "log_level",
        "data_dir",
        "frame_max",
        "heartbeat",
        "channel_max",
        "default_user",
        "default_pass",
        "default_user_remote",
        "memory_high_watermark",
    ];

    #[test]
    fn consumer_timeout_is_milliseconds_or_false() {
        let ms = |n| Some(std::time::Duration::from_millis(n));
        let timeout = |args: &[&str]| load(args).map(|s| s.config.consumer_timeout);
        assert_eq!(timeout(&[]).expect("default"), ms(1_800_000));
        assert_eq!(
            timeout(&["--consumer-timeout", "500"]).expect("ms"),
            ms(500)
        );
        assert_eq!(
            timeout(&["--consumer-timeout", "false"]).expect("off"),
            None
        );
        assert!(timeout(&["--consumer-timeout", "soon"]).is_err());
        for (text, expected) in [
            ("consumer_timeout = false", None),
            ("consumer_timeout = 250", ms(250)),
        ] {
            let file: FileSettings = toml::from_str(text).expect("parses");
            let parsed = file.consumer_timeout.map(MillisOrOff::into_text);
            assert_eq!(parse_consumer_timeout(&parsed.expect("set")), Ok(expected));
        }
    }

    #[test]
    fn defaults_start_and_listen_like_rabbitmq() {
        let s = load(&[]).expect("defaults are valid");
        let addrs: Vec<String> = s.listen[0]
            .addrs()
            .iter()
            .map(|a| a.addr.to_string())
            .collect();
        assert_eq!(addrs, ["[::]:5672", "0.0.0.0:5672"]);
        assert_eq!(s.log.format, LogFormat::Text);
    }

    #[test]
    fn repeatable_listen_and_none() {
        let s = load(&["--listen", "127.0.0.1:1", "--listen", "[::1]:2"]).expect("valid");
        assert_eq!(s.listen.len(), 2);
        let s = load(&["--prometheus-listen", "none"]).expect("valid");
        assert_eq!(s.prometheus_listen, ListenerSetting::Disabled);
        let s = load(&["--prometheus-listen", "127.0.0.1:15693"]).expect("valid");
        assert_eq!(
            s.prometheus_listen_explicit.as_deref(),
            Some("--prometheus-listen")
        );
        let s = load(&[]).expect("valid");
        assert_eq!(s.prometheus_listen_explicit, None);
        assert_eq!(
            s.prometheus_listen.addrs()[0].addr.to_string(),
            "0.0.0.0:15692"
        );
    }

    #[test]
    fn management_listen_is_built_and_remembers_who_set_it() {
        let s = load(&["--management-listen", "127.0.0.1:15673"]).expect("valid");
        assert_eq!(
            s.management_listen_explicit.as_deref(),
            Some("--management-listen")
        );
        assert_eq!(s.management_listen.addrs()[0].addr.port(), 15673);
        let s = load(&[]).expect("valid");
        assert_eq!(s.management_listen_explicit, None);
        assert_eq!(
            s.management_listen.addrs()[0].addr.to_string(),
            "0.0.0.0:15672"
        );
        let s = load(&["--management-listen", "none"]).expect("valid");
        assert!(!s.management_listen.is_enabled());
    }

    #[test]
    fn amqps_needs_a_certificate_and_its_key() {
        let e = load(&["--amqps-listen", "127.0.0.1:5671"]).unwrap_err();
        assert!(
            e.0.starts_with("--amqps-listen:") && e.0.contains("--tls-cert"),
            "{e}"
        );
        let e = load(&["--amqps-listen", "5671", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(e.0.contains("--tls-key") && e.0.contains("c.pem"), "{e}");
        let e = load(&[
            "--amqps-listen=5671",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-verify-peer",
        ])
        .unwrap_err();
        assert!(e.0.starts_with("--tls-verify-peer needs --tls-ca"), "{e}");
        let s = load(&[
            "--amqps-listen=127.0.0.1:5671",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--ssl-cert-login-from=distinguished_name",
        ])
        .expect("valid");
        let tls = s.amqps().expect("an AMQPS listener");
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.login_from, CertLoginFrom::DistinguishedName);
        let s = load(&["--tls-cert=c.pem", "--tls-key=k.pem"]).expect("valid");
        assert!(s.amqps().is_none());
        assert!(s.warnings[0].contains("--tls-cert"), "{:?}", s.warnings);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = load(&["--listen", "nonsense"]).unwrap_err();
        assert!(e.0.starts_with("--listen: 'nonsense'"), "{e}");
        let e = load(&["--memory-high-watermark", "3 furlongs"]).unwrap_err();
        assert!(e.0.starts_with("--memory-high-watermark:"), "{e}");
        let e = load(&["--log-format", "xml"]).unwrap_err();
        assert!(e.0.contains("--log-format: 'xml'"), "{e}");
    }

    #[test]
    fn boolean_flags_take_no_value_or_a_boolish_one() {
        assert!(
            !load(&["--default-user-remote"])
                .expect("valid")
                .config
                .default_user_loopback_only
        );
        let s = load(&["--default-user-remote", "0"]).expect("valid");
        assert!(s.config.default_user_loopback_only);
        let s = load(&["--default-user-remote=yes"]).expect("valid");
        assert!(!s.config.default_user_loopback_only);
    }

    #[test]
    fn small_frame_max_is_raised_with_a_warning() {
        let s = load(&["--frame-max", "10"]).expect("valid");
        assert_eq!(s.config.frame_max, 4096);
        assert!(s.warnings[0].contains("--frame-max 10"), "{:?}", s.warnings);
    }

    #[test]
    fn file_values_lose_to_flags_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            "frame_max = 8192\nheartbeat = 7\nmemory_high_watermark = \"1GB\"\n\
             listen = \"127.0.0.1:5999\"\n",
        )
        .expect("write");
        let p = path.to_str().expect("utf-8");
        let s = load(&["--config", p, "--frame-max", "16384"]).expect("valid");
        assert_eq!(s.config.frame_max, 16384, "the flag wins");
        assert_eq!(s.config.heartbeat, 7, "the file beats the default");
        assert_eq!(s.config.memory_high_watermark, 1_000_000_000);
        assert_eq!(s.listen[0].addrs()[0].addr.port(), 5999);
        std::fs::write(&path, "listen = \"nowhere\"\n").expect("write");
        let e = load(&["--config", p]).unwrap_err();
        assert!(e.0.starts_with(&format!("`listen` in {p}:")), "{e}");
        std::fs::write(&path, "frame_maxx = 1\n").expect("write");
        let e = load(&["--config", p]).unwrap_err();
        assert!(e.0.contains("frame_maxx") && e.0.contains(p), "{e}");
    }
}
