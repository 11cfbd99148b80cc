//! Warren: an AMQP 0-9-1 broker that RabbitMQ clients talk to unchanged.
//!
//! Data flows one way: `connection` (frames, handshake, heartbeats) → `channel` (commands) →
//! `vhost` (exchanges, queues, bindings) → `exchange::route` → `queue::push` → consumer → the
//! connection's outbound buffer. Start one in-process with [`BrokerHandle::start`], or serve a
//! listener you bound yourself with [`run`].

#![deny(unsafe_code)]

pub mod alarm;
pub mod allocator;
pub mod auth;
pub(crate) mod broker;
pub(crate) mod channel;
pub mod config;
pub mod connection;
pub mod dedup;
pub(crate) mod error;
pub mod exchange;
pub(crate) mod fields;
pub mod http;
pub mod ids;
pub(crate) mod limits;
pub mod logging;
pub mod message;
pub mod outbound;
pub mod parameters;
pub mod prometheus;
pub mod queue;
pub mod registry;
pub mod server;
pub mod stats;
#[cfg(test)]
mod stats_tests;
pub mod store;
pub mod tls;
pub mod tracking;
pub mod vhost;
pub mod wall_clock;

pub use config::Config;
pub use server::{run, BrokerHandle};
