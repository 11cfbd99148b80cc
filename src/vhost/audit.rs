//! What a vhost still holds for connections after they all closed: tests call this at teardown
//! (through `BrokerHandle::shutdown_and_audit`) to catch leaked consumers, exclusive or
//! reply-to queues that outlived their connection, and bindings to deleted queues.

use super::VHost;
use crate::exchange::Destination;

impl VHost {
    /// One line per resource that should be gone once no connection is open.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let vhost = &self.name;
        for q in self.queues.iter() {
            let consumers = q.consumer_count();
            if consumers > 0 {
                out.push(format!(
                    "vhost {vhost}: queue {} has {consumers} consumers",
                    q.name
                ));
            }
            if q.options.exclusive_owner.is_some() {
                out.push(format!(
                    "vhost {vhost}: exclusive queue {} outlived its connection",
                    q.name
                ));
            }
            if q.is_deleted() {
                out.push(format!(
                    "vhost {vhost}: deleted queue {} is still in the vhost",
                    q.name
                ));
            }
        }
        for q in self.reply_queues.iter() {
            out.push(format!(
                "vhost {vhost}: reply-to queue {} outlived its channel",
                q.name
            ));
        }
        for x in self.exchanges.iter() {
            for b in x.bindings() {
                if let Destination::Queue(q) = &b.destination {
                    let listed = self
                        .queues
                        .get(&q.name)
                        .is_some_and(|v| std::sync::Arc::ptr_eq(&v, q));
                    if q.is_deleted() || !listed {
                        out.push(format!(
                            "vhost {vhost}: exchange '{}' is still bound to deleted queue {}",
                            x.name, q.name
                        ));
                    }
                }
            }
        }
        out
    }
}
