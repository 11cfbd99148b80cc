//! The HTTP layer end to end over the in-memory fake: status codes, headers, JSON shapes against the
//! captured RabbitMQ fixtures, tag rules per endpoint, paging, routing on encoded paths.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::fake::FakeBroker;
use super::Management;

/// A captured RabbitMQ 3.10.8 answer from tests/fixtures/management/.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/management/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
