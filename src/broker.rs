//! The broker's shared state: settings, users, vhosts and the store.

use crate::auth::Users;
use crate::config::Config;
use crate::persistence;
use crate::store::{Store, StoreError};
use crate::vhost::VHost;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Raised while queued messages exceed the memory high watermark (see `alarm`).
    pub memory_alarm: watch::Sender<bool>,
    /// Raised while the data directory's filesystem has less free space than
    /// `disk_free_limit` (see `alarm`).
    pub disk_alarm: watch::Sender<bool>,
    /// Client connections open now (`connection_max`).
    pub connections: crate::connection::limits::ConnectionCount,
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
            memory_alarm,
            disk_alarm,
            connections: Default::default(),
        }))
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Flushes the journal and stops its writer (clean shutdown).
    pub fn close(&self) {
        self.store.close();
    }
}
