//! Imports a definitions document in RabbitMQ's JSON format (`POST /api/definitions`,
//! `--load-definitions`): users, vhosts, permissions, topic permissions, limits, policies and
//! operator policies, then exchanges, queues and bindings, in RabbitMQ's order. All or nothing: the whole document is checked
//! against the broker as it is before anything changes, and the first problem is the answer.

use crate::auth::{
    vhost_limits_from_parameter, AccessDefinitions, HashingAlgorithm, PermissionDefinition,
    TopicPermissionDefinition, UserDefinition, VhostDefinition, VhostMetadata,
    VHOST_LIMITS_COMPONENT,
};
use crate::broker::Broker;
use crate::error::Refusal;
use crate::exchange::{ExchangeKind, ExchangeOptions};
use crate::http::amqp_json::json_to_table;
use crate::http::source::Definitions;
use crate::ids::ConnectionId;
use crate::queue::policy::{Policy, PolicyKind};
use crate::queue::QueueOptions;
use crate::store::StoreError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use tracing::{info, warn};
use warren_protocol::ShortStr;

/// The access part of a document as the access model reads it.
fn access_definitions(broker: &Broker, doc: &Definitions) -> Result<AccessDefinitions, String> {
    let users = doc
        .users
        .iter()
        .map(|u| {
            let hashing_algorithm = match u.hashing_algorithm.as_deref() {
                None | Some("") => HashingAlgorithm::default(),
                Some(name) => HashingAlgorithm::try_from_name(name).ok_or_else(|| {
                    format!("unknown hashing algorithm '{name}' of user '{}'", u.name)
                })?,
            };
            Ok(UserDefinition {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
                hashing_algorithm,
                tags: u.tags.clone(),
                limits: integer_limits(&u.limits, &format!("user '{}'", u.name))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut vhosts = doc
        .vhosts
        .iter()
        .map(|v| {
            let metadata: VhostMetadata = match &v.metadata {
                Some(m) => serde_json::from_value(m.clone())
                    .map_err(|e| format!("metadata of vhost '{}': {e}", v.name))?,
                None => VhostMetadata::default(),
            };
            Ok(VhostDefinition {
                name: v.name.clone(),
                limits: integer_limits(&v.limits, &format!("vhost '{}'", v.name))?,
                metadata,
                description: v.description.clone(),
                tags: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // RabbitMQ 3.x keeps vhost limits as runtime parameters of the `vhost-limits` component.
    for p in &doc.parameters {
        if p.get("component").and_then(Value::as_str) != Some(VHOST_LIMITS_COMPONENT) {
            continue;
        }
        let vhost = p.get("vhost").and_then(Value::as_str).unwrap_or_default();
        let value = p.get("value").cloned().unwrap_or(Value::Null);
        let limits = vhost_limits_from_parameter(&value)?;
        if !vhosts.iter().any(|v| v.name == vhost) {
            // Limits for a vhost the broker has (a per-vhost import): its record, new limits.
            let current = broker
                .users
                .vhost(vhost)
                .ok_or_else(|| format!("vhost-limits for vhost '{vhost}', which does not exist"))?;
            vhosts.push(VhostDefinition::from_info(&current));
        }
        let Some(v) = vhosts.iter_mut().find(|v| v.name == vhost) else {
            return Err(format!(
                "vhost-limits for vhost '{vhost}', which does not exist"
            ));
        };
        for (key, limit) in [
            ("max-connections", limits.max_connections),
            ("max-queues", limits.max_queues),
        ] {
            v.limits.insert(
                key.to_owned(),
                limit.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
            );
        }
    }
    let permissions = doc
        .permissions
        .iter()
        .map(|p| PermissionDefinition {
            user: p.user.clone(),
            vhost: p.vhost.clone(),
            configure: p.configure.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
        })
        .collect();
    let topic_permissions = doc
        .topic_permissions
        .iter()
        .map(|p| {
            serde_json::from_value::<TopicPermissionDefinition>(p.clone())
                .map_err(|e| format!("a topic permission is not valid: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(AccessDefinitions {
        users,
        vhosts,
        permissions,
        topic_permissions,
    })
}

fn integer_limits(map: &Map<String, Value>, whose: &str) -> Result<BTreeMap<String, i64>, String> {
    map.iter()
        .map(|(k, v)| {
            v.as_i64().map(|n| (k.clone(), n)).ok_or_else(|| {
                format!("limit {k} of {whose} should be an integer, actually was {v}")
            })
        })
        .collect()
}

/// `amq.*` exchanges are the broker's own: RabbitMQ skips them on import with a warning.
fn is_reserved_exchange(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// The document's global parameters (`{name, value}`), but not `internal_cluster_id`: this
/// node keeps its own identity when it imports another cluster's export.
fn global_parameters(doc: &Definitions) -> Result<Vec<(&str, &Value)>, String> {
    let mut out = Vec::new();
    for p in &doc.global_parameters {
        let (Some(name), Some(value)) = (p.get("name").and_then(Value::as_str), p.get("value"))
        else {
            return Err(format!("a global parameter needs a name and a value: {p}"));
        };
        if name != crate::parameters::INTERNAL_CLUSTER_ID {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// The component of runtime parameters RabbitMQ 3.x exports operator policies as.
pub const OPERATOR_POLICY_COMPONENT: &str = "operator_policy";

/// The document's policies, and its operator policies (`operator_policy` parameters), checked
/// as `PUT /api/policies` and `PUT /api/operator-policies` check them.
fn policy_definitions(doc: &Definitions) -> Result<Vec<Policy>, String> {
    let invalid = |what: &str, vhost: &str, name: &str, reason: String| {
        format!("{what} '{name}' in vhost '{vhost}' is not valid: {reason}")
    };
    let mut out = Vec::new();
    for p in &doc.policies {
        let policy = Policy::new(
            PolicyKind::User,
            &p.vhost,
            &p.name,
            &p.pattern,
            &p.apply_to,
            p.priority,
            p.definition.clone(),
        )
        .map_err(|reason| invalid("policy", &p.vhost, &p.name, reason))?;
        out.push(policy);
    }
    for p in &doc.parameters {
        if p.get("component").and_then(Value::as_str) != Some(OPERATOR_POLICY_COMPONENT) {
            continue;
        }
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let vhost = text(p, "vhost").unwrap_or_default();
        let name = text(p, "name").unwrap_or_default();
        let bad = |reason: &str| invalid("operator policy", &vhost, &name, reason.to_owned());
        let value = p.get("value").ok_or_else(|| bad("no value"))?;
        let pattern = text(value, "pattern").ok_or_else(|| bad("no pattern"))?;
        let apply_to = text(value, "apply-to").unwrap_or_else(|| "all".to_owned());
        let priority = match value.get("priority") {
            None => 0,
            Some(n) => n
                .as_i64()
                .ok_or_else(|| bad("priority is not an integer"))?,
        };
        let definition = value
            .get("definition")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| bad("no definition"))?;
        let policy = Policy::new(
            PolicyKind::Operator,
            &vhost,
            &name,
            &pattern,
            &apply_to,
            priority,
            definition,
        )
        .map_err(|reason| invalid("operator policy", &vhost, &name, reason))?;
        out.push(policy);
    }
    Ok(out)
}

/// Imports `doc` into `broker`, or changes nothing and says why.
pub fn import(broker: &Broker, doc: &Definitions) -> Result<(), String> {
    if let Some(component) = doc
        .parameters
        .iter()
        .filter_map(|p| p.get("component").and_then(Value::as_str))
        .find(|c| *c != VHOST_LIMITS_COMPONENT && *c != OPERATOR_POLICY_COMPONENT)
    {
        // What Warren cannot apply is refused rather than dropped: an import that "succeeds"
        // without the upstreams it carried would change what the broker does without saying so.
        return Err(format!(
            "runtime parameters of component '{component}' are not supported by this version of Warren"
        ));
    }
    let global_parameters = global_parameters(doc)?;
    let access = access_definitions(broker, doc)?;
    broker
        .users
        .check_import(&access)
        .map_err(|e| e.to_string())?;
    let new_vhosts: HashSet<&str> = access.vhosts.iter().map(|v| v.name.as_str()).collect();
    let vhost_known = |v: &str| new_vhosts.contains(v) || broker.vhost(v).is_some();
    let mut policies = Vec::new();
    for p in policy_definitions(doc)? {
        if !vhost_known(&p.vhost) {
            return Err(format!(
                "vhost '{}' of policy '{}' does not exist",
                p.vhost, p.name
            ));
        }
        policies.push(p);
    }
    let mut exchanges = Vec::new();
    for x in &doc.exchanges {
        if !vhost_known(&x.vhost) {
            return Err(format!(
                "vhost '{}' of exchange '{}' does not exist",
                x.vhost, x.name
            ));
        }
        if is_reserved_exchange(&x.name) {
            warn!(exchange = %x.name, "skipping the import of an exchange whose name begins with 'amq.'");
            continue;
        }
        let kind = ExchangeKind::from_name(&x.kind)
            .ok_or_else(|| format!("unknown exchange type '{}'", x.kind))?;
        let options = ExchangeOptions {
            kind,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: json_to_table(&x.arguments)?,
        };
        if let Some(v) = broker.vhost(&x.vhost) {
            v.check_declare_exchange(&x.name, &x.kind, &options)
                .map_err(|e| e.reply(&x.vhost).reply_text())?;
        }
        exchanges.push((x, options));
    }
    let mut queues = Vec::new();
    for q in &doc.queues {
        if !vhost_known(&q.vhost) {
            return Err(format!(
                "vhost '{}' of queue '{}' does not exist",
                q.vhost, q.name
            ));
        }
        let options = QueueOptions {
            durable: q.durable,
            auto_delete: q.auto_delete,
            exclusive_owner: None,
            arguments: json_to_table(&q.arguments)?,
        };
        let check = match broker.vhost(&q.vhost) {
            Some(v) => v.check_declare_queue(&q.name, &options),
            None => crate::vhost::VHost::new(&q.vhost).check_declare_queue(&q.name, &options),
        };
        check.map_err(|e| e.reply(&q.vhost).reply_text())?;
        queues.push((q, options));
    }
    let exchange_known = |vhost: &str, name: &str| {
        is_reserved_exchange(name)
            || doc
                .exchanges
                .iter()
                .any(|x| x.vhost == vhost && x.name == name)
            || broker
                .vhost(vhost)
                .is_some_and(|v| v.exchange(name).is_ok())
    };
    let queue_known = |vhost: &str, name: &str| {
        doc.queues
            .iter()
            .any(|q| q.vhost == vhost && q.name == name)
            || broker.vhost(vhost).is_some_and(|v| v.queue(name).is_ok())
    };
    let mut bindings = Vec::new();
    for b in &doc.bindings {
        if !exchange_known(&b.vhost, &b.source) {
            return Err(format!("no exchange '{}' in vhost '{}'", b.source, b.vhost));
        }
        let to_queue = match b.destination_type.as_str() {
            "queue" => true,
            "exchange" => false,
            other => return Err(format!("unknown destination type '{other}'")),
        };
        let known = if to_queue {
            queue_known(&b.vhost, &b.destination)
        } else {
            exchange_known(&b.vhost, &b.destination)
        };
        if !known {
            let kind = if to_queue { "queue" } else { "exchange" };
            return Err(format!(
                "no {kind} '{}' in vhost '{}'",
                b.destination, b.vhost
            ));
        }
        bindings.push((b, to_queue, json_to_table(&b.arguments)?));
    }

    // Everything checked: apply. A failure now would be a bug in a check above; it is reported.
    broker.users.import(&access).map_err(|e| e.to_string())?;
    broker.sync_vhosts();
    for (name, value) in global_parameters {
        broker.global_parameters.put(name, value.clone());
    }
    // Policies before queues and exchanges, as RabbitMQ imports them: each object is declared
    // with its policy in force.
    for p in policies {
        let v = broker
            .vhost(&p.vhost)
            .ok_or("vhost vanished during import")?;
        v.put_policy(p);
    }
    for (x, options) in exchanges {
        let v = broker
            .vhost(&x.vhost)
            .ok_or("vhost vanished during import")?;
        v.declare_exchange(ShortStr::truncated(&x.name), &x.kind, options)
            .map_err(|e| e.reply(&x.vhost).reply_text())?;
    }
    for (q, options) in queues {
        let v = broker
            .vhost(&q.vhost)
            .ok_or("vhost vanished during import")?;
        v.declare_queue(ShortStr::truncated(&q.name), false, options)
            .map_err(|e| e.reply(&q.vhost).reply_text())?;
    }
    for (b, to_queue, arguments) in bindings {
        let v = broker
            .vhost(&b.vhost)
            .ok_or("vhost vanished during import")?;
        let key = ShortStr::truncated(&b.routing_key);
        let result = if to_queue {
            v.bind_queue(&b.source, &b.destination, ConnectionId(0), key, arguments)
        } else {
            v.bind_exchange(&b.source, &b.destination, key, arguments)
        };
        result.map_err(|e| e.reply(&b.vhost).reply_text())?;
    }
    info!(
        users = doc.users.len(),
        vhosts = doc.vhosts.len(),
        policies = doc.policies.len(),
        queues = doc.queues.len(),
        exchanges = doc.exchanges.len(),
        bindings = doc.bindings.len(),
        "imported definitions"
    );
    Ok(())
}

/// Reads a definitions file (RabbitMQ's JSON); checked before the store opens, so a missing
/// or malformed file stops the start before anything is touched.
pub fn read_file(path: &std::path::Path) -> Result<Definitions, StoreError> {
    let fail = |reason: String| StoreError::LoadDefinitions(path.to_path_buf(), reason);
    let bytes = std::fs::read(path).map_err(|e| fail(e.kind().to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a definitions document: {e}")))
}

/// `--load-definitions`: imports the file into the opened broker, all or nothing; an
/// unreadable or invalid file is an error naming it.
pub fn load_file(broker: &Broker, path: &std::path::Path) -> Result<(), StoreError> {
    let doc = read_file(path)?;
    import(broker, &doc).map_err(|e| {
        StoreError::LoadDefinitions(path.to_path_buf(), format!("cannot import it: {e}"))
    })
}
