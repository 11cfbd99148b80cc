//! The broker's integration tests: each module drives an in-process broker (started per test on
//! 127.0.0.1:0) with real clients (lapin, pika, or raw frames). One binary instead of one per
//! file, so a change to the broker relinks once. Tests that need a process of their own stay
//! outside: tests/durability.rs (runs the built binary and kills it with -9) and
//! tests/flow_control.rs (the memory alarm counts every message in the process).

#[path = "../common/mod.rs"]
mod common;

mod access_control;
mod alternate_exchange;
mod basic;
mod cc_bcc;
mod confirms_tx;
mod connection;
mod consumer_timeout;
mod dead_letter;
mod deduplication;
mod delayed_exchange;
mod delivery_count;
mod direct_reply_to;
mod exchanges;
mod management_access;
mod management_api;
mod max_length;
mod pika_client;
mod policies;
mod priority;
mod prometheus;
mod queue_args_validation;
mod queue_expiry;
mod queues;
mod quorum;
mod single_active_consumer;
mod tls;
mod ttl;
