//! Log output for the `warren` binary: text (coloured only on a terminal, never with `NO_COLOR`)
//! or JSON lines, to stderr or an appended file that SIGHUP reopens (rotation is logrotate's
//! job), with a level filter that SIGHUP can change without a restart.

use crate::config::settings::{LogFormat, LogSettings};
use crate::config::StartupError;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// `text` with control characters escaped (`\n`, `\u{1b}`…): names and reply texts come from
/// clients, and a newline in a queue or user name must not forge a log line.
pub fn log_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Where log lines go.
#[derive(Clone)]
enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: Arc<Mutex<File>>,
    },
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Sink::Stderr => SinkWriter::Stderr(std::io::stderr()),
            Sink::File { file, .. } => SinkWriter::File(file),
        }
    }
}

/// One log event's writer.
pub enum SinkWriter<'a> {
    /// stderr (line-buffered by the formatter: one write per event).
    Stderr(std::io::Stderr),
    /// The log file, locked for the event's one write.
    File(&'a Mutex<File>),
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SinkWriter::Stderr(e) => e.write(buf),
            SinkWriter::File(f) => f
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SinkWriter::Stderr(e) => e.flush(),
            SinkWriter::File(_) => Ok(()),
        }
    }
}

/// What SIGHUP changes at runtime.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    sink: Sink,
}

impl LogHandle {
    /// Applies a new level or filter directive.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.filter.reload(filter).map_err(|e| e.to_string())
    }

    /// Reopens the log file (after logrotate moved it); nothing to do on stderr.
    pub fn reopen(&self) -> std::io::Result<()> {
        if let Sink::File { path, file } = &self.sink {
            let fresh = open_log_file(path)?;
            *file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        Ok(())
    }
}

fn open_log_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the global subscriber.
pub fn init(settings: &LogSettings) -> Result<LogHandle, StartupError> {
    let sink = match &settings.file {
        None => Sink::Stderr,
        Some(path) => Sink::File {
            path: path.clone(),
            file: Arc::new(Mutex::new(open_log_file(path).map_err(|e| {
                StartupError(format!(
                    "cannot open the log file {} (--log-file): {}; check that its directory \
                     exists and is writable",
                    path.display(),
                    crate::config::io_reason(&e)
                ))
            })?)),
        },
    };
    let ansi = matches!(sink, Sink::Stderr)
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = EnvFilter::try_new(&settings.level).map_err(|e| StartupError(e.to_string()))?;
    let (filter, handle) = reload::Layer::new(filter);
    let output = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(sink.clone())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(sink.clone())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| StartupError(format!("cannot set up logging: {e}")))?;
    Ok(LogHandle {
        filter: handle,
        sink,
    })
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            log_safe("no queue 'q' in vhost '/'"),
            "no queue 'q' in vhost '/'"
        );
        assert_eq!(log_safe("a\nERROR b\u{1b}[31m"), "a\\nERROR b\\u{1b}[31m");
        assert_eq!(log_safe("héllo"), "héllo");
    }
}
