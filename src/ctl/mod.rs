//! `warren ctl`: the command-line tool over the management HTTP API (what people do with
//! rabbitmqctl and rabbitmqadmin). Written against RabbitMQ's documented paths and shapes, so it
//! drives a RabbitMQ node as well as Warren.
//!
//! Exit codes: 0 done, 1 the API refused (its `error` and `reason` printed), 2 usage error,
//! 69 the API could not be reached (as rabbitmqctl's "unavailable").

mod args;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum CtlError {
    /// The API answered with an error status.
    Api { status: u16, text: String },
    /// A command-line value that cannot be used (bad JSON, unreadable file).
    Usage(String),
    /// No answer: connection refused, timeout, garbage.
    Unreachable(String),
}

impl CtlError {
    fn exit_code(&self) -> u8 {
        match self {
            CtlError::Api { .. } => 1,
            CtlError::Usage(_) => 2,
            CtlError::Unreachable(_) => 69,
        }
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::Api { status, text } => write!(f, "{text} (HTTP {status})"),
            CtlError::Usage(text) | CtlError::Unreachable(text) => f.write_str(text),
        }
    }
}

/// Runs `warren ctl ARGS…`; `args` starts with the program name, then `ctl`.
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    // "warren ctl" is one program name for clap: its usage lines read `warren ctl list …`.
    let args =
        std::iter::once(std::ffi::OsString::from("warren ctl")).chain(args.into_iter().skip(2));
    let cli = match <args::Cli as clap::Parser>::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version exit 0 with their text; usage errors exit 2.
        Err(e) => {
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let client = match client::Client::new(&cli.url, &cli.username, &cli.password) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren ctl: {e}");
            return ExitCode::from(2);
        }
    };
    match commands::run(&client, &cli) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren ctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
