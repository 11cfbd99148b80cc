//! The broker's shared state: settings, users, vhosts and the store.

use crate::auth::Users;
use crate::config::Config;
use crate::store::{Store, StoreError};
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
}

impl Broker {
    /// A broker with vhost `/` and the default user, restored from the store in
    /// `config.data_dir` (durable definitions and persistent messages).
    pub fn open(config: Config) -> Result<Arc<Self>, StoreError> {
        let users = Users::default();
        users.add(
            &config.default_user,
            &config.default_pass,
            config.default_user_loopback_only,
        );
        let (store, recovered) = Store::open(&config.data_dir)?;
        let vhost = VHost::new("/");
        persistence::restore(&vhost, &store, recovered);
        let vhosts = DashMap::new();
        vhosts.insert("/".to_owned(), vhost);
        let (memory_alarm, _) = watch::channel(false);
        let (disk_alarm, _) = watch::channel(false);
        Ok(Arc::new(Broker {
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
        }))
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
