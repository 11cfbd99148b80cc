//! Wires a vhost to the store: which declares, deletes and bindings are written down (RabbitMQ's
//! rules of what survives a restart), and the restore of all of it at startup.

use crate::dedup;
use crate::exchange::delayed::{held_queue_name, HELD_QUEUE_PREFIX};
use crate::exchange::{Destination, Exchange, ExchangeKind, ExchangeOptions};
use crate::ids::{ConnectionId, DurableQueueId};
use crate::queue::{Queue, QueueOptions};
use crate::store::definitions::{
    table_from_hex, table_to_hex, BindingDef, Definitions, ExchangeDef,
};
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
    /// Where durable definitions go: nowhere once the vhost is deleted, so a declare racing
    /// the deletion cannot write down an object of a vhost that is gone.
    fn definitions_store(&self) -> Option<&Arc<Store>> {
        self.store().filter(|_| !self.is_deleted())
    }

    pub(crate) fn persist_exchange(&self, x: &Exchange) {
        let Some(store) = self.definitions_store() else {
            return;
        };
        if x.options.durable {
            store.add_exchange(ExchangeDef {
                vhost: self.name.clone(),
                name: x.name.to_string(),
                kind: x.options.kind.name().into(),
                auto_delete: x.options.auto_delete,
                internal: x.options.internal,
                arguments: table_to_hex(&x.options.arguments),
            });
            if let Some(delayed) = &x.delayed {
                let id = store.add_queue(&self.name, &held_queue_name(&x.name), String::new());
                delayed.attach_journal(store.clone(), DurableQueueId(id));
            }
            if let Some(cache) = x
                .dedup_cache()
                .filter(|_| dedup::wants_disk(&x.options.arguments))
            {
                let id =
                    store.add_queue(&self.name, &dedup::cache_queue_name(&x.name), String::new());
                cache.attach_journal(store.clone(), DurableQueueId(id));
            }
        }
    }

    pub(crate) fn forget_exchange(&self, x: &Exchange) {
        if let (Some(store), true) = (self.definitions_store(), x.options.durable) {
            store.remove_exchange(&self.name, &x.name);
            if x.delayed.is_some() {
                store.remove_queue(&self.name, &held_queue_name(&x.name));
            }
            if x.dedup_cache().is_some() && dedup::wants_disk(&x.options.arguments) {
                store.remove_queue(&self.name, &dedup::cache_queue_name(&x.name));
            }
        }
    }

    pub(crate) fn persist_queue(&self, q: &Queue) {
        let Some(store) = self.definitions_store() else {
            return;
        };
        if is_durable_queue(q) {
            let id = store.add_queue(&self.name, &q.name, table_to_hex(&q.options.arguments));
            q.attach_journal(store.clone(), DurableQueueId(id));
            if let Some(cache) = q.dedup_cache() {
                let id = store.add_queue(&self.name, &dedup::queue_cache_name(&q.name), "".into());
                cache.attach_journal(store.clone(), DurableQueueId(id));
            }
        }
    }

    pub(crate) fn forget_queue(&self, q: &Queue) {
        if let (Some(store), Some(_)) = (self.definitions_store(), q.journal_id()) {
            store.remove_queue(&self.name, &q.name);
            if q.deduplicates() {
                store.remove_queue(&self.name, &dedup::queue_cache_name(&q.name));
            }
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
        self.definitions_store()?;
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
        if let (Some(store), Some(def)) = (self.definitions_store(), def) {
            store.add_binding(def);
        }
    }

    pub(crate) fn forget_binding(&self, def: Option<BindingDef>) {
        if let (Some(store), Some(def)) = (self.definitions_store(), def) {
            store.remove_binding(&def);
        }
    }
}

/// Rebuilds every vhost from what the store recovered, then attaches the store so later
/// changes are written down. Messages go back to their queues in publish order; those
/// delivered before the restart come back with redelivered=true; those of queues that are gone
/// (deleted, or in a deleted vhost) are settled. A stream whose log is corrupt stops startup
/// (naming the segment file and byte offset), as a corrupt journal does.
pub fn restore(
    vhosts: &[Arc<VHost>],
    store: &Arc<Store>,
    recovered: Recovered,
) -> Result<(), crate::store::StoreError> {
    let mut found = Found::default();
    for vhost in vhosts {
        restore_definitions(vhost, store, &recovered.definitions, &mut found);
    }
    if let Some(e) = found.queues.values().find_map(|q| q.take_open_error()) {
        return Err(e);
    }
    let Found {
        queues: by_id,
        held: held_by_id,
        caches: cache_by_id,
        legacy_dedup,
    } = found;
    let mut restored = 0usize;
    let mut held_messages = Vec::new();
    let (now, now_ms) = (std::time::Instant::now(), crate::wall_clock::now_ms());
    for m in recovered.messages {
        for (queue_id, deliveries) in m.queues {
            if let Some(cache) = cache_by_id.get(&queue_id).and_then(CacheOwner::cache) {
                // Ids come back whole: they live in the headers.
                let whole = match m.message.is_paged() {
                    true => store.read_message(m.id),
                    false => None,
                };
                match whole
                    .as_ref()
                    .or((!m.message.is_paged()).then_some(&*m.message))
                {
                    Some(message) => cache.recover(message, m.id, now, now_ms),
                    None => store.settle(m.id, queue_id),
                }
                continue;
            }
            if let Some((vhost, x)) = held_by_id.get(&queue_id) {
                // Held messages come back whole: their headers say when they are due.
                let whole = match m.message.is_paged() {
                    true => store.read_message(m.id).map(Arc::new),
                    false => Some(m.message.clone()),
                };
                match whole {
                    Some(message) => held_messages.push((vhost.clone(), x.clone(), message)),
                    None => store.settle(m.id, queue_id),
                }
                restored += 1;
                continue;
            }
            match by_id.get(&queue_id) {
                Some(q) => {
                    if legacy_dedup.contains(&queue_id) {
                        // A journal from before queues journaled their caches: ids of the
                        // messages still in the queue count again (their TTL starts again now).
                        let whole = match m.message.is_paged() {
                            true => store.read_message(m.id),
                            false => None,
                        };
                        let _ = q.is_duplicate(whole.as_ref().unwrap_or(&m.message));
                    }
                    q.push_recovered(m.message.clone(), deliveries);
                    restored += 1;
                }
                // The queue is gone (its delete was written, its settles were not): settle.
                None => store.settle(m.id, queue_id),
            }
        }
    }
    for vhost in vhosts {
        vhost.attach_store(store.clone());
    }
    // After the store is attached: one already due is routed at once, and its copies for
    // durable queues must be journaled.
    super::delayed::hold_all_recovered(held_messages);
    info!(
        vhosts = vhosts.len(),
        queues = by_id.len(),
        messages = restored,
        "vhosts restored"
    );
    Ok(())
}

/// What the journal's queue ids stand for, once the definitions are restored: queues, delayed
/// exchanges' held messages (with their vhost), deduplication exchanges' remembered ids.
#[derive(Default)]
struct Found {
    queues: HashMap<DurableQueueId, Arc<Queue>>,
    held: HashMap<DurableQueueId, (Arc<VHost>, Arc<Exchange>)>,
    caches: HashMap<DurableQueueId, CacheOwner>,
    /// Deduplicating queues whose caches were not journaled (see `restore_definitions`).
    legacy_dedup: std::collections::HashSet<DurableQueueId>,
}

/// What a journaled deduplication cache belongs to.
enum CacheOwner {
    Exchange(Arc<Exchange>),
    Queue(Arc<Queue>),
}

impl CacheOwner {
    fn cache(&self) -> Option<&dedup::DedupCache> {
        match self {
            CacheOwner::Exchange(x) => x.dedup_cache(),
            CacheOwner::Queue(q) => q.dedup_cache(),
        }
    }
}

/// One vhost's durable exchanges, queues and bindings.
fn restore_definitions(
    vhost: &Arc<VHost>,
    store: &Arc<Store>,
    defs: &Definitions,
    found: &mut Found,
) {
    // Policies first, so each queue and exchange restored below starts with its own.
    for p in defs.policies.iter().filter(|p| p.vhost == vhost.name) {
        vhost.restore_policy(p);
    }
    let args = |hex: &str| table_from_hex(hex).unwrap_or_default();
    let mut queue_caches = Vec::new();
    let mut restored_here = Vec::new();
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
    for q in defs.queues.iter().filter(|q| q.vhost == vhost.name) {
        if let Some(exchange) = q.name.strip_prefix(dedup::CACHE_QUEUE_PREFIX) {
            // A deduplication exchange's remembered ids, not a queue.
            match vhost
                .exchange(exchange)
                .ok()
                .filter(|x| x.dedup_cache().is_some())
            {
                Some(x) => {
                    if let Some(cache) = x.dedup_cache() {
                        cache.attach_journal(store.clone(), DurableQueueId(q.id));
                    }
                    found
                        .caches
                        .insert(DurableQueueId(q.id), CacheOwner::Exchange(x));
                }
                None => store.remove_queue(&vhost.name, &q.name),
            }
            continue;
        }
        if q.name.starts_with(dedup::QUEUE_CACHE_PREFIX) {
            // A deduplicating queue's remembered ids: attached once the queues are back.
            queue_caches.push(q);
            continue;
        }
        if let Some(exchange) = q.name.strip_prefix(HELD_QUEUE_PREFIX) {
            // A delayed exchange's held messages, not a queue.
            if let Some(x) = vhost
                .exchange(exchange)
                .ok()
                .filter(|x| x.delayed.is_some())
            {
                if let Some(delayed) = &x.delayed {
                    delayed.attach_journal(store.clone(), DurableQueueId(q.id));
                }
                found.held.insert(DurableQueueId(q.id), (vhost.clone(), x));
            } else {
                store.remove_queue(&vhost.name, &q.name); // its exchange is gone
            }
            continue;
        }
        let options = QueueOptions {
            durable: true,
            auto_delete: false,
            exclusive_owner: None,
            arguments: args(&q.arguments),
        };
        match vhost.declare_queue(ShortStr::truncated(&q.name), true, options) {
            Ok(queue) => {
                queue.attach_journal(store.clone(), DurableQueueId(q.id));
                restored_here.push((DurableQueueId(q.id), queue.clone()));
                found.queues.insert(DurableQueueId(q.id), queue);
            }
            Err(e) => warn!(queue = %q.name, ?e, "could not restore a durable queue"),
        }
    }
    for c in queue_caches {
        let owner = c
            .name
            .strip_prefix(dedup::QUEUE_CACHE_PREFIX)
            .and_then(|name| vhost.queue(name).ok())
            .filter(|q| q.journal_id().is_some());
        match owner
            .as_ref()
            .and_then(|q| q.dedup_cache().map(|cache| (q, cache)))
        {
            Some((q, cache)) => {
                cache.attach_journal(store.clone(), DurableQueueId(c.id));
                found
                    .caches
                    .insert(DurableQueueId(c.id), CacheOwner::Queue(q.clone()));
            }
            None => store.remove_queue(&vhost.name, &c.name), // its queue is gone
        }
    }
    // Deduplicating queues from before queues journaled their caches: their caches are
    // journaled from now on, and learn this once the ids of the messages they still hold.
    for (id, q) in &restored_here {
        if let Some(cache) = q.dedup_cache().filter(|c| !c.is_journaled()) {
            let name = dedup::queue_cache_name(&q.name);
            let cache_id = store.add_queue(&vhost.name, &name, String::new());
            cache.attach_journal(store.clone(), DurableQueueId(cache_id));
            found.legacy_dedup.insert(*id);
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
}
