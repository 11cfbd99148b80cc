//! The access model's endpoints beyond users and permissions (`routes.rs`): topic permissions,
//! user and vhost limits, and users/bulk-delete, in the management plugin's shapes.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{authorize, Access};
use super::body;
use super::error::{json_response, ApiError};
use super::routes::Request;
use super::source::{Declared, LimitScope, ManagementSource, TopicPermissionView};

/// Limit names RabbitMQ accepts per scope.
const USER_LIMITS: [&str; 2] = ["max-connections", "max-channels"];
pub(super) const VHOST_LIMITS: [&str; 2] = ["max-connections", "max-queues"];

/// The routes this module answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessRoute {
    /// `topic-permissions`
    TopicPermissions,
    /// `topic-permissions/{vhost}/{user}`
    TopicPermission(String, String),
    /// `users/{user}/topic-permissions`
    UserTopicPermissions(String),
    /// `vhosts/{vhost}/topic-permissions`
    VhostTopicPermissions(String),
    /// `users/bulk-delete`
    UsersBulkDelete,
    /// `users/without-permissions`
    UsersWithoutPermissions,
    /// `user-limits` or `user-limits/{user}` (true), `vhost-limits[/{vhost}]` (false)
    Limits(bool, Option<String>),
    /// `user-limits/{user}/{name}` (true) or `vhost-limits/{vhost}/{name}` (false)
    Limit(bool, String, String),
}

impl AccessRoute {
    /// The route for decoded path segments after `/api/`.
    pub fn parse(s: &[&str]) -> Option<AccessRoute> {
        let own = |x: &&str| x.to_string();
        Some(match s {
            ["topic-permissions"] => AccessRoute::TopicPermissions,
            ["topic-permissions", v, u] => AccessRoute::TopicPermission(own(v), own(u)),
            ["users", "bulk-delete"] => AccessRoute::UsersBulkDelete,
            ["users", "without-permissions"] => AccessRoute::UsersWithoutPermissions,
            ["users", u, "topic-permissions"] => AccessRoute::UserTopicPermissions(own(u)),
            ["vhosts", v, "topic-permissions"] => AccessRoute::VhostTopicPermissions(own(v)),
            ["user-limits"] => AccessRoute::Limits(true, None),
            ["user-limits", u] => AccessRoute::Limits(true, Some(own(u))),
            ["user-limits", u, n] => AccessRoute::Limit(true, own(u), own(n)),
            ["vhost-limits"] => AccessRoute::Limits(false, None),
            ["vhost-limits", v] => AccessRoute::Limits(false, Some(own(v))),
            ["vhost-limits", v, n] => AccessRoute::Limit(false, own(v), own(n)),
            _ => return None,
        })
    }

    /// The methods it answers.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            AccessRoute::TopicPermission(..) => &[Method::GET, Method::PUT, Method::DELETE],
            AccessRoute::UsersBulkDelete => &[Method::POST],
            AccessRoute::Limit(..) => &[Method::PUT, Method::DELETE],
            _ => &[Method::GET],
        }
    }
}

pub fn topic_permission_json(p: &TopicPermissionView) -> Value {
    json!({"user": p.user, "vhost": p.vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

#[derive(Deserialize)]
struct TopicPermissionBody {
    #[serde(default)]
    exchange: Option<String>,
    #[serde(default)]
    write: String,
    #[serde(default)]
    read: String,
}

#[derive(Deserialize)]
struct BulkDeleteBody {
    #[serde(default)]
    users: Vec<String>,
}

#[derive(Deserialize)]
struct LimitBody {
    value: Option<Value>,
}

fn rows(list: impl IntoIterator<Item = TopicPermissionView>) -> Vec<Value> {
    list.into_iter()
        .map(|p| topic_permission_json(&p))
        .collect()
}

fn user_exists<S: ManagementSource>(source: &S, user: &str) -> bool {
    source.users().iter().any(|u| u.name == user)
}

/// A limit value as RabbitMQ accepts it: an integer, or a string of one (rabbitmqadmin).
pub(super) fn limit_value(value: Option<Value>) -> Result<i64, ApiError> {
    let value = value.ok_or_else(|| ApiError::bad_request("value is required"))?;
    match &value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request(format!("value should be an integer, actually was {value}"))
    })
}

pub async fn handle<S: ManagementSource>(
    route: AccessRoute,
    req: Request<'_, S>,
) -> Result<Response, ApiError> {
    let source = req.source;
    let user = &req.user;
    authorize(user, Access::Administrator)?;
    let all = || source.topic_permissions();
    match (route, req.method.clone()) {
        (AccessRoute::TopicPermissions, _) => req.list_rows(rows(all())),
        (AccessRoute::UserTopicPermissions(name), _) => {
            if !user_exists(source, &name) {
                return Err(ApiError::NotFound);
            }
            req.list_rows(rows(all().into_iter().filter(|p| p.user == name)))
        }
        (AccessRoute::VhostTopicPermissions(vhost), _) => {
            if !source.vhost_exists(&vhost) {
                return Err(ApiError::NotFound);
            }
            req.list_rows(rows(all().into_iter().filter(|p| p.vhost == vhost)))
        }
        (AccessRoute::TopicPermission(vhost, name), method) => {
            if !source.vhost_exists(&vhost) || !user_exists(source, &name) {
                return Err(ApiError::NotFound);
            }
            match method {
                Method::GET => {
                    let found = rows(
                        all()
                            .into_iter()
                            .filter(|p| p.vhost == vhost && p.user == name),
                    );
                    if found.is_empty() {
                        return Err(ApiError::NotFound);
                    }
                    Ok(json_response(StatusCode::OK, &Value::Array(found)))
                }
                Method::PUT => {
                    let b: TopicPermissionBody = body::parse(&req.body)?;
                    let exchange = b
                        .exchange
                        .filter(|x| !x.is_empty())
                        .ok_or_else(|| ApiError::bad_request("exchange is required"))?;
                    for regex in [&b.write, &b.read] {
                        regex::Regex::new(regex).map_err(|_| {
                            ApiError::bad_request(format!("invalid regex '{regex}'"))
                        })?;
                    }
                    let declared = source
                        .put_topic_permission(TopicPermissionView {
                            user: name,
                            vhost,
                            exchange,
                            write: b.write,
                            read: b.read,
                        })
                        .await?;
                    Ok(match declared {
                        Declared::Created => StatusCode::CREATED.into_response(),
                        Declared::Existed => StatusCode::NO_CONTENT.into_response(),
                    })
                }
                _ => {
                    let exchange = req
                        .query
                        .iter()
                        .find(|(k, _)| k == "exchange")
                        .map(|(_, v)| v.clone());
                    source
                        .delete_topic_permissions(&name, &vhost, exchange.as_deref())
                        .await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
        (AccessRoute::UsersWithoutPermissions, _) => {
            let permissions = source.permissions();
            let rows = source
                .users()
                .iter()
                .filter(|u| !permissions.iter().any(|p| p.user == u.name))
                .map(super::views::user_json)
                .collect();
            req.list_rows(rows)
        }
        (AccessRoute::UsersBulkDelete, _) => {
            let b: BulkDeleteBody = body::parse(&req.body)?;
            for name in &b.users {
                // Users that do not exist are skipped, as RabbitMQ's bulk delete does.
                match source.delete_user(name).await {
                    Ok(()) | Err(super::source::SourceError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (AccessRoute::Limits(users, scope), _) => {
            if let Some(name) = &scope {
                let exists = if users {
                    user_exists(source, name)
                } else {
                    source.vhost_exists(name)
                };
                if !exists {
                    return Err(ApiError::NotFound);
                }
            }
            let key = if users { "user" } else { "vhost" };
            let list: Vec<Value> = source
                .limits(users)
                .into_iter()
                .filter(|(name, _)| scope.as_ref().is_none_or(|s| s == name))
                .map(|(name, value)| json!({ key: name, "value": value }))
                .collect();
            req.list_rows(list)
        }
        (AccessRoute::Limit(users, name, limit), method) => {
            let (exists, known, scope) = if users {
                (
                    user_exists(source, &name),
                    &USER_LIMITS,
                    LimitScope::User(name),
                )
            } else {
                (
                    source.vhost_exists(&name),
                    &VHOST_LIMITS,
                    LimitScope::Vhost(name),
                )
            };
            if !exists {
                return Err(ApiError::NotFound);
            }
            if !known.contains(&limit.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Unrecognised terms [{limit}] in limits"
                )));
            }
            let value = if method == Method::PUT {
                let b: LimitBody = body::parse(&req.body)?;
                Some(limit_value(b.value)?)
            } else {
                None
            };
            source.set_limit(scope, &limit, value).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
