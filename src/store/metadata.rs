//! Durable definitions in an embedded redb database (`metadata.redb` in the data directory):
//! exchanges, queues (with the id their journal records use) and bindings, one table each.
//!
//! Layout, made to grow without a format change: every table is keyed by vhost first, then the
//! thing's name (bindings by their whole identity), so the tables issues 12/13 need — users,
//! vhosts, permissions and topic permissions, vhost and user limits, policies, runtime
//! parameters — are new tables next to these, not a rewrite of them. `meta` holds
//! `schema_version` (refused when newer than this code knows) and `next_queue_id`. Values are
//! small JSON documents, so a field added later reads back from an older file with its default.
//!
//! Writes never run on a runtime worker: [`Metadata::submit`] hands a change to one writer
//! thread and returns its sequence number at once. The writer takes everything that has arrived
//! since its last turn (group commit), appends it to `metadata.log` in one `write`, then
//! publishes the highest sequence number written. A declare's -ok waits for that number
//! (`channel/declare.rs`). About every [`CHECKPOINT_AFTER`] the writer moves the log aside
//! (`metadata.log.old`) and starts a new one, and a checkpointer thread applies the old log's
//! changes to redb in one `Durability::Immediate` transaction (one fsync) and deletes it, so
//! logging never waits for an fsync; at shutdown the rest is committed the same way. Startup
//! replays logs left by a crash (old, then current) into redb before anything else.
//!
//! Why the -ok does not wait for an fsync: a client declaring queues one after another cannot
//! share an fsync with anyone, so it would pay one per declare. On the development VM (2 vCPUs
//! shared with other builds; fdatasync 1.3 ms when quiet, several ms when not) a first version
//! that committed each batch to redb with `Durability::Immediate` before the -ok took 30 s for
//! 10,000 sequential durable declares; this design takes about what transient declares take
//! (BENCHMARKS.md, "Durable declares"). redb's own cheaper modes do not help: on Linux
//! `Eventual` is the same fdatasync, and a `None` commit is lost when the process dies. So the
//! -ok promises what it promises in RabbitMQ 3.10–3.12, as we understand Mnesia (it appends a
//! transaction to its log before answering, with no fsync per transaction): the declare
//! survives a crash of the broker (`kill -9`; the log's bytes are in the kernel), and a crash
//! of the whole machine may lose what was declared in the last [`CHECKPOINT_AFTER`] or so.
//! Persistent messages keep their stronger promise (journal.rs: fsync before the confirm).
//! If a deployment wants the fsync, the seam is `Writer::log`: fdatasync the log there.
//!
//! A record of the log is `len u32 | crc32c u32 | JSON`; a short or
//! damaged record can only be the torn tail of a machine crash, so replay stops there.

use super::definitions::{BindingDef, Definitions, ExchangeDef, PolicyDef, QueueDef};
use super::StoreError;
use crate::auth::{
    AccessChange, AccessDefinitions, PermissionDefinition, TopicPermissionDefinition,
    UserDefinition, VhostDefinition,
};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// The database file in the data directory.
pub const FILE: &str = "metadata.redb";
/// The JSON file earlier versions kept definitions in; imported once, then renamed.
pub const LEGACY_FILE: &str = "definitions.json";
/// What a legacy file is renamed to once imported.
pub const IMPORTED_FILE: &str = "definitions.json.imported";
/// The layout this code writes; a file with a higher one is refused.
const SCHEMA_VERSION: u64 = 1;
/// Changes written but not yet in the database (see the module doc).
pub const LOG_FILE: &str = "metadata.log";
/// The log being committed to the database by the checkpointer; replayed first after a crash.
pub const OLD_LOG_FILE: &str = "metadata.log.old";
/// The most changes one turn of the writer takes.
const MAX_BATCH: usize = 4096;
/// How long a change may sit in the log before it is committed to redb.
pub const CHECKPOINT_AFTER: Duration = Duration::from_millis(100);
/// A log this large is committed to redb at once.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// (vhost, exchange name) → [`ExchangeDef`] as JSON.
const EXCHANGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("exchanges");
/// (vhost, queue name) → [`QueueDef`] as JSON (with the queue's journal id).
const QUEUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("queues");
/// (vhost, destination kind, destination, source, routing key, arguments hex) → nothing: the
/// key is the binding. Destination first, so a deleted queue's bindings are one range.
const BINDINGS: TableDefinition<BindingKey, ()> = TableDefinition::new("bindings");
/// (vhost, kind, policy name) → [`PolicyDef`] as JSON; kind is `policy` or `operator_policy`.
const POLICIES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("policies");
/// Global runtime parameters by name; the value is the parameter's JSON text.
const GLOBAL_PARAMETERS: TableDefinition<&str, &str> = TableDefinition::new("global_parameters");
/// Format facts: `schema_version`, `next_queue_id`, `access_initialized` (1 once the access
/// model was first written: from then on its tables are the truth, even when emptied).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// user name → [`UserDefinition`] as JSON (password hash, tags, limits).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// vhost name → [`VhostDefinition`] as JSON (metadata, limits).
const VHOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("vhosts");
/// (vhost, user) → [`PermissionDefinition`] as JSON.
const PERMISSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("permissions");
/// (vhost, user, exchange) → [`TopicPermissionDefinition`] as JSON.
const TOPIC_PERMISSIONS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("topic_permissions");
const ACCESS_INITIALIZED: &str = "access_initialized";

type BindingKey = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// One change to the durable definitions.
#[derive(Debug, Serialize, Deserialize)]
pub enum Change {
    PutExchange(ExchangeDef),
    /// Also drops the bindings from or to it.
    DeleteExchange {
        vhost: String,
        name: String,
    },
    PutQueue(QueueDef),
    /// Also drops the bindings to it.
    DeleteQueue {
        vhost: String,
        name: String,
    },
    PutBinding(BindingDef),
    DeleteBinding(BindingDef),
    /// Users, vhosts, permissions, topic permissions and limits. A deleted vhost also takes
    /// its exchanges, queues and bindings.
    Access(AccessChange),
    PutPolicy(PolicyDef),
    DeletePolicy {
        vhost: String,
        kind: String,
        name: String,
    },
    /// A global runtime parameter; `value` is its JSON text.
    PutGlobalParameter {
        name: String,
        value: String,
    },
    DeleteGlobalParameter {
        name: String,
    },
}

/// The open metadata store: the writer thread and what is known of queue ids.
pub struct Metadata {
    state: Mutex<State>,
    committed: watch::Receiver<u64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// For [`Metadata::commit_now`], at startup only; dropped at close so the file can be
    /// opened again in the same process.
    db: Mutex<Option<Arc<Database>>>,
    path: PathBuf,
}

/// Guarded together so sequence numbers follow the order changes reach the writer.
struct State {
    /// `None` once closed.
    sender: Option<mpsc::Sender<(u64, Change)>>,
    submitted: u64,
    queue_ids: HashMap<(String, String), u32>,
    next_queue_id: u32,
}

impl Metadata {
    /// Opens (creating if needed) `metadata.redb` in `dir`, imports a legacy
    /// `definitions.json` once, and returns what it holds.
    pub fn open(dir: &Path) -> Result<(Self, Definitions), StoreError> {
        let path = dir.join(FILE);
        let fail = |e: redb::Error| StoreError::Metadata(path.clone(), e.to_string());
        let db = Database::create(&path).map_err(|e| fail(e.into()))?;
        check_schema(&db).map_err(fail)?;
        import_legacy(dir, &db, &path)?;
        let log_path = dir.join(LOG_FILE);
        let old_log_path = dir.join(OLD_LOG_FILE);
        replay_logs(&db, &old_log_path, &log_path)
            .map_err(|e| StoreError::Metadata(log_path.clone(), e))?;
        let log = open_log(&log_path).map_err(|e| StoreError::Io(log_path.clone(), e))?;
        let definitions = load(&db).map_err(fail)?;
        let queue_ids = definitions
            .queues
            .iter()
            .map(|q| ((q.vhost.clone(), q.name.clone()), q.id))
            .collect();
        let (sender, receiver) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(0);
        let db = Arc::new(db);
        let startup_db = db.clone();
        let startup_path = path.clone();
        let checkpointer = Checkpointer::start(db.clone(), path.clone(), old_log_path.clone())
            .map_err(|e| StoreError::Io(dir.join(FILE), e))?;
        let writer = Writer {
            db,
            path,
            log,
            log_path,
            old_log_path,
            log_len: 0,
            pending: Vec::new(),
            oldest_pending: None,
            checkpointer: Some(checkpointer),
        };
        let writer = std::thread::Builder::new()
            .name("warren-metadata".into())
            .spawn(move || writer.run(receiver, committed_tx))
            .map_err(|e| StoreError::Io(dir.join(FILE), e))?;
        let state = State {
            sender: Some(sender),
            submitted: 0,
            queue_ids,
            next_queue_id: definitions.next_queue_id.max(1),
        };
        Ok((
            Metadata {
                state: Mutex::new(state),
                committed,
                writer: Mutex::new(Some(writer)),
                db: Mutex::new(Some(startup_db)),
                path: startup_path,
            },
            definitions,
        ))
    }

    /// Queues `change` for the writer; returns the sequence number whose commit makes it
    /// durable. Never blocks on disk.
    pub fn submit(&self, change: Change) -> u64 {
        let mut state = self.state.lock();
        state.submit(change)
    }

    /// The journal id of durable queue `vhost`/`name`, allocating one (and writing the queue
    /// down) if it has none yet.
    pub fn add_queue(&self, vhost: &str, name: &str, arguments: String) -> u32 {
        let mut state = self.state.lock();
        let key = (vhost.to_owned(), name.to_owned());
        if let Some(id) = state.queue_ids.get(&key) {
            return *id;
        }
        let id = state.next_queue_id;
        state.next_queue_id = id + 1;
        state.queue_ids.insert(key, id);
        state.submit(Change::PutQueue(QueueDef {
            vhost: vhost.into(),
            name: name.into(),
            id,
            arguments,
        }));
        id
    }

    /// Commits `changes` to the database at once (one fsync), bypassing the log: for the first
    /// start of a data directory, before anything else writes, so a fresh broker leaves no
    /// log for the checkpointer to pick up later.
    pub fn commit_now(&self, changes: impl IntoIterator<Item = Change>) -> Result<(), StoreError> {
        let db = self.db.lock().clone();
        let Some(db) = db else {
            return Err(StoreError::Metadata(self.path.clone(), "closed".into()));
        };
        commit(&db, changes).map_err(|e| StoreError::Metadata(self.path.clone(), e.to_string()))
    }

    /// Queues changes of the access model for the writer, in order; returns the sequence
    /// number of the last.
    pub fn submit_all(&self, changes: impl IntoIterator<Item = Change>) -> u64 {
        let mut state = self.state.lock();
        for change in changes {
            if let Change::Access(AccessChange::DeleteVhost(vhost)) = &change {
                // Its queues' ids are never handed out again, even to same-named queues.
                state.queue_ids.retain(|(v, _), _| v != vhost);
            }
            state.submit(change);
        }
        state.submitted
    }

    /// Forgets durable queue `vhost`/`name` and its bindings.
    pub fn remove_queue(&self, vhost: &str, name: &str) {
        let mut state = self.state.lock();
        state.queue_ids.remove(&(vhost.to_owned(), name.to_owned()));
        state.submit(Change::DeleteQueue {
            vhost: vhost.into(),
            name: name.into(),
        });
    }

    /// The sequence number of the last change submitted.
    pub fn submitted(&self) -> u64 {
        self.state.lock().submitted
    }

    /// The highest sequence number committed to disk; changes after every commit.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// The receiver behind [`Metadata::committed`], to read without cloning.
    pub fn committed_ref(&self) -> &watch::Receiver<u64> {
        &self.committed
    }

    /// Commits what is queued and stops the writer (clean shutdown).
    pub fn close(&self) {
        drop(self.db.lock().take());
        drop(self.state.lock().sender.take());
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl State {
    fn submit(&mut self, change: Change) -> u64 {
        self.submitted += 1;
        match &self.sender {
            Some(sender) if sender.send((self.submitted, change)).is_ok() => {}
            // Only after close (the broker is stopping): nothing can be written any more.
            _ => debug!("metadata change after the store closed; not written"),
        }
        self.submitted
    }
}

impl Drop for Metadata {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    log: File,
    log_path: PathBuf,
    old_log_path: PathBuf,
    log_len: u64,
    /// Changes in the log, not yet handed to the checkpointer.
    pending: Vec<Change>,
    oldest_pending: Option<Instant>,
    /// `None` only while stopping.
    checkpointer: Option<Checkpointer>,
}

impl Writer {
    /// Logs each batch of changes that arrived together and publishes it as committed; about
    /// every [`CHECKPOINT_AFTER`] hands the log to the checkpointer. Until every sender is gone.
    fn run(mut self, changes: mpsc::Receiver<(u64, Change)>, committed: watch::Sender<u64>) {
        let mut turns = 0u64;
        loop {
            let first = match self.oldest_pending {
                None => match changes.recv() {
                    Ok(change) => change,
                    Err(_) => break,
                },
                Some(oldest) => {
                    // At least a little: a busy checkpointer must not make this spin.
                    let wait = CHECKPOINT_AFTER
                        .saturating_sub(oldest.elapsed())
                        .max(Duration::from_millis(5));
                    match changes.recv_timeout(wait) {
                        Ok(change) => change,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.try_checkpoint();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match changes.try_recv() {
                    Ok(change) => batch.push(change),
                    Err(_) => break,
                }
            }
            let last = batch.last().map_or(0, |(seq, _)| *seq);
            self.log(batch.into_iter().map(|(_, change)| change));
            turns += 1;
            committed.send_replace(last);
            let due = self
                .oldest_pending
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_AFTER);
            if due || self.log_len >= CHECKPOINT_BYTES {
                self.try_checkpoint();
            }
        }
        self.stop();
        debug!(turns, "metadata writer stopped");
    }

    /// Appends `changes` to the log in one write.
    fn log(&mut self, changes: impl Iterator<Item = Change>) {
        let mut bytes = Vec::new();
        for change in changes {
            encode_record(&change, &mut bytes);
            self.pending.push(change);
        }
        if let Err(e) = self.log.write_all(&bytes) {
            fatal(&self.log_path, &e.to_string());
        }
        self.log_len += bytes.len() as u64;
        self.oldest_pending.get_or_insert_with(Instant::now);
    }

    /// Unless the checkpointer is still busy: moves the log aside (`metadata.log.old`), starts
    /// a fresh one, and hands the changes of the old one to the checkpointer, so logging never
    /// waits for redb's fsync.
    fn try_checkpoint(&mut self) {
        let Some(checkpointer) = &self.checkpointer else {
            return;
        };
        if self.pending.is_empty() || checkpointer.busy.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = std::fs::rename(&self.log_path, &self.old_log_path) {
            fatal(&self.log_path, &e.to_string());
        }
        self.log = match open_log(&self.log_path) {
            Ok(log) => log,
            Err(e) => fatal(&self.log_path, &e.to_string()),
        };
        self.log_len = 0;
        self.oldest_pending = None;
        checkpointer.busy.store(true, Ordering::Release);
        let changes = std::mem::take(&mut self.pending);
        if checkpointer.sender.send(changes).is_err() {
            fatal(&self.path, "the metadata checkpointer stopped");
        }
    }

    /// Waits for the checkpointer, then commits what is left and empties the log.
    fn stop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            drop(checkpointer.sender);
            let _ = checkpointer.thread.join();
        }
        if self.pending.is_empty() {
            return;
        }
        if let Err(e) = commit(&self.db, self.pending.drain(..)) {
            fatal(&self.path, &e.to_string());
        }
        if let Err(e) = self.log.set_len(0) {
            fatal(&self.log_path, &e.to_string());
        }
    }
}

/// The thread that commits logged changes to redb (one fsync each time), then deletes the log
/// they came from. One checkpoint at a time.
struct Checkpointer {
    sender: mpsc::Sender<Vec<Change>>,
    busy: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(db: Arc<Database>, path: PathBuf, old_log: PathBuf) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Vec<Change>>();
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("warren-metadata-checkpoint".into())
            .spawn(move || {
                for changes in receiver {
                    if let Err(e) = commit(&db, changes) {
                        fatal(&path, &e.to_string());
                    }
                    // Deleted after the commit: a crash in between replays changes already
                    // committed, which puts and deletes by key make harmless.
                    if let Err(e) = std::fs::remove_file(&old_log) {
                        fatal(&old_log, &e.to_string());
                    }
                    done.store(false, Ordering::Release);
                }
            })?;
        Ok(Checkpointer {
            sender,
            busy,
            thread,
        })
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// The broker cannot keep a durability promise it cannot write down.
fn fatal(file: &Path, error: &str) -> ! {
    error!(file = %file.display(), error, "cannot write durable definitions; stopping the broker");
    std::process::abort();
}

fn encode_record(change: &Change, out: &mut Vec<u8>) {
    let payload = json(change);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The changes a log holds, up to a torn tail.
fn decode_records(bytes: &[u8]) -> (Vec<Change>, usize) {
    let mut changes = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(change) = serde_json::from_slice(payload) else {
            break;
        };
        changes.push(change);
        at += 8 + len;
    }
    (changes, at)
}

/// Commits what the logs left by a crash hold (the one being checkpointed first), then
/// deletes the old one and empties the current one.
fn replay_logs(db: &Database, old: &Path, current: &Path) -> Result<(), String> {
    let mut changes = Vec::new();
    for path in [old, current] {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let (found, used) = decode_records(&bytes);
        if used < bytes.len() {
            warn!(file = %path.display(), offset = used, "cut off a torn tail of the metadata log");
        }
        changes.extend(found);
    }
    if changes.is_empty() && !old.exists() {
        return Ok(());
    }
    let count = changes.len();
    commit(db, changes).map_err(|e| e.to_string())?;
    if let Err(e) = std::fs::remove_file(old) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(format!("{}: {e}", old.display()));
        }
    }
    match File::options().write(true).open(current) {
        Ok(f) => f
            .set_len(0)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", current.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", current.display())),
    }
    info!(changes = count, file = %current.display(), "replayed the metadata log");
    Ok(())
}

// redb's error type is large; these run once per commit on the writer thread or at startup.
#[allow(clippy::result_large_err)]
/// Applies `changes` in one durable write transaction.
pub fn commit(db: &Database, changes: impl IntoIterator<Item = Change>) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut exchanges = txn.open_table(EXCHANGES)?;
        let mut queues = txn.open_table(QUEUES)?;
        let mut bindings = txn.open_table(BINDINGS)?;
        let mut meta = txn.open_table(META)?;
        let mut users = txn.open_table(USERS)?;
        let mut vhosts = txn.open_table(VHOSTS)?;
        let mut permissions = txn.open_table(PERMISSIONS)?;
        let mut topic_permissions = txn.open_table(TOPIC_PERMISSIONS)?;
        let mut policies = txn.open_table(POLICIES)?;
        let mut global_parameters = txn.open_table(GLOBAL_PARAMETERS)?;
        for change in changes {
            let access = match change {
                Change::Access(access) => access,
                Change::PutPolicy(p) => {
                    let key = (p.vhost.as_str(), p.kind.as_str(), p.name.as_str());
                    policies.insert(key, json(&p).as_slice())?;
                    continue;
                }
                Change::DeletePolicy { vhost, kind, name } => {
                    policies.remove((vhost.as_str(), kind.as_str(), name.as_str()))?;
                    continue;
                }
                Change::PutGlobalParameter { name, value } => {
                    global_parameters.insert(name.as_str(), value.as_str())?;
                    continue;
                }
                Change::DeleteGlobalParameter { name } => {
                    global_parameters.remove(name.as_str())?;
                    continue;
                }
                other => {
                    apply_definition(other, &mut exchanges, &mut queues, &mut bindings, &mut meta)?;
                    continue;
                }
            };
            meta.insert(ACCESS_INITIALIZED, 1)?;
            match access {
                AccessChange::PutUser(u) => {
                    users.insert(u.name.as_str(), json(&u).as_slice())?;
                }
                AccessChange::DeleteUser(name) => {
                    users.remove(name.as_str())?;
                    permissions.retain(|(_, user), _| user != name)?;
                    topic_permissions.retain(|(_, user, _), _| user != name)?;
                }
                AccessChange::PutVhost(v) => {
                    vhosts.insert(v.name.as_str(), json(&v).as_slice())?;
                }
                AccessChange::DeleteVhost(name) => {
                    vhosts.remove(name.as_str())?;
                    permissions.retain(|(vhost, _), _| vhost != name)?;
                    topic_permissions.retain(|(vhost, _, _), _| vhost != name)?;
                    exchanges.retain(|(vhost, _), _| vhost != name)?;
                    queues.retain(|(vhost, _), _| vhost != name)?;
                    bindings.retain(|(vhost, ..), ()| vhost != name)?;
                }
                AccessChange::PutPermission(p) => {
                    permissions.insert((p.vhost.as_str(), p.user.as_str()), json(&p).as_slice())?;
                }
                AccessChange::DeletePermission { user, vhost } => {
                    permissions.remove((vhost.as_str(), user.as_str()))?;
                }
                AccessChange::PutTopicPermission(p) => {
                    let key = (p.vhost.as_str(), p.user.as_str(), p.exchange.as_str());
                    topic_permissions.insert(key, json(&p).as_slice())?;
                }
                AccessChange::DeleteTopicPermission {
                    user,
                    vhost,
                    exchange,
                } => {
                    topic_permissions.remove((vhost.as_str(), user.as_str(), exchange.as_str()))?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

type Table<'t, K, V> = redb::Table<'t, K, V>;

#[allow(clippy::result_large_err)] // redb's error type
/// One change to exchanges, queues or bindings.
fn apply_definition(
    change: Change,
    exchanges: &mut Table<(&'static str, &'static str), &'static [u8]>,
    queues: &mut Table<(&'static str, &'static str), &'static [u8]>,
    bindings: &mut Table<BindingKey, ()>,
    meta: &mut Table<&'static str, u64>,
) -> Result<(), redb::Error> {
    match change {
        Change::PutExchange(x) => {
            exchanges.insert((x.vhost.as_str(), x.name.as_str()), json(&x).as_slice())?;
        }
        Change::DeleteExchange { vhost, name } => {
            exchanges.remove((vhost.as_str(), name.as_str()))?;
            let lo = (vhost.as_str(), "", "", "", "", "");
            let next = format!("{vhost}\0");
            let hi = (next.as_str(), "", "", "", "", "");
            bindings.retain_in(lo..hi, |(_, kind, destination, source, _, _), ()| {
                source != name && !(kind == "exchange" && destination == name)
            })?;
        }
        Change::PutQueue(q) => {
            queues.insert((q.vhost.as_str(), q.name.as_str()), json(&q).as_slice())?;
            let next = meta.get("next_queue_id")?.map_or(1, |v| v.value());
            meta.insert("next_queue_id", next.max(u64::from(q.id) + 1))?;
        }
        Change::DeleteQueue { vhost, name } => {
            queues.remove((vhost.as_str(), name.as_str()))?;
            let lo = (vhost.as_str(), "queue", name.as_str(), "", "", "");
            let next = format!("{name}\0");
            let hi = (vhost.as_str(), "queue", next.as_str(), "", "", "");
            bindings.retain_in(lo..hi, |_, ()| false)?;
        }
        Change::PutBinding(b) => {
            bindings.insert(binding_key(&b), ())?;
        }
        Change::DeleteBinding(b) => {
            bindings.remove(binding_key(&b))?;
        }
        // Handled by the caller.
        Change::Access(_)
        | Change::PutPolicy(_)
        | Change::DeletePolicy { .. }
        | Change::PutGlobalParameter { .. }
        | Change::DeleteGlobalParameter { .. } => {}
    }
    Ok(())
}

fn binding_key(b: &BindingDef) -> (&str, &str, &str, &str, &str, &str) {
    (
        &b.vhost,
        &b.destination_kind,
        &b.destination,
        &b.source,
        &b.routing_key,
        &b.arguments,
    )
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

// redb's error type is large; these run once per commit on the writer thread or at startup.
#[allow(clippy::result_large_err)]
/// Refuses a file written by a newer layout; stamps a new file with this one.
fn check_schema(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(redb::Error::Corrupted(format!(
                    "schema version {v} is newer than this Warren understands ({SCHEMA_VERSION})"
                )));
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)?;
            }
        }
        // Every table exists from the start, so readers never meet a missing one.
        txn.open_table(EXCHANGES)?;
        txn.open_table(QUEUES)?;
        txn.open_table(BINDINGS)?;
        txn.open_table(USERS)?;
        txn.open_table(VHOSTS)?;
        txn.open_table(PERMISSIONS)?;
        txn.open_table(TOPIC_PERMISSIONS)?;
        txn.open_table(POLICIES)?;
        txn.open_table(GLOBAL_PARAMETERS)?;
    }
    txn.commit()?;
    Ok(())
}

// redb's error type is large; these run once per commit on the writer thread or at startup.
#[allow(clippy::result_large_err)]
/// Everything in the database.
fn load(db: &Database) -> Result<Definitions, redb::Error> {
    let txn = db.begin_read()?;
    let bad = |table: &str, e: serde_json::Error| {
        redb::Error::Corrupted(format!("a value in table {table} is not valid: {e}"))
    };
    let mut defs = Definitions::default();
    for entry in txn.open_table(EXCHANGES)?.iter()? {
        let (_, value) = entry?;
        defs.exchanges
            .push(serde_json::from_slice(value.value()).map_err(|e| bad("exchanges", e))?);
    }
    for entry in txn.open_table(QUEUES)?.iter()? {
        let (_, value) = entry?;
        defs.queues
            .push(serde_json::from_slice(value.value()).map_err(|e| bad("queues", e))?);
    }
    for entry in txn.open_table(BINDINGS)?.iter()? {
        let (key, _) = entry?;
        let (vhost, kind, destination, source, routing_key, arguments) = key.value();
        defs.bindings.push(BindingDef {
            vhost: vhost.into(),
            source: source.into(),
            destination_kind: kind.into(),
            destination: destination.into(),
            routing_key: routing_key.into(),
            arguments: arguments.into(),
        });
    }
    for entry in txn.open_table(POLICIES)?.iter()? {
        let (_, value) = entry?;
        defs.policies
            .push(serde_json::from_slice(value.value()).map_err(|e| bad("policies", e))?);
    }
    for entry in txn.open_table(GLOBAL_PARAMETERS)?.iter()? {
        let (name, value) = entry?;
        defs.global_parameters
            .push((name.value().to_owned(), value.value().to_owned()));
    }
    let meta = txn.open_table(META)?;
    let stored_next = meta.get("next_queue_id")?.map_or(1, |v| v.value());
    if meta.get(ACCESS_INITIALIZED)?.is_some() {
        defs.access = Some(load_access(&txn)?);
    }
    let after_highest = defs.queues.iter().map(|q| q.id + 1).max().unwrap_or(1);
    defs.next_queue_id = u32::try_from(stored_next)
        .unwrap_or(u32::MAX)
        .max(after_highest);
    Ok(defs)
}

#[allow(clippy::result_large_err)] // redb's error type; runs once at startup
/// The access model's tables, in RabbitMQ's definitions shape.
fn load_access(txn: &redb::ReadTransaction) -> Result<AccessDefinitions, redb::Error> {
    fn values<K: redb::Key + 'static, T: serde::de::DeserializeOwned>(
        txn: &redb::ReadTransaction,
        table: TableDefinition<K, &[u8]>,
    ) -> Result<Vec<T>, redb::Error> {
        let mut out = Vec::new();
        for entry in txn.open_table(table)?.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value()).map_err(|e| {
                redb::Error::Corrupted(format!("a value in table {table} is not valid: {e}"))
            })?);
        }
        Ok(out)
    }
    Ok(AccessDefinitions {
        users: values::<_, UserDefinition>(txn, USERS)?,
        vhosts: values::<_, VhostDefinition>(txn, VHOSTS)?,
        permissions: values::<_, PermissionDefinition>(txn, PERMISSIONS)?,
        topic_permissions: values::<_, TopicPermissionDefinition>(txn, TOPIC_PERMISSIONS)?,
    })
}

/// Moves the definitions of a data directory written before redb into the database, once:
/// the JSON file is renamed to `definitions.json.imported` after the import commits (an import
/// interrupted before the rename runs again and writes the same keys).
fn import_legacy(dir: &Path, db: &Database, path: &Path) -> Result<(), StoreError> {
    let legacy = dir.join(LEGACY_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    let old = Definitions::load_legacy(&legacy)?;
    let changes = old
        .exchanges
        .iter()
        .cloned()
        .map(Change::PutExchange)
        .chain(old.queues.iter().cloned().map(Change::PutQueue))
        .chain(old.bindings.iter().cloned().map(Change::PutBinding));
    commit(db, changes).map_err(|e| StoreError::Metadata(path.to_path_buf(), e.to_string()))?;
    bump_next_queue_id(db, old.next_queue_id)
        .map_err(|e| StoreError::Metadata(path.to_path_buf(), e.to_string()))?;
    let imported = dir.join(IMPORTED_FILE);
    std::fs::rename(&legacy, &imported).map_err(|e| StoreError::Io(legacy.clone(), e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
    info!(
        exchanges = old.exchanges.len(),
        queues = old.queues.len(),
        bindings = old.bindings.len(),
        from = %legacy.display(),
        to = %path.display(),
        "imported durable definitions"
    );
    Ok(())
}

/// Raises `next_queue_id` to at least `next` (ids of deleted queues are never reused).
#[allow(clippy::result_large_err)] // redb's error type; runs once at startup
fn bump_next_queue_id(db: &Database, next: u32) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let stored = meta.get("next_queue_id")?.map_or(1, |v| v.value());
        meta.insert("next_queue_id", stored.max(u64::from(next)))?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, id: u32) -> QueueDef {
        QueueDef {
            vhost: "/".into(),
            name: name.into(),
            id,
            arguments: String::new(),
        }
    }

    fn exchange(name: &str) -> ExchangeDef {
        ExchangeDef {
            vhost: "/".into(),
            name: name.into(),
            kind: "topic".into(),
            auto_delete: false,
            internal: false,
            arguments: "00".into(),
        }
    }

    fn binding(source: &str, kind: &str, destination: &str, key: &str) -> BindingDef {
        BindingDef {
            vhost: "/".into(),
            source: source.into(),
            destination_kind: kind.into(),
            destination: destination.into(),
            routing_key: key.into(),
            arguments: String::new(),
        }
    }

    fn reopen(dir: &Path) -> Definitions {
        let (metadata, defs) = Metadata::open(dir).expect("opens");
        metadata.close();
        defs
    }

    #[test]
    fn definitions_round_trip_through_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (metadata, defs) = Metadata::open(dir.path()).expect("opens");
        assert_eq!(
            defs,
            Definitions {
                next_queue_id: 1,
                ..Default::default()
            }
        );
        assert_eq!(metadata.add_queue("/", "q1", "ab".into()), 1);
        assert_eq!(metadata.add_queue("/", "q2", String::new()), 2);
        assert_eq!(
            metadata.add_queue("/", "q1", "ab".into()),
            1,
            "known queue keeps its id"
        );
        metadata.add_queue("other", "q1", String::new());
        metadata.submit(Change::PutExchange(exchange("x")));
        metadata.submit(Change::PutExchange(exchange("gone")));
        metadata.submit(Change::PutBinding(binding("x", "queue", "q1", "a.#")));
        metadata.submit(Change::PutBinding(binding("x", "queue", "q2", "b")));
        metadata.submit(Change::PutBinding(binding("gone", "queue", "q1", "c")));
        metadata.submit(Change::PutBinding(binding("x", "exchange", "gone", "d")));
        metadata.submit(Change::PutBinding(binding("x", "queue", "q1", "unbound")));
        metadata.submit(Change::DeleteBinding(binding(
            "x", "queue", "q1", "unbound",
        )));
        metadata.submit(Change::DeleteExchange {
            vhost: "/".into(),
            name: "gone".into(),
        });
        metadata.remove_queue("/", "q2");
        metadata.close();

        let defs = reopen(dir.path());
        let mut names: Vec<_> = defs
            .queues
            .iter()
            .map(|q| (q.vhost.as_str(), q.name.as_str(), q.id))
            .collect();
        names.sort();
        assert_eq!(names, [("/", "q1", 1), ("other", "q1", 3)]);
        assert_eq!(
            defs.queues
                .iter()
                .find(|q| q.vhost == "/")
                .map(|q| q.arguments.as_str()),
            Some("ab")
        );
        assert_eq!(defs.exchanges, [exchange("x")]);
        assert_eq!(defs.bindings, [binding("x", "queue", "q1", "a.#")]);
        // A deleted queue's id is never handed out again.
        assert_eq!(defs.next_queue_id, 4);
    }

    #[test]
    fn the_access_model_round_trips_and_a_deleted_vhost_takes_its_objects() {
        use crate::auth::{AccessControl, AccessJournal, VhostInfo};
        struct Journal(Metadata);
        impl AccessJournal for Journal {
            fn record(&self, changes: Vec<AccessChange>) {
                self.0.submit_all(changes.into_iter().map(Change::Access));
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (metadata, defs) = Metadata::open(dir.path()).expect("opens");
        assert_eq!(defs.access, None, "a new store has no access model yet");
        let journal = Arc::new(Journal(metadata));
        let ac = AccessControl::default();
        ac.attach_journal(journal.clone());
        ac.journal_everything();
        ac.add_user("alice", "secret", vec!["monitoring".into()])
            .expect("user");
        ac.add_user("bob", "pw", vec![]).expect("user");
        ac.add_vhost(VhostInfo::named("v")).expect("vhost");
        ac.set_vhost_limits(
            "v",
            crate::auth::VhostLimits {
                max_connections: Some(3),
                max_queues: None,
            },
        )
        .expect("limits");
        ac.set_user_limits(
            "alice",
            crate::auth::UserLimits {
                max_connections: None,
                max_channels: Some(7),
            },
        )
        .expect("limits");
        ac.set_permissions("alice", "v", "^a", ".*", "")
            .expect("perm");
        ac.set_permissions("bob", "v", ".*", ".*", ".*")
            .expect("perm");
        ac.set_permissions("bob", "/", ".*", ".*", ".*")
            .expect("perm");
        ac.set_topic_permissions("alice", "v", "amq.topic", "^x", ".*")
            .expect("topic");
        journal.0.submit(Change::PutExchange(ExchangeDef {
            vhost: "v".into(),
            ..exchange("xv")
        }));
        journal.0.add_queue("v", "qv", String::new());
        journal.0.add_queue("/", "kept", String::new());
        ac.delete_user("bob").expect("deleted");
        let expected = ac.snapshot();
        drop(ac);
        let Ok(journal) = Arc::try_unwrap(journal) else {
            panic!("one owner")
        };
        journal.0.close();
        let defs = reopen(dir.path());
        let restored = AccessControl::empty();
        restored
            .import(defs.access.as_ref().expect("access model stored"))
            .expect("imports");
        assert_eq!(restored.snapshot(), expected);
        assert!(restored.user("bob").is_none());
        assert_eq!(
            restored.user("alice").map(|u| u.limits.max_channels),
            Some(Some(7))
        );
        assert!(restored.permission("alice", "v").is_some());

        // Deleting the vhost takes its permissions and durable objects with it.
        let (metadata, _) = Metadata::open(dir.path()).expect("opens");
        let journal = Journal(metadata);
        restored.attach_journal(Arc::new(journal));
        restored.delete_vhost("v").expect("deleted");
        drop(restored);
        // The journal is dropped with the model: its Drop closes the writer.
        let defs = reopen(dir.path());
        let access = defs.access.expect("stored");
        assert_eq!(
            access
                .vhosts
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["/"]
        );
        assert!(access.permissions.iter().all(|p| p.vhost == "/"));
        assert!(access.topic_permissions.is_empty());
        assert!(defs.exchanges.is_empty());
        assert_eq!(
            defs.queues
                .iter()
                .map(|q| q.name.as_str())
                .collect::<Vec<_>>(),
            ["kept"]
        );
    }

    #[test]
    fn a_log_left_by_a_crash_is_replayed_up_to_its_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        reopen(dir.path());
        let mut log = Vec::new();
        encode_record(&Change::PutQueue(queue("logged", 7)), &mut log);
        encode_record(&Change::PutExchange(exchange("x")), &mut log);
        let mut torn = Vec::new();
        encode_record(&Change::PutQueue(queue("torn", 8)), &mut torn);
        log.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(dir.path().join(LOG_FILE), &log).expect("log written");

        let defs = reopen(dir.path());
        assert_eq!(defs.queues, [queue("logged", 7)]);
        assert_eq!(defs.exchanges, [exchange("x")]);
        assert_eq!(defs.next_queue_id, 8);
        let log_len = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("log")
            .len();
        assert_eq!(log_len, 0, "the replayed log is emptied");
        assert_eq!(reopen(dir.path()).queues, [queue("logged", 7)]);
    }

    #[test]
    fn a_log_being_checkpointed_is_replayed_before_the_current_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        reopen(dir.path());
        let mut old = Vec::new();
        encode_record(&Change::PutQueue(queue("a", 1)), &mut old);
        encode_record(&Change::PutQueue(queue("b", 2)), &mut old);
        let mut current = Vec::new();
        encode_record(
            &Change::DeleteQueue {
                vhost: "/".into(),
                name: "a".into(),
            },
            &mut current,
        );
        std::fs::write(dir.path().join(OLD_LOG_FILE), &old).expect("old log written");
        std::fs::write(dir.path().join(LOG_FILE), &current).expect("log written");

        let defs = reopen(dir.path());
        assert_eq!(defs.queues, [queue("b", 2)]);
        assert!(!dir.path().join(OLD_LOG_FILE).exists());
        assert_eq!(reopen(dir.path()).queues, [queue("b", 2)]);
    }

    #[test]
    fn a_legacy_definitions_file_is_imported_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let legacy = Definitions {
            exchanges: vec![exchange("x")],
            queues: vec![queue("a", 3), queue("b", 5)],
            bindings: vec![binding("x", "queue", "a", "k")],
            next_queue_id: 9,
            ..Definitions::default()
        };
        let json = serde_json::to_vec_pretty(&legacy).expect("json");
        std::fs::write(dir.path().join(LEGACY_FILE), json).expect("written");

        let (metadata, defs) = Metadata::open(dir.path()).expect("opens");
        assert_eq!(defs, legacy);
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert!(dir.path().join(IMPORTED_FILE).exists());
        assert_eq!(
            metadata.add_queue("/", "a", String::new()),
            3,
            "imported ids are kept"
        );
        assert_eq!(metadata.add_queue("/", "new", String::new()), 9);
        metadata.close();
        assert_eq!(reopen(dir.path()).queues.len(), 3);
    }

    #[test]
    fn a_corrupt_database_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE), vec![0x5a; 8192]).expect("written");
        let Err(e) = Metadata::open(dir.path()) else {
            panic!("a corrupt metadata file must not open");
        };
        let text = e.to_string();
        assert!(
            text.contains(&dir.path().join(FILE).display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        reopen(dir.path());
        let db = Database::create(dir.path().join(FILE)).expect("opens");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("schema_version", SCHEMA_VERSION + 1)
            .expect("insert");
        txn.commit().expect("commit");
        drop(db);
        let Err(e) = Metadata::open(dir.path()) else {
            panic!("a newer schema must not open");
        };
        assert!(e.to_string().contains("schema version"), "{e}");
    }
}
