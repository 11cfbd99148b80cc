//! Runtime parameters and the small discovery endpoints (`routes.rs` for the rest), in the
//! management plugin's shapes:
//! - `parameters[/{component}[/{vhost}[/{name}]]]`: vhost-scoped runtime parameters. Without
//!   the federation and shovel plugins RabbitMQ knows one component, `vhost-limits` (name
//!   `limits`, value the vhost's whole limits map), and refuses others with "component … not
//!   found"; Warren has no such plugins either, so it answers the same.
//! - `global-parameters[/{name}]`: named JSON values (`cluster_name`, `internal_cluster_id`…).
//! - `extensions`, `feature-flags`, `health/checks/node-is-mirror-sync-critical`.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{authorize, Access};
use super::body;
use super::error::{json_response, ApiError};
use super::routes::Request;
use super::source::{Declared, LimitScope, ManagementSource};

use crate::auth::VHOST_LIMITS_COMPONENT as VHOST_LIMITS;

/// The routes this module answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterRoute {
    /// `parameters`, `parameters/{component}`, `parameters/{component}/{vhost}`
    Parameters(Option<String>, Option<String>),
    /// `parameters/{component}/{vhost}/{name}`
    Parameter(String, String, String),
    /// `global-parameters`
    GlobalParameters,
    /// `global-parameters/{name}`
    GlobalParameter(String),
    /// `extensions`: the web UI's plugins (none).
    Extensions,
    /// `feature-flags`
    FeatureFlags,
    /// `health/checks/node-is-mirror-sync-critical`
    MirrorSyncCritical,
}

impl ParameterRoute {
    /// The route for decoded path segments after `/api/`.
    pub fn parse(s: &[&str]) -> Option<ParameterRoute> {
        let own = |x: &&str| x.to_string();
        Some(match s {
            ["parameters"] => ParameterRoute::Parameters(None, None),
            ["parameters", c] => ParameterRoute::Parameters(Some(own(c)), None),
            ["parameters", c, v] => ParameterRoute::Parameters(Some(own(c)), Some(own(v))),
            ["parameters", c, v, n] => ParameterRoute::Parameter(own(c), own(v), own(n)),
            ["global-parameters"] => ParameterRoute::GlobalParameters,
            ["global-parameters", n] => ParameterRoute::GlobalParameter(own(n)),
            ["extensions"] => ParameterRoute::Extensions,
            ["feature-flags"] => ParameterRoute::FeatureFlags,
            ["health", "checks", "node-is-mirror-sync-critical"] => {
                ParameterRoute::MirrorSyncCritical
            }
            _ => return None,
        })
    }

    /// The methods it answers.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            ParameterRoute::Parameter(..) | ParameterRoute::GlobalParameter(_) => {
                &[Method::GET, Method::PUT, Method::DELETE]
            }
            _ => &[Method::GET],
        }
    }
}

#[derive(Deserialize)]
struct ValueBody {
    value: Option<Value>,
}

/// The value of a PUT body; RabbitMQ answers `[{key_missing,value}]` without one.
fn value_of(body: &[u8]) -> Result<Value, ApiError> {
    let b: ValueBody = body::parse(body)?;
    b.value
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))
}

fn component_not_found(component: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Validation failed\n\ncomponent {component} not found\n"
    ))
}

/// A vhost's limits as the runtime parameter RabbitMQ 3.x keeps them as (lists, exports).
pub fn parameter_json(vhost: &str, value: &Map<String, Value>) -> Value {
    json!({"value": value, "vhost": vhost, "component": VHOST_LIMITS, "name": "limits"})
}

/// RabbitMQ 3.10's feature flags, all enabled: each describes what Warren does, and it has no
/// older behaviour to switch back to.
const FEATURE_FLAGS: [(&str, &str, &str); 9] = [
    (
        "classic_mirrored_queue_version",
        "Support setting version for classic mirrored queues",
        "rabbit",
    ),
    (
        "drop_unroutable_metric",
        "Count unroutable publishes to be dropped in stats",
        "rabbitmq_management_agent",
    ),
    (
        "empty_basic_get_metric",
        "Count AMQP `basic.get` on empty queues in stats",
        "rabbitmq_management_agent",
    ),
    (
        "implicit_default_bindings",
        "Default bindings are now implicit, instead of being stored in the database",
        "rabbit",
    ),
    (
        "maintenance_mode_status",
        "Maintenance mode status",
        "rabbit",
    ),
    ("quorum_queue", "Support queues of type `quorum`", "rabbit"),
    ("stream_queue", "Support queues of type `stream`", "rabbit"),
    (
        "user_limits",
        "Configure connection and channel limits for a user",
        "rabbit",
    ),
    (
        "virtual_host_metadata",
        "Virtual host metadata (description, tags, etc)",
        "rabbit",
    ),
];

pub async fn handle<S: ManagementSource>(
    route: ParameterRoute,
    req: Request<'_, S>,
) -> Result<Response, ApiError> {
    let source = req.source;
    let user = &req.user;
    match (route, req.method.clone()) {
        (ParameterRoute::Extensions, _) => {
            authorize(user, Access::Management)?;
            req.list_rows(Vec::new())
        }
        (ParameterRoute::FeatureFlags, _) => {
            authorize(user, Access::Administrator)?;
            let rows = FEATURE_FLAGS
                .iter()
                .map(|(name, desc, by)| {
                    json!({"name": name, "desc": desc, "doc_url": "", "state": "enabled",
                           "stability": "stable", "provided_by": by})
                })
                .collect();
            req.list_rows(rows)
        }
        (ParameterRoute::MirrorSyncCritical, _) => {
            authorize(user, Access::Management)?;
            // No mirrored queues exist here, so none can lose its last synchronised mirror.
            Ok(json_response(
                StatusCode::OK,
                &json!({"status": "ok", "reason": "single node cluster"}),
            ))
        }
        (ParameterRoute::GlobalParameters, _) => {
            authorize(user, Access::Parameters)?;
            let rows = source
                .global_parameters()
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            req.list_rows(rows)
        }
        (ParameterRoute::GlobalParameter(name), method) => {
            authorize(user, Access::Parameters)?;
            match method {
                Method::GET => {
                    let (name, value) = source
                        .global_parameters()
                        .into_iter()
                        .find(|(n, _)| *n == name)
                        .ok_or(ApiError::NotFound)?;
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"value": value, "name": name}),
                    ))
                }
                Method::PUT => {
                    let value = value_of(&req.body)?;
                    Ok(match source.put_global_parameter(name, value).await? {
                        Declared::Created => StatusCode::CREATED.into_response(),
                        Declared::Existed => StatusCode::NO_CONTENT.into_response(),
                    })
                }
                _ => {
                    source.delete_global_parameter(&name).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
        (ParameterRoute::Parameters(component, vhost), _) => {
            if let Some(v) = &vhost {
                if !source.vhost_exists(v) {
                    return Err(ApiError::NotFound);
                }
                authorize(user, Access::Policies(v))?;
            } else {
                authorize(user, Access::Parameters)?;
            }
            if component.as_deref().is_some_and(|c| c != VHOST_LIMITS) {
                return req.list_rows(Vec::new());
            }
            let rows = source
                .limits(false)
                .into_iter()
                .filter(|(v, _)| vhost.as_ref().is_none_or(|scope| scope == v))
                .filter(|(v, _)| user.can_access_vhost(v))
                .map(|(v, limits)| parameter_json(&v, &limits))
                .collect();
            req.list_rows(rows)
        }
        (ParameterRoute::Parameter(component, vhost, name), method) => {
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            authorize(user, Access::Policies(&vhost))?;
            if component != VHOST_LIMITS {
                return match method {
                    Method::PUT => Err(component_not_found(&component)),
                    _ => Err(ApiError::NotFound),
                };
            }
            let current = source
                .limits(false)
                .into_iter()
                .find(|(v, _)| *v == vhost)
                .map(|(_, limits)| limits);
            match method {
                Method::GET => match current {
                    Some(limits) if name == "limits" => Ok(json_response(
                        StatusCode::OK,
                        &parameter_json(&vhost, &limits),
                    )),
                    _ => Err(ApiError::NotFound),
                },
                Method::PUT => {
                    if name != "limits" {
                        return Err(ApiError::bad_request(format!(
                            "Validation failed\n\nvhost-limits parameters are named 'limits', \
                             not '{name}'\n"
                        )));
                    }
                    let Value::Object(wanted) = value_of(&req.body)? else {
                        return Err(ApiError::bad_request(
                            "Validation failed\n\nthe value of vhost-limits must be an object\n",
                        ));
                    };
                    let mut values = Vec::new();
                    for (limit, value) in &wanted {
                        if !super::access_routes::VHOST_LIMITS.contains(&limit.as_str()) {
                            return Err(ApiError::bad_request(format!(
                                "Unrecognised terms [{limit}] in limits"
                            )));
                        }
                        let n = super::access_routes::limit_value(Some(value.clone()))?;
                        values.push((limit.clone(), n));
                    }
                    // The value is the whole map: limits it leaves out are cleared.
                    for old in current.iter().flat_map(|m| m.keys()) {
                        if !wanted.contains_key(old) {
                            source
                                .set_limit(LimitScope::Vhost(vhost.clone()), old, None)
                                .await?;
                        }
                    }
                    for (limit, n) in values {
                        source
                            .set_limit(LimitScope::Vhost(vhost.clone()), &limit, Some(n))
                            .await?;
                    }
                    Ok(if current.is_some() {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::CREATED
                    }
                    .into_response())
                }
                _ => {
                    let Some(limits) = current.filter(|_| name == "limits") else {
                        return Err(ApiError::NotFound);
                    };
                    for limit in limits.keys() {
                        source
                            .set_limit(LimitScope::Vhost(vhost.clone()), limit, None)
                            .await?;
                    }
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
    }
}
