//! The broker's shared state: settings, users and vhosts.

use crate::auth::Users;
use crate::config::Config;
use crate::vhost::VHost;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Everything connections share.
pub struct Broker {
    /// Settings.
    pub config: Arc<Config>,
    /// User database.
    pub users: Users,
    vhosts: DashMap<String, Arc<VHost>>,
    next_connection: AtomicU64,
}

impl Broker {
    /// A broker with vhost `/` and the default user.
    pub fn new(config: Config) -> Arc<Self> {
        let users = Users::default();
        users.add(
            &config.default_user,
            &config.default_pass,
            config.default_user_loopback_only,
        );
        let vhosts = DashMap::new();
        vhosts.insert("/".to_owned(), VHost::new("/"));
        Arc::new(Broker {
            config: Arc::new(config),
            users,
            vhosts,
            next_connection: AtomicU64::new(1),
        })
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}
