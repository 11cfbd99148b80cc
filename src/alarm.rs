//! Resource alarms, as RabbitMQ's: the memory alarm (`vm_memory_high_watermark`: queued
//! messages and bodies still being received hold more than the watermark) and the disk free
//! alarm (`disk_free_limit`: the data directory's filesystem has less free space than the
//! limit). While either is on, connections that publish are not read from and are told so with
//! connection.blocked; consumers go on draining. Never touches a socket itself.

use crate::message::live_message_bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the watermark is checked.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How often free disk space is checked (RabbitMQ checks every 10 s at most; a statvfs is
/// cheap enough to do it more often, so publishers stop sooner when a disk fills fast).
const DISK_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Bytes of message bodies received but not yet whole messages (a publish's body frames so
/// far). A publisher streaming large bodies holds this memory before any queue does.
static ASSEMBLING_BYTES: AtomicU64 = AtomicU64::new(0);

/// Body bytes one publish in progress holds, counted in [`ASSEMBLING_BYTES`] until dropped.
#[derive(Default)]
pub struct AssemblingBytes(u64);

impl AssemblingBytes {
    /// Counts `n` more bytes.
    pub fn add(&mut self, n: usize) {
        self.0 += n as u64;
        ASSEMBLING_BYTES.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for AssemblingBytes {
    fn drop(&mut self) {
        ASSEMBLING_BYTES.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// What the memory alarm compares with its watermark.
pub fn memory_in_use() -> u64 {
    live_message_bytes() + ASSEMBLING_BYTES.load(Ordering::Relaxed)
}

/// Raises and clears the memory alarm until `stop` is cancelled.
pub async fn watch_memory(
    high_watermark: u64,
    alarm: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let used = memory_in_use();
        let over = used > high_watermark;
        if over != *alarm.borrow() {
            if over {
                warn!(used, high_watermark, "memory alarm: blocking publishers");
            } else {
                info!(
                    used,
                    high_watermark, "memory alarm cleared: unblocking publishers"
                );
            }
            alarm.send_replace(over);
        }
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
pub fn disk_free(path: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Raises and clears the disk free alarm until `stop` is cancelled (`limit` 0: never).
/// A filesystem that cannot be read counts as full, as in RabbitMQ: better to stop publishers
/// than to accept what cannot be written.
pub async fn watch_disk(
    data_dir: PathBuf,
    limit: u64,
    alarm: watch::Sender<bool>,
    stop: CancellationToken,
) {
    if limit == 0 {
        return;
    }
    let mut tick = tokio::time::interval(DISK_CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let free = match disk_free(&data_dir) {
            Ok(free) => free,
            Err(e) => {
                warn!(dir = %data_dir.display(), error = %e, "cannot read free disk space");
                0
            }
        };
        let low = free < limit;
        if low != *alarm.borrow() {
            if low {
                warn!(free, limit, "disk free alarm: blocking publishers");
            } else {
                info!(
                    free,
                    limit, "disk free alarm cleared: unblocking publishers"
                );
            }
            alarm.send_replace(low);
        }
    }
}

/// Raises the soft open-file limit to the hard limit, as RabbitMQ's start scripts ask for
/// (every connection is a file descriptor). Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            warn!(error = %e, "could not raise the open-file limit");
            return getrlimit(Resource::Nofile).current;
        }
    }
    limit.current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembling_bytes_are_counted_until_dropped() {
        let before = ASSEMBLING_BYTES.load(Ordering::Relaxed);
        let mut a = AssemblingBytes::default();
        a.add(1000);
        a.add(24);
        assert!(ASSEMBLING_BYTES.load(Ordering::Relaxed) >= before + 1024);
        drop(a);
        // Other tests may run meanwhile; this one's bytes are gone.
        assert!(ASSEMBLING_BYTES.load(Ordering::Relaxed) < before + 1024 || before > 0);
    }

    #[test]
    fn disk_free_reads_the_filesystem() {
        let free = disk_free(std::path::Path::new(".")).expect("statvfs");
        assert!(free > 0);
        assert!(disk_free(std::path::Path::new("/no/such/dir")).is_err());
    }
}
