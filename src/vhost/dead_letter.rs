//! The vhost as its queues' [`QueueOwner`]: routes their dead letters and deletes queues whose
//! `x-expires` ran out. Called by a queue with no queue lock held (see the lock order in
//! `src/vhost.rs`).

use super::VHost;
use crate::queue::dead_letter::is_cycle;
use crate::queue::{DeadLetter, Queue, QueueOwner};
use std::sync::Arc;

impl QueueOwner for VHost {
    /// RabbitMQ's `rabbit_dead_letter:publish`: a missing dead-letter exchange drops the message
    /// silently; the queues it reaches get it unless that would close an automatic cycle. A
    /// queue that refuses it (reject-publish) just loses it: dead-lettering is at most once.
    /// Goes through the publish pipeline like any publish (nobody waits for its journal write:
    /// there is no publisher to confirm to).
    fn publish_dead_letters(&self, letters: Vec<DeadLetter>) {
        for letter in letters {
            let _ = self.publish_dead_letter_taken(letter);
        }
    }

    /// The target queues' journal records are appended before the caller settles the source's
    /// copy (the journal keeps append order), so no crash leaves the message in neither.
    fn publish_dead_letter_taken(&self, letter: DeadLetter) -> bool {
        let Ok(exchange) = self.exchange(letter.message.exchange()) else {
            return false;
        };
        let keep = |q: &Arc<Queue>| {
            let cycle = is_cycle(&letter, &q.name);
            if cycle {
                tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
            }
            !cycle
        };
        let published = self.publish_where(&exchange, letter.message.clone(), keep);
        published.unroutable.is_none() && !published.refused
    }

    fn expire_queue(&self, queue: &Arc<Queue>) {
        self.remove_queue(queue);
    }
}
