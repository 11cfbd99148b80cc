//! The one publish pipeline: basic.publish (channel/publish.rs), dead letters
//! (vhost/dead_letter.rs) and any later publisher (the management API) all go through
//! [`VHost::publish`]:
//!
//! 1. route: the exchange (and exchange-to-exchange bindings, alternate exchanges, CC/BCC)
//!    names the destination queues; BCC leaves the message after routing;
//! 2. admit: each queue takes the message or refuses it (`x-overflow` reject-publish), before
//!    anything is written, so a refused copy never reaches the journal;
//! 3. journal: a persistent message admitted by durable queues is written once for all of them
//!    (the store assigns its id there and nowhere else);
//! 4. enqueue: each admitting queue appends it and delivers what its consumers can take.
//!
//! The result tells the publisher's channel what to confirm (the journal position to wait for,
//! or a nack for a refusal) and what to return (an unroutable message).

use super::VHost;
use crate::exchange::{sender_selected, Exchange};
use crate::ids::{DurableQueueId, JournalSeq};
use crate::message::Message;
use crate::queue::Queue;
use std::sync::Arc;

/// What became of a published message.
#[must_use]
pub struct Published {
    /// The message reached no queue: here it is (without BCC) for basic.return when the
    /// publisher asked for `mandatory`.
    pub unroutable: Option<Arc<Message>>,
    /// Some queue refused it (reject-publish): a confirming publisher gets basic.nack. No
    /// basic.return for that, even when mandatory, as in RabbitMQ.
    pub refused: bool,
    /// The journal sequence number its confirm must wait for, when it was journaled.
    pub journal_seq: Option<JournalSeq>,
    /// How many queues it was routed to (before they admitted it; 0 for a held delayed
    /// message): an exchange's `publish_out`.
    pub routed: usize,
}

impl VHost {
    /// Routes `message` from `exchange`, lets each queue admit it, journals it for the durable
    /// queues that did, and enqueues it (see the module doc).
    pub fn publish(&self, exchange: &Arc<Exchange>, message: Arc<Message>) -> Published {
        self.publish_where(exchange, message, |_| true)
    }

    /// Routes a held message of a delayed exchange now that it is due.
    pub(super) fn route_now(&self, exchange: &Arc<Exchange>, message: Arc<Message>) -> Published {
        self.route_and_enqueue(exchange, message, |_| true, |_, _| {})
    }

    /// [`VHost::publish`] to the routed queues `keep` accepts (dead letters skip the queues
    /// that would close a dead-letter cycle).
    pub(crate) fn publish_where(
        &self,
        exchange: &Arc<Exchange>,
        message: Arc<Message>,
        keep: impl FnMut(&Arc<Queue>) -> bool,
    ) -> Published {
        self.publish_observed(exchange, message, keep, |_, _| {})
    }

    /// [`VHost::publish_where`], showing `routed` the message and its queues once routed and
    /// before any queue holds it (the firehose traces `publish.<exchange>` there, so the trace
    /// of a publish comes before the trace of its delivery). A delayed exchange's message with
    /// an `x-delay` is held instead (shown with no queues).
    pub(crate) fn publish_observed(
        &self,
        exchange: &Arc<Exchange>,
        message: Arc<Message>,
        keep: impl FnMut(&Arc<Queue>) -> bool,
        routed: impl FnOnce(&Arc<Message>, &[Arc<Queue>]),
    ) -> Published {
        if let Some(delayed) = &exchange.delayed {
            if let Some(delay) = crate::exchange::delayed::delay_of(&message) {
                routed(&message, &[]);
                let journal_seq = self.hold_delayed(exchange, delayed, message, delay);
                return Published {
                    unroutable: None,
                    refused: false,
                    journal_seq,
                    routed: 0,
                };
            }
        }
        self.route_and_enqueue(exchange, message, keep, routed)
    }

    /// Steps 1–4 of the module doc.
    fn route_and_enqueue(
        &self,
        exchange: &Arc<Exchange>,
        message: Arc<Message>,
        keep: impl FnMut(&Arc<Queue>) -> bool,
        routed: impl FnOnce(&Arc<Message>, &[Arc<Queue>]),
    ) -> Published {
        let mut queues = self.route(exchange, &message);
        queues.retain(keep);
        routed(&message, &queues);
        let message = sender_selected::without_bcc(message);
        if queues.is_empty() {
            return Published {
                unroutable: Some(message),
                refused: false,
                journal_seq: None,
                routed: 0,
            };
        }
        let routed = queues.len();
        // A duplicate (`x-message-deduplication` queues) is dropped, not refused: the
        // publisher's confirm is still an ack.
        let mut duplicates = 0;
        queues.retain(|q| {
            if q.is_duplicate(&message) {
                duplicates += 1;
                return false;
            }
            q.admit(&message)
        });
        let refused = queues.len() + duplicates < routed;
        let mut journal_seq = self.journal(&message, &queues);
        for q in queues {
            // A stream writes its own log; its confirm waits for that log's fsync.
            journal_seq = journal_seq.max(q.enqueue_logged(message.clone()));
        }
        Published {
            unroutable: None,
            refused,
            journal_seq,
            routed,
        }
    }

    /// Writes a persistent message admitted by durable queues to the journal, once for all of
    /// them, before any queue holds it (so no settle can precede its publish record).
    /// Quorum queues journal every message, transient ones too (RabbitMQ keeps all of a
    /// quorum queue's messages on disk), so only they are named for a transient message.
    fn journal(&self, message: &Message, queues: &[Arc<Queue>]) -> Option<JournalSeq> {
        let persistent = message.properties.is_persistent();
        if !persistent && !queues.iter().any(|q| q.journals_every_message()) {
            return None;
        }
        let store = self.store()?;
        let durable: Vec<DurableQueueId> = queues
            .iter()
            .filter(|q| q.queue_type() != crate::queue::QueueType::Stream)
            .filter(|q| persistent || q.journals_every_message())
            .filter_map(|q| q.journal_id())
            .collect();
        if durable.is_empty() {
            return None;
        }
        Some(store.publish(message, durable))
    }
}

#[cfg(test)]
mod tests {
    use crate::message::Message;
    use crate::queue::QueueOptions;
    use crate::store::record::Record;
    use crate::store::Store;
    use crate::vhost::VHost;
    use bytes::Bytes;
    use warren_protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};

    fn persistent(body: &'static [u8]) -> std::sync::Arc<Message> {
        let properties = BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        };
        std::sync::Arc::new(Message::new(
            ShortStr::empty(),
            "full".into(),
            properties,
            Bytes::from_static(body),
        ))
    }

    /// Every record the journal wrote, in order.
    fn records(dir: &std::path::Path) -> Vec<Record> {
        let mut segments: Vec<_> = std::fs::read_dir(dir.join("messages"))
            .expect("messages dir")
            .map(|e| e.expect("entry").path())
            .collect();
        segments.sort();
        let mut out = Vec::new();
        for path in segments {
            let mut bytes = Bytes::from(std::fs::read(path).expect("segment"));
            while !bytes.is_empty() {
                let (record, len) = Record::decode(&bytes).expect("a whole record");
                out.push(record);
                let _ = bytes.split_to(len);
            }
        }
        out
    }

    /// A durable reject-publish queue that refuses a persistent message leaves no trace of it in
    /// the journal: no publish record followed by a settle record.
    #[test]
    fn a_refused_copy_is_never_journaled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = Store::open(dir.path()).expect("store opens");
        let vhost = VHost::new("/");
        vhost.attach_store(store.clone());
        let mut arguments = FieldTable::new();
        arguments.insert("x-max-length".into(), FieldValue::I32(1));
        arguments.insert(
            "x-overflow".into(),
            FieldValue::LongStr(Bytes::from_static(b"reject-publish")),
        );
        let options = QueueOptions {
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments,
        };
        vhost
            .declare_queue("full".into(), false, options)
            .expect("declared");
        let default = vhost.exchange("").expect("default exchange");
        let first = vhost.publish(&default, persistent(b"one"));
        assert!(!first.refused && first.unroutable.is_none());
        assert!(
            first.journal_seq.is_some(),
            "journaled for the durable queue"
        );
        let second = vhost.publish(&default, persistent(b"two"));
        assert!(second.refused, "the queue is full");
        assert_eq!(
            second.journal_seq, None,
            "nothing to wait for: nothing written"
        );
        store.close();
        let records = records(dir.path());
        assert_eq!(records.len(), 1, "one publish record only: {records:?}");
        assert!(matches!(&records[0], Record::Publish { body, .. } if &body[..] == b"one"));
    }
}
