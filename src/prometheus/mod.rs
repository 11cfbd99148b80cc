//! The Prometheus endpoint (`--prometheus-listen`, RabbitMQ's port 15692), with RabbitMQ's
//! metric names so that its Grafana dashboards and alerts work unchanged:
//!
//! - `/metrics`: aggregated, no per-object labels (RabbitMQ's default);
//! - `/metrics/per-object`: one sample per queue (`vhost`, `queue`), channel and connection;
//! - `/metrics/detailed?family=F&vhost=V`: the chosen families as `rabbitmq_detailed_*`.
//!
//! A scrape reads the lock-free counters (see `src/stats.rs`) and each queue's gauges on the
//! blocking pool, so a scrape of many queues never holds a runtime worker; nothing is counted
//! for it on the data path beyond what those counters already do.

mod encode;
mod families;
mod snapshot;

use crate::broker::Broker;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use encode::{Kind, Writer};
use families::{
    write_alarms, write_global, write_groups, write_message_sizes, write_queue_info, write_totals,
    write_warren, Group, CHANNEL_GROUPS, CONNECTION_GROUPS, NODE_GROUPS, QUEUE_GROUPS,
};
use snapshot::{QueueRow, Snapshot};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The RabbitMQ version Warren reports (the management API answers the same).
const RABBITMQ_VERSION: &str = "3.13.7";

/// What a scrape asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/metrics`.
    Aggregated,
    /// `/metrics/per-object`.
    PerObject,
    /// `/metrics/detailed`: these families (RabbitMQ's table names), queues of these vhosts
    /// (all when `None`).
    Detailed {
        families: Vec<String>,
        vhosts: Option<Vec<String>>,
    },
}

/// The exporter over one broker.
pub struct Exporter {
    broker: Arc<Broker>,
    node: String,
    cluster: String,
    cluster_id: String,
}

impl Exporter {
    /// An exporter naming the node `warren@HOST` (as the management API does), with the
    /// cluster's permanent id kept in the data directory.
    pub fn new(broker: Arc<Broker>) -> Self {
        let node = format!("warren@{}", hostname());
        let cluster_id = permanent_cluster_id(&broker.config.data_dir);
        Exporter {
            broker,
            cluster: node.clone(),
            node,
            cluster_id,
        }
    }

    /// The text of one scrape.
    pub fn render(&self, endpoint: &Endpoint) -> String {
        let s = Snapshot::take(&self.broker);
        let mut w = Writer::default();
        let queues: Vec<&QueueRow> = match endpoint {
            Endpoint::Detailed {
                vhosts: Some(vhosts),
                ..
            } => s
                .queues
                .iter()
                .filter(|q| vhosts.iter().any(|v| **v == *q.vhost))
                .collect(),
            _ => s.queues.iter().collect(),
        };
        let channels: Vec<_> = s.channels.iter().collect();
        let connections: Vec<_> = s.connections.iter().collect();
        let node = [&s.node];
        let name = match endpoint {
            Endpoint::Aggregated | Endpoint::PerObject => {
                let per_object = *endpoint == Endpoint::PerObject;
                let p = "rabbitmq_";
                write_groups(&mut w, p, &all(NODE_GROUPS), &node, per_object);
                // `queue_consumer_count` is the cheap subset of `queue_metrics`, never both.
                let queue_groups: Vec<_> = QUEUE_GROUPS
                    .iter()
                    .filter(|g| g.family != "queue_consumer_count")
                    .collect();
                write_groups(&mut w, p, &queue_groups, &queues, per_object);
                write_groups(&mut w, p, &all(CHANNEL_GROUPS), &channels, per_object);
                write_groups(&mut w, p, &all(CONNECTION_GROUPS), &connections, per_object);
                write_totals(&mut w, &s);
                write_global(&mut w, &s.node);
                write_message_sizes(&mut w, &s.node);
                write_alarms(&mut w, &s.node);
                write_warren(&mut w, &s.node);
                if per_object {
                    write_queue_info(&mut w, p, &queues);
                    "per-object"
                } else {
                    "aggregated"
                }
            }
            Endpoint::Detailed { families, .. } => {
                let p = "rabbitmq_detailed_";
                let chosen = |family: &str| families.iter().any(|f| f == family);
                let queue_groups: Vec<_> = QUEUE_GROUPS
                    .iter()
                    .filter(|g| chosen(g.family))
                    .filter(|g| g.family != "queue_consumer_count" || !chosen("queue_metrics"))
                    .collect();
                write_groups(&mut w, p, &pick(NODE_GROUPS, &chosen), &node, true);
                write_groups(&mut w, p, &queue_groups, &queues, true);
                write_groups(&mut w, p, &pick(CHANNEL_GROUPS, &chosen), &channels, true);
                write_groups(
                    &mut w,
                    p,
                    &pick(CONNECTION_GROUPS, &chosen),
                    &connections,
                    true,
                );
                write_cluster(&mut w, &s, &chosen);
                if [
                    "queue_coarse_metrics",
                    "queue_consumer_count",
                    "queue_metrics",
                ]
                .iter()
                .any(|f| chosen(f))
                {
                    write_queue_info(&mut w, p, &queues);
                }
                "detailed"
            }
        };
        self.write_identity(&mut w, name);
        w.finish()
    }

    /// `rabbitmq_build_info` and `rabbitmq_identity_info` (every dashboard panel joins on it).
    fn write_identity(&self, w: &mut Writer, endpoint: &str) {
        let version = env!("CARGO_PKG_VERSION");
        w.family(
            "rabbitmq_build_info",
            "RabbitMQ & Erlang/OTP version info",
            Kind::Untyped,
            [(
                &[
                    ("product_name", "Warren"),
                    ("product_version", version),
                    ("rabbitmq_version", RABBITMQ_VERSION),
                    ("prometheus_plugin_version", version),
                    ("prometheus_client_version", "rust-prometheus 0.14"),
                ][..],
                1.0,
            )],
        );
        w.family(
            "rabbitmq_identity_info",
            "RabbitMQ node & cluster identity info",
            Kind::Untyped,
            [(
                &[
                    ("rabbitmq_node", self.node.as_str()),
                    ("rabbitmq_cluster", self.cluster.as_str()),
                    ("rabbitmq_cluster_permanent_id", self.cluster_id.as_str()),
                    ("rabbitmq_endpoint", endpoint),
                ][..],
                1.0,
            )],
        );
    }
}

fn all<T>(groups: &'static [Group<T>]) -> Vec<&'static Group<T>> {
    groups.iter().collect()
}

fn pick<T>(groups: &'static [Group<T>], chosen: &dyn Fn(&str) -> bool) -> Vec<&'static Group<T>> {
    groups.iter().filter(|g| chosen(g.family)).collect()
}

/// `rabbitmq_cluster_*`: only `/metrics/detailed` gives them (RabbitMQ's `METRICS_CLUSTER`).
fn write_cluster(w: &mut Writer, s: &Snapshot, chosen: &dyn Fn(&str) -> bool) {
    if chosen("vhost_status") {
        let labels: Vec<[(&'static str, &str); 1]> =
            s.vhosts.iter().map(|v| [("vhost", &**v)]).collect();
        w.family(
            "rabbitmq_cluster_vhost_status",
            "Whether a given vhost is running",
            Kind::Gauge,
            labels.iter().map(|l| (&l[..], 1.0)),
        );
    }
    if chosen("exchange_names") {
        let labels: Vec<[(&'static str, &str); 3]> = s
            .exchanges
            .iter()
            .map(|(v, name, kind)| {
                [
                    ("vhost", &**v),
                    ("exchange", name.as_str()),
                    ("type", kind.as_str()),
                ]
            })
            .collect();
        w.family(
            "rabbitmq_cluster_exchange_name",
            "Enumerates exchanges without any additional info. This value is cluster-wide. A cheaper alternative to `exchange_bindings`",
            Kind::Gauge,
            labels.iter().map(|l| (&l[..], 1.0)),
        );
    }
}

/// The query of `/metrics/detailed`: `family` and `vhost`, each repeatable.
pub fn detailed_query(query: Option<&str>) -> Endpoint {
    let mut families = Vec::new();
    let mut vhosts: Option<Vec<String>> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "family" => families.push(percent_decode(value)),
            "vhost" => vhosts
                .get_or_insert_with(Vec::new)
                .push(percent_decode(value)),
            _ => {}
        }
    }
    Endpoint::Detailed { families, vhosts }
}

/// `%2F` → `/`, `+` → space; a malformed escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The endpoint's routes.
pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .with_state(exporter)
}

async fn aggregated(State(e): State<Arc<Exporter>>) -> Response {
    scrape(e, Endpoint::Aggregated).await
}

async fn per_object(State(e): State<Arc<Exporter>>) -> Response {
    scrape(e, Endpoint::PerObject).await
}

async fn detailed(State(e): State<Arc<Exporter>>, uri: Uri) -> Response {
    scrape(e, detailed_query(uri.query())).await
}

async fn scrape(exporter: Arc<Exporter>, endpoint: Endpoint) -> Response {
    match tokio::task::spawn_blocking(move || exporter.render(&endpoint)).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            Body::from(text),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Prometheus scrape failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(exporter))
        .with_graceful_shutdown(shutdown)
        .await
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// RabbitMQ's `rabbitmq_cluster_permanent_id` survives restarts: it is made once and kept in
/// the data directory (`cluster_permanent_id`). Unreadable and unwritable, it is made afresh
/// for this run (a warning says so).
fn permanent_cluster_id(data_dir: &Path) -> String {
    let path = data_dir.join("cluster_permanent_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_owned();
        }
    }
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let id = format!(
        "rabbitmq-cluster-id-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!(path = %path.display(), error = %e, "cannot keep the cluster's permanent id; it changes at each start");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_query_takes_repeated_families_and_decoded_vhosts() {
        assert_eq!(
            detailed_query(Some(
                "family=queue_coarse_metrics&family=queue_metrics&vhost=%2F&x=1"
            )),
            Endpoint::Detailed {
                families: vec!["queue_coarse_metrics".into(), "queue_metrics".into()],
                vhosts: Some(vec!["/".into()]),
            }
        );
        assert_eq!(
            detailed_query(None),
            Endpoint::Detailed {
                families: vec![],
                vhosts: None
            }
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a+b%zz"), "a b%zz");
    }
}
