//! Identifier newtypes, so that a journal id, a durable queue id, a journal position, a delivery
//! tag and a connection id cannot be swapped for one another (they were all bare integers). A
//! leaf module: everyone may use it, it uses nothing.

use std::fmt;

macro_rules! id {
    ($(#[doc = $doc:literal])* $name:ident($int:ty)) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id! {
    /// A persistent message's id in the journal, assigned by the store when it journals the
    /// message (`Store::publish`), increasing in publish order.
    MessageId(u64)
}

id! {
    /// A durable queue's id in the journal's records (assigned when the queue is declared).
    DurableQueueId(u32)
}

id! {
    /// A position in the journal: a record's sequence number. A confirm waits until the
    /// journal's synced position reaches the position of its message's record.
    JournalSeq(u64)
}

id! {
    /// A connection, as the owner of its exclusive queues.
    ConnectionId(u64)
}

id! {
    /// A delivery tag: numbers one channel's deliveries, from 1.
    DeliveryTag(u64)
}
