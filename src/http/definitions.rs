//! Definitions export in RabbitMQ's format, and the per-vhost form of an import document.

use serde_json::{json, Value};

use super::source::{Definitions, ManagementSource};
use super::views::{permission_json, policy_json, user_json};

/// `GET /api/definitions` (`vhost` None) or `/api/definitions/{vhost}`. Exported as RabbitMQ does:
/// no default or `amq.*` exchanges, no exclusive queues, no default-exchange bindings; the per-vhost
/// document has no users/vhosts/permissions and no `vhost` key on queues, exchanges and bindings.
pub fn export<S: ManagementSource>(source: &S, vhost: Option<&str>) -> Value {
    let id = source.identity();
    let with_vhost = vhost.is_none();
    let strip = |mut v: Value| {
        if !with_vhost {
            if let Some(map) = v.as_object_mut() {
                map.remove("vhost");
            }
        }
        v
    };
    let queues: Vec<Value> = source
        .queues(vhost)
        .iter()
        .filter(|q| !q.exclusive)
        .map(|q| {
            strip(
                json!({"name": q.name, "vhost": q.vhost, "durable": q.durable,
                         "auto_delete": q.auto_delete, "arguments": q.arguments}),
            )
        })
        .collect();
    let exchanges: Vec<Value> = source
        .exchanges(vhost)
        .iter()
        .filter(|x| !x.name.is_empty() && !x.name.starts_with("amq."))
        .map(|x| {
            strip(json!({"name": x.name, "vhost": x.vhost, "type": x.kind, "durable": x.durable,
                         "auto_delete": x.auto_delete, "internal": x.internal, "arguments": x.arguments}))
        })
        .collect();
    let bindings: Vec<Value> = source
        .bindings(vhost)
        .iter()
        .filter(|b| !b.source.is_empty())
        .map(|b| {
            strip(json!({"source": b.source, "vhost": b.vhost, "destination": b.destination,
                         "destination_type": b.destination_type.as_str(), "routing_key": b.routing_key,
                         "arguments": b.arguments}))
        })
        .collect();
    let policies: Vec<Value> = source.policies(vhost).iter().map(policy_json).collect();
    // Vhost limits and operator policies are runtime parameters (components `vhost-limits` and
    // `operator_policy`) in RabbitMQ 3.x; they keep their `vhost` key in a per-vhost document.
    let mut parameters: Vec<Value> = source
        .limits(false)
        .into_iter()
        .filter(|(v, _)| vhost.is_none_or(|scope| scope == v))
        .map(|(v, value)| super::parameter_routes::parameter_json(&v, &value))
        .collect();
    parameters.extend(source.operator_policies(vhost).iter().map(|p| {
        json!({"value": {"pattern": p.pattern, "definition": p.definition, "priority": p.priority,
                         "apply-to": p.apply_to},
               "vhost": p.vhost, "component": "operator_policy", "name": p.name})
    }));
    let mut doc = json!({
        "rabbit_version": id.rabbitmq_version,
        "parameters": parameters,
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    });
    if with_vhost {
        doc["rabbitmq_version"] = json!(id.rabbitmq_version);
        doc["product_name"] = json!("Warren");
        doc["product_version"] = json!(id.product_version);
        doc["users"] = source.users().iter().map(user_json).collect();
        doc["vhosts"] = source
            .vhosts()
            .iter()
            .map(|v| {
                let mut metadata = json!({"description": v.description, "tags": v.tags});
                if let Some(queue_type) = &v.default_queue_type {
                    metadata["default_queue_type"] = json!(queue_type);
                }
                json!({"name": v.name, "description": v.description, "tags": v.tags,
                       "metadata": metadata})
            })
            .collect();
        doc["permissions"] = source.permissions().iter().map(permission_json).collect();
        doc["topic_permissions"] = source
            .topic_permissions()
            .iter()
            .map(super::access_routes::topic_permission_json)
            .collect();
        doc["global_parameters"] = source
            .global_parameters()
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
    }
    doc
}

/// A per-vhost import applies every object to the vhost of the request, whatever the document says,
/// and carries no users, vhosts or permissions.
pub fn scope_to_vhost(definitions: &mut Definitions, vhost: &str) {
    definitions.users.clear();
    definitions.vhosts.clear();
    definitions.permissions.clear();
    definitions.topic_permissions.clear();
    definitions.global_parameters.clear();
    for q in &mut definitions.queues {
        q.vhost = vhost.to_string();
    }
    for x in &mut definitions.exchanges {
        x.vhost = vhost.to_string();
    }
    for b in &mut definitions.bindings {
        b.vhost = vhost.to_string();
    }
    for p in &mut definitions.policies {
        p.vhost = vhost.to_string();
    }
    for p in &mut definitions.parameters {
        if let Some(map) = p.as_object_mut() {
            map.insert("vhost".into(), Value::from(vhost));
        }
    }
}
