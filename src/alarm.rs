//! The memory alarm (RabbitMQ's `vm_memory_high_watermark`): while queued messages hold more
//! than the watermark, connections that publish are not read from and are told so with
//! connection.blocked; consumers go on draining. Never touches a socket itself.

use crate::message::live_message_bytes;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the watermark is checked.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Raises and clears the alarm until `stop` is cancelled.
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
        let used = live_message_bytes();
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
