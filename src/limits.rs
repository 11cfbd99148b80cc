//! Limits a client cannot grow past: the node's connection count (RabbitMQ's `connection_max`)
//! and the negotiated channel count. Each answers with RabbitMQ's reply code and text.

use crate::error::AmqpError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Open client connections on this node.
#[derive(Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

/// One counted connection; the count drops when it does.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Counts one more connection, unless `max` are open already (530, RabbitMQ's text).
    pub fn try_acquire(&self, max: usize) -> Result<ConnectionSlot, AmqpError> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ConnectionSlot(self.0.clone()))
            .map_err(|_| {
                AmqpError::not_allowed(format!(
                    "connection refused: node connection limit ({max}) is reached"
                ))
            })
    }

    /// Connections open now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// channel.open when `open` channels exist: RabbitMQ limits the *count* by the negotiated
/// channel_max (0 = none), whatever the channel number (1..=65535).
pub fn check_channel_count(open: usize, channel_max: u16) -> Result<(), AmqpError> {
    if channel_max != 0 && open >= usize::from(channel_max) {
        return Err(AmqpError::not_allowed(format!(
            "number of channels opened ({open}) has reached the negotiated channel_max ({channel_max})"
        )));
    }
    Ok(())
}

/// The client's channel_max in connection.tune-ok: RabbitMQ refuses one above the server's
/// (and 0, "no limit", when the server has one) with 530 caused by connection.tune.
pub fn negotiate_channel_max(client: u16, server: u16) -> Result<u16, AmqpError> {
    if server != 0 && (client == 0 || client > server) {
        let detail = if client == 0 { " (no limit)" } else { "" };
        return Err(AmqpError::not_allowed(format!(
            "negotiated channel_max = {client}{detail} is higher than the maximum allowed value ({server})"
        ))
        .with_method(10, 30));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_count_stops_at_max_and_frees_on_drop() {
        let count = ConnectionCount::default();
        let a = count.try_acquire(2).expect("first");
        let _b = count.try_acquire(2).expect("second");
        let err = count.try_acquire(2).err().expect("third refused");
        assert_eq!(
            err.reply_text(),
            "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
        );
        drop(a);
        assert_eq!(count.get(), 1);
        assert!(count.try_acquire(2).is_ok());
    }

    #[test]
    fn channel_count_not_number_is_limited() {
        assert!(check_channel_count(0, 1).is_ok());
        let err = check_channel_count(1, 1).unwrap_err();
        assert_eq!(
            err.reply_text(),
            "NOT_ALLOWED - number of channels opened (1) has reached the negotiated channel_max (1)"
        );
        assert!(check_channel_count(5000, 0).is_ok(), "0 = no limit");
    }

    #[test]
    fn channel_max_above_the_servers_is_refused() {
        assert_eq!(negotiate_channel_max(2047, 2047), Ok(2047));
        assert_eq!(negotiate_channel_max(10, 2047), Ok(10));
        assert_eq!(negotiate_channel_max(0, 0), Ok(0));
        assert_eq!(negotiate_channel_max(5000, 0), Ok(5000));
        let err = negotiate_channel_max(2048, 2047).unwrap_err();
        assert_eq!(
            err.reply_text(),
            "NOT_ALLOWED - negotiated channel_max = 2048 is higher than the maximum allowed value (2047)"
        );
        assert_eq!((err.class_id, err.method_id), (10, 30));
        let err = negotiate_channel_max(0, 2047).unwrap_err();
        assert!(err.text.contains("= 0 (no limit) is higher"), "{err}");
    }
}
