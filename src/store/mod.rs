//! Durability: durable definitions (`metadata`, a redb database) and persistent messages
//! (`journal`), all in the data directory, no external service. Never sees frames or sockets.
//!
//! Only what RabbitMQ keeps survives: durable exchanges, durable queues that are neither
//! exclusive nor auto-delete, bindings between durable things, and persistent messages
//! (delivery mode 2) in durable queues.

pub mod definitions;
pub mod journal;
pub mod metadata;
pub mod record;

use crate::ids::{DurableQueueId, JournalSeq, MessageId};
use crate::message::Message;
use bytes::Bytes;
use definitions::{BindingDef, Definitions, ExchangeDef};
use journal::{Effect, Journal};
use metadata::{Change, Metadata};
use record::Record;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::info;
use warren_protocol::ContentHeader;

/// Why the store could not open or recover.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{}: {1}", .0.display())]
    Io(PathBuf, std::io::Error),
    /// A damaged journal record that is not a torn tail: startup stops rather than lose data.
    #[error("journal corrupted in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The legacy definitions file could not be read.
    #[error("{}: {1}", .0.display())]
    Definitions(PathBuf, String),
    /// The `--load-definitions` file could not be read or imported.
    #[error("{}: {1}", .0.display())]
    LoadDefinitions(PathBuf, String),
    /// The metadata database could not be opened, read or written.
    #[error("metadata store {}: {1}", .0.display())]
    Metadata(PathBuf, String),
}

/// A persistent message found in the journal at startup.
pub struct RecoveredMessage {
    /// Journal id.
    pub id: MessageId,
    /// The message.
    pub message: Arc<Message>,
    /// Durable queue ids holding it, each with how often it was delivered before the restart.
    pub queues: Vec<(DurableQueueId, u32)>,
}

/// What a restart brings back.
pub struct Recovered {
    /// Durable exchanges, queues and bindings.
    pub definitions: Definitions,
    /// Live persistent messages in publish order.
    pub messages: Vec<RecoveredMessage>,
}

/// The store of one broker.
pub struct Store {
    /// The data directory (streams keep their logs under `streams/`).
    dir: PathBuf,
    journal: Journal,
    metadata: Metadata,
    next_message_id: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and recovers what it holds.
    pub fn open(dir: &Path) -> Result<(Arc<Store>, Recovered), StoreError> {
        let messages_dir = dir.join("messages");
        std::fs::create_dir_all(&messages_dir)
            .map_err(|e| StoreError::Io(messages_dir.clone(), e))?;
        let (metadata, definitions) = Metadata::open(dir)?;
        let replayed = journal::replay(&messages_dir)?;
        let next_id = replayed.messages.keys().next_back().map_or(1, |id| id + 1);
        let mut recovered = Vec::with_capacity(replayed.messages.len());
        let mut live = std::collections::HashMap::with_capacity(replayed.messages.len());
        for (id, (message, loc)) in replayed.messages {
            let deliveries = |q: &u32| loc.delivered.iter().filter(|d| *d == q).count() as u32;
            let queues = loc
                .queues
                .iter()
                .map(|q| (DurableQueueId(*q), deliveries(q)))
                .collect();
            message.persist_id.set(MessageId(id));
            recovered.push(RecoveredMessage {
                id: MessageId(id),
                message: Arc::new(message),
                queues,
            });
            live.insert(id, loc);
        }
        info!(messages = recovered.len(), dir = %dir.display(), "store recovered");
        let journal = Journal::start(&messages_dir, live, replayed.segments)?;
        let store = Store {
            dir: dir.to_path_buf(),
            journal,
            metadata,
            next_message_id: AtomicU64::new(next_id),
        };
        Ok((
            Arc::new(store),
            Recovered {
                definitions,
                messages: recovered,
            },
        ))
    }

    /// Journals a persistent message for durable `queues`: assigns its journal id (the only
    /// place that does, and records it on the message) and returns the journal sequence number
    /// a publisher confirm must wait for.
    pub fn publish(&self, message: &Message, queues: Vec<DurableQueueId>) -> JournalSeq {
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        // Reuses the vector's allocation (same layout): no copy per publish.
        let queues: Vec<u32> = queues.into_iter().map(|q| q.0).collect();
        let header = ContentHeader {
            class_id: warren_protocol::class_id::BASIC,
            weight: 0,
            body_size: message.body.len() as u64,
            properties: warren_protocol::BasicProperties::clone(&message.properties),
        };
        let record = Record::Publish {
            id,
            queues: queues.clone(),
            delivered: false,
            exchange: message.exchange().clone(),
            routing_key: message.routing_key().clone(),
            header: record::header_bytes(&header),
            body: message.body.to_bytes(),
        };
        // The id goes on the message before its record is queued, so whoever sees the message
        // from now on also sees its id: a settle can never miss it and leave the record live
        // (the message would come back after a restart).
        message.persist_id.set(MessageId(id));
        let seq = self.journal.append(&record, Effect::Publish { id, queues });
        JournalSeq(seq)
    }

    /// Message `id` left durable queue `queue` for good.
    pub fn settle(&self, MessageId(id): MessageId, DurableQueueId(queue): DurableQueueId) {
        self.journal
            .append(&Record::Settle { id, queue }, Effect::Settle { id, queue });
    }

    /// Message `id` was delivered from durable queue `queue` (redelivered after a crash).
    pub fn delivered(&self, MessageId(id): MessageId, DurableQueueId(queue): DurableQueueId) {
        self.journal.append(
            &Record::Delivered { id, queue },
            Effect::Delivered { id, queue },
        );
    }

    /// Reads message `id` back from the journal (its body was paged out of memory).
    pub fn read_message(&self, id: MessageId) -> Option<Message> {
        let message = to_message(self.journal.read(id.0)?)?;
        message.persist_id.set(id);
        Some(message)
    }

    /// The journal writer's fsync latency and batch sizes.
    pub fn journal_stats(&self) -> &crate::stats::JournalStats {
        self.journal.stats()
    }

    /// Where stream `id` keeps its segment files.
    pub fn stream_dir(&self, DurableQueueId(id): DurableQueueId) -> PathBuf {
        self.dir.join("streams").join(id.to_string())
    }

    /// Has `target` (a stream's log) written out and fdatasynced with the journal's next group
    /// commit; a confirm waiting for the returned sequence number waits for that fsync.
    pub fn sync_file(&self, target: Arc<dyn journal::SyncTarget>) -> JournalSeq {
        JournalSeq(self.journal.sync_file(target))
    }

    /// The highest journal sequence number on disk; changes after every fsync.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.journal.synced()
    }

    /// Flushes the journal and the metadata and stops their writers (clean shutdown).
    pub fn close(&self) {
        self.journal.stop();
        self.metadata.close();
    }

    // Durable definitions. Each call only queues the change for the metadata writer thread
    // (`metadata.rs`) and returns at once; a reply that promises the change is durable waits
    // until `metadata_committed()` reaches `metadata_submitted()` as read after the call.

    /// Records a policy or operator policy (replacing one of the same name).
    pub fn put_policy(&self, def: definitions::PolicyDef) {
        self.metadata.submit(Change::PutPolicy(def));
    }

    /// Records a global runtime parameter (`value`: its JSON text).
    pub fn put_global_parameter(&self, name: &str, value: String) {
        self.metadata.submit(Change::PutGlobalParameter {
            name: name.into(),
            value,
        });
    }

    /// Forgets a global runtime parameter.
    pub fn remove_global_parameter(&self, name: &str) {
        self.metadata
            .submit(Change::DeleteGlobalParameter { name: name.into() });
    }

    /// Forgets a policy (`kind`: `policy` / `operator_policy`).
    pub fn remove_policy(&self, vhost: &str, kind: &str, name: &str) {
        self.metadata.submit(Change::DeletePolicy {
            vhost: vhost.into(),
            kind: kind.into(),
            name: name.into(),
        });
    }

    /// Records a durable exchange.
    pub fn add_exchange(&self, def: ExchangeDef) {
        self.metadata.submit(Change::PutExchange(def));
    }

    /// Forgets an exchange and its bindings.
    pub fn remove_exchange(&self, vhost: &str, name: &str) {
        self.metadata.submit(Change::DeleteExchange {
            vhost: vhost.into(),
            name: name.into(),
        });
    }

    /// Records a durable queue; returns the id its journal records use.
    pub fn add_queue(&self, vhost: &str, name: &str, arguments: String) -> u32 {
        self.metadata.add_queue(vhost, name, arguments)
    }

    /// Forgets a queue and its bindings.
    pub fn remove_queue(&self, vhost: &str, name: &str) {
        self.metadata.remove_queue(vhost, name);
    }

    /// Records a binding between durable things.
    pub fn add_binding(&self, def: BindingDef) {
        self.metadata.submit(Change::PutBinding(def));
    }

    /// Forgets a binding.
    pub fn remove_binding(&self, def: &BindingDef) {
        self.metadata.submit(Change::DeleteBinding(def.clone()));
    }

    /// Writes a whole access model down at once (the first start of a data directory).
    pub fn write_access_now(
        &self,
        defs: &crate::auth::AccessDefinitions,
    ) -> Result<(), StoreError> {
        use crate::auth::AccessChange as A;
        let changes = defs
            .vhosts
            .iter()
            .cloned()
            .map(A::PutVhost)
            .chain(defs.users.iter().cloned().map(A::PutUser))
            .chain(defs.permissions.iter().cloned().map(A::PutPermission))
            .chain(
                defs.topic_permissions
                    .iter()
                    .cloned()
                    .map(A::PutTopicPermission),
            )
            .map(Change::Access);
        self.metadata.commit_now(changes)
    }

    /// The sequence number of the last definition change handed to the metadata writer.
    pub fn metadata_submitted(&self) -> u64 {
        self.metadata.submitted()
    }

    /// The sequence number a reply promising durable definitions must wait for, if the
    /// metadata writer has not yet committed everything handed to it.
    pub fn metadata_pending(&self) -> Option<u64> {
        let submitted = self.metadata.submitted();
        (submitted > *self.metadata.committed_ref().borrow()).then_some(submitted)
    }

    /// [`Store::metadata_committed`] without cloning the receiver.
    pub fn metadata_committed_ref(&self) -> &watch::Receiver<u64> {
        self.metadata.committed_ref()
    }

    /// The highest definition change committed to disk; changes after every commit.
    pub fn metadata_committed(&self) -> watch::Receiver<u64> {
        self.metadata.committed()
    }
}

/// The access model's changes go to the metadata writer like declares do: queued at once, on
/// disk (`kill -9` safe) once `metadata_committed()` reaches the sequence number read after.
impl crate::auth::AccessJournal for Store {
    fn record(&self, changes: Vec<crate::auth::AccessChange>) {
        self.metadata
            .submit_all(changes.into_iter().map(Change::Access));
    }
}

fn to_message(record: Record) -> Option<Message> {
    let Record::Publish {
        exchange,
        routing_key,
        header,
        body,
        ..
    } = record
    else {
        return None;
    };
    let header = record::parse_header(&header)?;
    Some(Message::new(
        exchange,
        routing_key,
        header.properties,
        Bytes::clone(&body),
    ))
}
