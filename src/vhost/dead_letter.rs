//! The vhost as its queues' [`QueueOwner`]: routes their dead letters and deletes queues whose
//! `x-expires` ran out. Called by a queue with no queue lock held (see the lock order in
//! `src/vhost.rs`).

use super::VHost;
use crate::message::Message;
use crate::queue::dead_letter::is_cycle;
use crate::queue::{DeadLetter, PushOutcome, Queue, QueueOwner};
use std::sync::Arc;

impl QueueOwner for VHost {
    /// RabbitMQ's `rabbit_dead_letter:publish`: a missing dead-letter exchange drops the message
    /// silently; the queues it reaches get it unless that would close an automatic cycle. A
    /// queue that refuses it (reject-publish) just loses it: dead-lettering is at most once.
    fn publish_dead_letters(&self, letters: Vec<DeadLetter>) {
        for letter in letters {
            let Ok(exchange) = self.exchange(&letter.message.exchange) else {
                continue;
            };
            let mut queues = self.route(&exchange, &letter.message);
            queues.retain(|q| {
                let cycle = is_cycle(&letter, &q.name);
                if cycle {
                    tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
                }
                !cycle
            });
            self.journal_dead_letter(&letter.message, &queues);
            for q in queues {
                let _: PushOutcome = q.push(letter.message.clone());
            }
        }
    }

    fn expire_queue(&self, queue: &Arc<Queue>) {
        self.remove_queue(queue);
    }
}

impl VHost {
    /// A persistent dead letter reaching durable queues is journaled like a publish, before any
    /// queue holds it (nobody waits for its fsync: there is no publisher to confirm to).
    fn journal_dead_letter(&self, message: &Message, queues: &[Arc<Queue>]) {
        if !message.properties.is_persistent() {
            return;
        }
        let Some(store) = self.store() else {
            return;
        };
        let durable: Vec<u32> = queues.iter().filter_map(|q| q.journal_id()).collect();
        if durable.is_empty() {
            return;
        }
        let (id, _) = store.publish(message, durable);
        let _ = message.persist_id.set(id);
    }
}
