//! The broker's shared state: settings, users, vhosts and the store.

use crate::auth::{user_deleted_text, vhost_deleted_text, ManageError, Users, VhostInfo};
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::tracking::Registry;
use crate::vhost::persistence;
use crate::vhost::VHost;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Everything connections share.
pub struct Broker {
    /// Settings.
    pub config: Arc<Config>,
    /// User database.
    pub users: Users,
    vhosts: DashMap<String, Arc<VHost>>,
    store: Arc<Store>,
    next_connection: AtomicU64,
    /// Connection tasks still running (see `server::serve_socket`).
    live_connections: AtomicUsize,
    /// Raised while queued messages exceed the memory high watermark (see `alarm`).
    pub memory_alarm: watch::Sender<bool>,
    /// Raised while the data directory's filesystem has less free space than
    /// `disk_free_limit` (see `alarm`).
    pub disk_alarm: watch::Sender<bool>,
    /// Client connections open now (`connection_max`).
    pub connections: crate::limits::ConnectionCount,
    /// Open connections and their channels by name (the management API's lists).
    pub registry: crate::registry::Registry,
    /// Connections accepted and ended (the vhosts count channels and queues).
    pub churn: crate::stats::Churn,
    /// When it started (Prometheus' uptime).
    pub started: std::time::Instant,
    /// Open connections by user and vhost (limits, forced closes).
    pub tracking: Arc<Registry>,
    /// Global runtime parameters (the cluster name among them).
    pub global_parameters: crate::parameters::GlobalParameters,
}

/// Why a vhost could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// Refused by the access model (empty name, bad queue type, no such vhost).
    #[error(transparent)]
    Manage(#[from] ManageError),
}

impl Broker {
    /// A broker restored from the store in `config.data_dir`: users, vhosts, permissions and
    /// limits, durable definitions and persistent messages. A data directory that never held
    /// the access model gets RabbitMQ's first-boot defaults: vhost `/` and the default user
    /// with full permissions on it (later starts keep what was changed, as RabbitMQ does).
    pub fn open(config: Config) -> Result<Arc<Self>, StoreError> {
        let (store, mut recovered) = Store::open(&config.data_dir)?;
        let stored = recovered.definitions.access.take();
        let first_boot = stored.is_none();
        let users = match stored {
            Some(defs) => {
                let users = Users::empty();
                users.import(&defs).map_err(|e| {
                    StoreError::Metadata(
                        config.data_dir.join(crate::store::metadata::FILE),
                        format!("the stored users, vhosts or permissions are invalid: {e}"),
                    )
                })?;
                users
            }
            None => {
                let users = Users::default();
                users.add(&config.default_user, &config.default_pass, false);
                users
            }
        };
        // `loopback_users` is configuration, not data: applied on every start.
        if users.user(&config.default_user).is_some() {
            users.set_loopback_only(&config.default_user, config.default_user_loopback_only);
        }
        if first_boot {
            store.write_access_now(&users.snapshot())?;
        }
        users.attach_journal(store.clone());
        let global_parameters = crate::parameters::GlobalParameters::restore(
            store.clone(),
            std::mem::take(&mut recovered.definitions.global_parameters),
        );
        let vhosts = DashMap::new();
        let list: Vec<Arc<VHost>> = users.vhosts().iter().map(|v| VHost::new(&v.name)).collect();
        persistence::restore(&list, &store, recovered)?;
        for v in list {
            vhosts.insert(v.name.clone(), v);
        }
        let (memory_alarm, _) = watch::channel(false);
        let (disk_alarm, _) = watch::channel(false);
        let broker = Arc::new(Broker {
            config: Arc::new(config),
            users,
            vhosts,
            store,
            next_connection: AtomicU64::new(1),
            live_connections: AtomicUsize::new(0),
            memory_alarm,
            disk_alarm,
            connections: Default::default(),
            registry: Default::default(),
            churn: Default::default(),
            started: std::time::Instant::now(),
            tracking: Default::default(),
            global_parameters,
        });
        Ok(broker)
    }

    /// Creates vhost `info.name` with its `amq.*` exchanges, or updates its record (metadata)
    /// if it exists. Returns whether it was created.
    pub fn put_vhost(&self, info: VhostInfo) -> Result<bool, VhostError> {
        let name = info.name.clone();
        let created = self.users.vhost(&name).is_none();
        if created {
            self.users.add_vhost(info)?;
        } else {
            let limits = self
                .users
                .vhost(&name)
                .map(|v| v.limits)
                .unwrap_or_default();
            self.users.put_vhost(VhostInfo { limits, ..info })?;
        }
        self.vhosts.entry(name.clone()).or_insert_with(|| {
            let vhost = VHost::new(&name);
            vhost.attach_store(self.store.clone());
            vhost
        });
        Ok(created)
    }

    /// Makes a [`VHost`] for every vhost record that has none yet (after a definitions import).
    pub fn sync_vhosts(&self) {
        for info in self.users.vhosts() {
            self.vhosts.entry(info.name.clone()).or_insert_with(|| {
                let vhost = VHost::new(&info.name);
                vhost.attach_store(self.store.clone());
                vhost
            });
        }
    }

    /// Deletes a vhost as `rabbitmqctl delete_vhost`: no new connection can open it, its
    /// connections are closed with 320 `vhost 'v' is deleted`, its queues go with their
    /// messages (settled in the journal), and its record, permissions and durable objects are
    /// forgotten.
    pub fn delete_vhost(&self, name: &str) -> Result<(), VhostError> {
        if self.users.vhost(name).is_none() {
            return Err(ManageError::NoSuchVhost(name.to_owned()).into());
        }
        let removed = self.vhosts.remove(name).map(|(_, v)| v);
        if let Some(vhost) = &removed {
            vhost.mark_deleted();
        }
        let closed = self.tracking.close_vhost(name, &vhost_deleted_text(name));
        if let Some(vhost) = &removed {
            for q in vhost.queue_list() {
                vhost.remove_queue(&q);
            }
        }
        self.users.delete_vhost(name)?;
        tracing::info!(vhost = %name, connections = closed, "deleted vhost");
        Ok(())
    }

    /// Deletes a user as `rabbitmqctl delete_user`: its permissions go, and its open
    /// connections are closed with 320 `user 'u' is deleted`.
    pub fn delete_user(&self, name: &str) -> Result<(), ManageError> {
        self.users.delete_user(name)?;
        let closed = self.tracking.close_user(name, &user_deleted_text(name));
        tracing::info!(user = %name, connections = closed, "deleted user");
        Ok(())
    }

    /// Waits until every change to users, vhosts, permissions and durable definitions made
    /// so far is in the metadata log (survives `kill -9`).
    pub async fn metadata_written(&self) {
        let Some(target) = self.store.metadata_pending() else {
            return;
        };
        let mut committed = self.store.metadata_committed();
        let _ = committed.wait_for(|seq| *seq >= target).await;
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    /// Every vhost now (for the management API; not on the data path).
    pub fn vhost_list(&self) -> Vec<Arc<VHost>> {
        self.vhosts.iter().map(|v| v.value().clone()).collect()
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection task from its start to its end (the guard's drop).
    pub fn connection_started(self: &Arc<Self>) -> LiveConnection {
        self.live_connections.fetch_add(1, Ordering::Relaxed);
        crate::stats::bump(&self.churn.connections_opened);
        LiveConnection(self.clone())
    }

    /// What connections left behind: empty once every connection has closed cleanly (see
    /// [`crate::vhost::VHost::leftovers`]); tests check it at teardown.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let connections = self.live_connections.load(Ordering::Relaxed);
        if connections > 0 {
            out.push(format!("{connections} connections still running"));
        }
        for v in self.vhosts.iter() {
            out.extend(v.leftovers());
        }
        out
    }

    /// Flushes the journal and stops its writer (clean shutdown).
    pub fn close(&self) {
        self.store.close();
    }
}

impl Broker {
    /// Connection tasks running now (accepted sockets, handshake included).
    pub fn live_connections(&self) -> usize {
        self.live_connections.load(Ordering::Relaxed)
    }

    /// The message journal's fsync latency and group-commit batch sizes.
    pub fn journal_stats(&self) -> &crate::stats::JournalStats {
        self.store.journal_stats()
    }

    /// Connections, channels and queues opened and closed, over the broker and its vhosts.
    pub fn churn(&self) -> crate::stats::ChurnStats {
        let mut total = self.churn.snapshot();
        for vhost in self.vhosts.iter() {
            total += vhost.churn.snapshot();
        }
        total
    }

    /// Totals over every vhost now (see `src/stats.rs`), for the management API and Prometheus.
    pub fn stats(&self) -> crate::stats::VHostStats {
        let mut total = crate::stats::VHostStats::default();
        for vhost in self.vhosts.iter() {
            total += vhost.stats();
        }
        total
    }
}

/// A running connection task, counted in [`Broker::leftovers`] until dropped.
pub struct LiveConnection(Arc<Broker>);

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.live_connections.fetch_sub(1, Ordering::Relaxed);
        crate::stats::bump(&self.0.churn.connections_closed);
    }
}
