//! Wires a vhost to the store: which declares, deletes and bindings are written down (RabbitMQ's
//! rules of what survives a restart), and the restore of all of it at startup.

use crate::exchange::{Destination, Exchange, ExchangeKind, ExchangeOptions};
use crate::ids::{ConnectionId, DurableQueueId};
use crate::queue::{Queue, QueueOptions};
use crate::store::definitions::{table_from_hex, table_to_hex, BindingDef, ExchangeDef};
use crate::store::{Recovered, Store};
use crate::vhost::VHost;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{info, warn};
use warren_protocol::{FieldTable, ShortStr};

/// A queue survives a restart when it is durable and neither exclusive nor auto-delete.
fn is_durable_queue(q: &Queue) -> bool {
    q.options.durable && q.options.exclusive_owner.is_none() && !q.options.auto_delete
}

impl VHost {
    pub(crate) fn persist_exchange(&self, x: &Exchange) {
        let Some(store) = self.store() else { return };
        if x.options.durable {
            store.add_exchange(ExchangeDef {
                vhost: self.name.clone(),
                name: x.name.to_string(),
                kind: x.options.kind.name().into(),
                auto_delete: x.options.auto_delete,
                internal: x.options.internal,
                arguments: table_to_hex(&x.options.arguments),
            });
        }
    }

    pub(crate) fn forget_exchange(&self, x: &Exchange) {
        if let (Some(store), true) = (self.store(), x.options.durable) {
            store.remove_exchange(&self.name, &x.name);
        }
    }

    pub(crate) fn persist_queue(&self, q: &Queue) {
        let Some(store) = self.store() else { return };
        if is_durable_queue(q) {
            let id = store.add_queue(&self.name, &q.name, table_to_hex(&q.options.arguments));
            q.attach_journal(store.clone(), DurableQueueId(id));
        }
    }

    pub(crate) fn forget_queue(&self, q: &Queue) {
        if let (Some(store), Some(_)) = (self.store(), q.journal_id()) {
            store.remove_queue(&self.name, &q.name);
        }
    }

    /// The definition of a binding, if both of its ends survive restarts.
    pub(crate) fn binding_def(
        &self,
        source: &Exchange,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Option<BindingDef> {
        self.store()?;
        let (kind, name) = match destination {
            Destination::Queue(q) if is_durable_queue(q) => ("queue", q.name.to_string()),
            Destination::Exchange(x) if x.options.durable => ("exchange", x.name.to_string()),
            _ => return None,
        };
        source.options.durable.then(|| BindingDef {
            vhost: self.name.clone(),
            source: source.name.to_string(),
            destination_kind: kind.into(),
            destination: name,
            routing_key: routing_key.into(),
            arguments: table_to_hex(arguments),
        })
    }

    pub(crate) fn persist_binding(&self, def: Option<BindingDef>) {
        if let (Some(store), Some(def)) = (self.store(), def) {
            store.add_binding(def);
        }
    }

    pub(crate) fn forget_binding(&self, def: Option<BindingDef>) {
        if let (Some(store), Some(def)) = (self.store(), def) {
            store.remove_binding(&def);
        }
    }
}

/// Rebuilds `vhost` from what the store recovered, then attaches the store so later changes
/// are written down. Messages go back to their queues in publish order; those delivered before
/// the restart come back with redelivered=true.
pub fn restore(vhost: &VHost, store: &Arc<Store>, recovered: Recovered) {
    let defs = recovered.definitions;
    // Policies first, so each queue and exchange restored below starts with its own.
    for p in defs.policies.iter().filter(|p| p.vhost == vhost.name) {
        vhost.restore_policy(p);
    }
    let args = |hex: &str| table_from_hex(hex).unwrap_or_default();
    for x in defs.exchanges.iter().filter(|x| x.vhost == vhost.name) {
        let Some(kind) = ExchangeKind::from_name(&x.kind) else {
            continue;
        };
        let options = ExchangeOptions {
            kind,
            durable: true,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: args(&x.arguments),
        };
        if let Err(e) = vhost.declare_exchange(ShortStr::truncated(&x.name), &x.kind, options) {
            warn!(exchange = %x.name, ?e, "could not restore a durable exchange");
        }
    }
    let mut by_id: HashMap<DurableQueueId, Arc<Queue>> = HashMap::new();
    for q in defs.queues.iter().filter(|q| q.vhost == vhost.name) {
        let options = QueueOptions {
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments: args(&q.arguments),
        };
        match vhost.declare_queue(ShortStr::truncated(&q.name), true, options) {
            Ok(queue) => {
                queue.attach_journal(store.clone(), DurableQueueId(q.id));
                by_id.insert(DurableQueueId(q.id), queue);
            }
            Err(e) => warn!(queue = %q.name, ?e, "could not restore a durable queue"),
        }
    }
    for b in defs.bindings.iter().filter(|b| b.vhost == vhost.name) {
        let key = ShortStr::truncated(&b.routing_key);
        let result = match b.destination_kind.as_str() {
            "queue" => vhost.bind_queue(
                &b.source,
                &b.destination,
                ConnectionId(0),
                key,
                args(&b.arguments),
            ),
            _ => vhost.bind_exchange(&b.source, &b.destination, key, args(&b.arguments)),
        };
        if let Err(e) = result {
            warn!(source = %b.source, destination = %b.destination, ?e, "could not restore a binding");
        }
    }
    let mut restored = 0usize;
    for m in recovered.messages {
        for (queue_id, deliveries) in m.queues {
            match by_id.get(&queue_id) {
                Some(q) => {
                    q.push_recovered(m.message.clone(), deliveries);
                    restored += 1;
                }
                // The queue is gone (its delete was written, its settles were not): settle.
                None => store.settle(m.id, queue_id),
            }
        }
    }
    vhost.attach_store(store.clone());
    info!(vhost = %vhost.name, exchanges = defs.exchanges.len(), queues = by_id.len(), messages = restored, "vhost restored");
}
