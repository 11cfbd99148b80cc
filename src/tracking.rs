//! The node's open AMQP connections by user and vhost: what the per-vhost and per-user limits
//! count, and how a connection is told to close when its vhost or user is deleted (320
//! CONNECTION_FORCED, as RabbitMQ's `rabbit_connection_tracking_handler`). Touched at
//! connection.open, channel.open/close and connection end; never on the publish path. Counts
//! are kept per vhost and per user, so a connection.open or channel.open costs O(1) however
//! many connections are open.

use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One open connection, as the registry knows it.
pub struct Tracked {
    /// The user it logged in as.
    pub user: Arc<str>,
    /// Its vhost.
    pub vhost: String,
    /// Its user's counts, shared with the user's other connections.
    user_counts: Arc<UserCounts>,
    /// Cancelled to close it with 320: a child of the broker's shutdown token, so it also
    /// fires at shutdown (then without a reason).
    forced: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Tracked {
    /// Completes when the connection must close with 320: its vhost or user was deleted, or
    /// the broker is shutting down.
    pub async fn forced(&self) {
        self.forced.cancelled().await
    }

    /// The text of a forced close; `None` when it is the broker's shutdown.
    pub fn forced_reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    /// Counts a channel opened on this connection.
    pub fn channel_opened(&self) {
        self.user_counts.channels.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a channel closed on this connection.
    pub fn channel_closed(&self) {
        decrement(&self.user_counts.channels);
    }

    fn force(&self, reason: &str) {
        *self.reason.lock() = Some(reason.to_owned());
        self.forced.cancel();
    }
}

/// A user's open connections and channels, over all its connections.
#[derive(Default)]
struct UserCounts {
    connections: AtomicU64,
    channels: AtomicU64,
}

fn decrement(n: &AtomicU64) {
    let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Every open connection of the node.
#[derive(Default)]
pub struct Registry {
    connections: DashMap<u64, Arc<Tracked>>,
    per_vhost: DashMap<String, u64>,
    /// Entries stay once made (one per user that ever connected: bounded by the users).
    per_user: DashMap<Arc<str>, Arc<UserCounts>>,
}

impl Registry {
    /// Adds connection `id`; it is removed when the returned guard drops. `shutdown` is the
    /// broker's shutdown token.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        user: Arc<str>,
        vhost: &str,
        shutdown: &CancellationToken,
    ) -> Registered {
        let user_counts = self.per_user.entry(user.clone()).or_default().clone();
        user_counts.connections.fetch_add(1, Ordering::Relaxed);
        *self.per_vhost.entry(vhost.to_owned()).or_default() += 1;
        let tracked = Arc::new(Tracked {
            user,
            vhost: vhost.to_owned(),
            user_counts,
            forced: shutdown.child_token(),
            reason: Mutex::new(None),
        });
        self.connections.insert(id, tracked.clone());
        Registered {
            registry: self.clone(),
            id,
            tracked,
        }
    }

    /// Connections open in `vhost`.
    pub fn count_in_vhost(&self, vhost: &str) -> u64 {
        self.per_vhost.get(vhost).map_or(0, |n| *n)
    }

    /// Connections open as `user`.
    pub fn count_of_user(&self, user: &str) -> u64 {
        self.per_user
            .get(user)
            .map_or(0, |c| c.connections.load(Ordering::Relaxed))
    }

    /// Channels open by `user` on all its connections.
    pub fn channels_of_user(&self, user: &str) -> u64 {
        self.per_user
            .get(user)
            .map_or(0, |c| c.channels.load(Ordering::Relaxed))
    }

    /// Closes every connection of `vhost` with 320 and `reason`; returns how many.
    pub fn close_vhost(&self, vhost: &str, reason: &str) -> usize {
        self.close_where(|c| c.vhost == vhost, reason)
    }

    /// Closes every connection of `user` with 320 and `reason`; returns how many.
    pub fn close_user(&self, user: &str, reason: &str) -> usize {
        self.close_where(|c| &*c.user == user, reason)
    }

    fn close_where(&self, matches: impl Fn(&Tracked) -> bool, reason: &str) -> usize {
        let chosen: Vec<Arc<Tracked>> = self
            .connections
            .iter()
            .filter(|c| matches(c))
            .map(|c| c.value().clone())
            .collect();
        for c in &chosen {
            c.force(reason);
        }
        chosen.len()
    }
}

/// A connection's place in the [`Registry`], held for its life.
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
    /// What the registry knows of it.
    pub tracked: Arc<Tracked>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let registry = &self.registry;
        registry.connections.remove(&self.id);
        decrement(&self.tracked.user_counts.connections);
        registry
            .per_vhost
            .remove_if_mut(&self.tracked.vhost, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_registrations_and_forced_closes_pick_by_vhost_or_user() {
        let r = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let a = r.register(1, Arc::from("alice"), "/", &shutdown);
        let b = r.register(2, Arc::from("bob"), "v", &shutdown);
        let c = r.register(3, Arc::from("alice"), "v", &shutdown);
        a.tracked.channel_opened();
        c.tracked.channel_opened();
        c.tracked.channel_opened();
        c.tracked.channel_closed();
        assert_eq!((r.count_in_vhost("v"), r.count_of_user("alice")), (2, 2));
        assert_eq!(r.channels_of_user("alice"), 2);
        assert_eq!(r.close_vhost("v", "vhost 'v' is deleted"), 2);
        assert!(b.tracked.forced.is_cancelled() && !a.tracked.forced.is_cancelled());
        assert_eq!(
            b.tracked.forced_reason().as_deref(),
            Some("vhost 'v' is deleted")
        );
        drop(c);
        assert_eq!(r.count_of_user("alice"), 1);
        shutdown.cancel();
        assert!(a.tracked.forced.is_cancelled() && a.tracked.forced_reason().is_none());
    }
}
