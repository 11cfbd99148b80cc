//! The RabbitMQ-compatible management HTTP API (`/api/...`), served by axum.
//!
//! This layer knows HTTP, RabbitMQ's JSON shapes, its list parameters and its tag rules; the broker
//! behind it is a [`ManagementSource`] (objects, counters, changes) and a [`ManagementAuth`] (users).
//! Requests are routed on the raw, still-encoded path ([`path`]), because names may contain `/`
//! (the vhost `/` is `%2F`). A panic in a handler answers 500 and takes nothing else down.
//!
//! The broker implements both in [`broker_source`] ([`broker_source::BrokerManagement`],
//! [`broker_source::BrokerAuth`]); `server::start_management` serves them. The `fake` module is
//! an in-memory stand-in for this layer's own tests only.

pub mod access_routes;
pub mod amqp_json;
pub mod auth;
pub mod body;
pub mod broker_source;
pub mod certificate_check;
pub mod definitions;
pub mod definitions_import;
pub mod error;
pub mod list;
pub mod parameter_routes;
pub mod path;
pub mod pick;
pub mod rates;
pub mod routes;
pub mod source;
pub mod ui;
pub mod views;

#[cfg(test)]
mod fake;
#[cfg(test)]
pub(crate) mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{ManagementAuth, UserInfo};
pub use error::ApiError;
pub use source::ManagementSource;

/// Largest request body accepted (definitions documents are the big ones); RabbitMQ's default
/// `management.http.max_body_size` is 20 MiB.
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

/// What the server needs: the broker and its users.
pub struct Management<S, A> {
    pub source: S,
    pub auth: A,
    pub max_body_bytes: usize,
}

impl<S: ManagementSource, A: ManagementAuth> Management<S, A> {
    pub fn new(source: S, auth: A) -> Self {
        Management {
            source,
            auth,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// The axum application: every request goes through [`dispatch`]; panics become 500s.
pub fn router<S: ManagementSource, A: ManagementAuth>(state: Arc<Management<S, A>>) -> Router {
    Router::new()
        .fallback(dispatch::<S, A>)
        .with_state(state)
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("management API handler panicked");
                ApiError::Internal("internal error".into()).into_response()
            },
        ))
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Each request knows its peer's address (the loopback-only rule for `guest`).
pub async fn serve<S, A, F>(
    listener: TcpListener,
    state: Arc<Management<S, A>>,
    shutdown: F,
) -> std::io::Result<()>
where
    S: ManagementSource,
    A: ManagementAuth,
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves the API over TLS on `listener` until `shutdown`: each accepted stream gets its
/// handshake (bounded by the AMQPS handshake timeout) and then HTTP/1.1, with the peer's
/// address where the handlers look for it (`ConnectInfo`: the loopback rule for `guest`).
pub async fn serve_tls<S, A, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<Management<S, A>>,
    shutdown: F,
) -> std::io::Result<()>
where
    S: ManagementSource,
    A: ManagementAuth,
    F: Future<Output = ()> + Send + 'static,
{
    use tower::ServiceExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(state);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "management API (TLS): accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream);
            let stream = match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "management API: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Route (404), method (405), credentials and tags (401), body (413/400), then the handler.
async fn dispatch<S: ManagementSource, A: ManagementAuth>(
    State(state): State<Arc<Management<S, A>>>,
    request: Request<Body>,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads && !request.uri().path().starts_with("/api") {
        if let Some(page) = ui::serve(request.uri().path(), request.headers()) {
            return page;
        }
    }
    // The web UI asks with `X-Requested-With`: its failed logins get no `www-authenticate`, so
    // the browser shows the UI's own error instead of its credentials dialog.
    let from_script = request.headers().contains_key("x-requested-with");
    match handle(&state, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = error.into_response();
            if from_script {
                response.headers_mut().remove(header::WWW_AUTHENTICATE);
            }
            response
        }
    }
}

async fn handle<S: ManagementSource, A: ManagementAuth>(
    state: &Management<S, A>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let segments = path::api_segments(parts.uri.path()).ok_or(ApiError::NotFound)?;
    // How to log in, asked before there are credentials (RabbitMQ answers it to anyone): no
    // OAuth here. 3.10's keys, and 3.11's `oauth_enabled`.
    if segments.len() == 1
        && segments[0] == "auth"
        && matches!(parts.method, Method::GET | Method::HEAD)
    {
        let answer = serde_json::json!({"enable_uaa": false, "uaa_client_id": "",
                                        "uaa_location": "", "oauth_enabled": false});
        return Ok(error::json_response(StatusCode::OK, &answer));
    }
    let route = routes::Route::parse(&segments).ok_or(ApiError::NotFound)?;
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    let allowed = route.methods();
    if method == Method::OPTIONS {
        return Ok((StatusCode::OK, [(header::ALLOW, allow_header(allowed))]).into_response());
    }
    if !allowed.contains(&method) {
        return Err(ApiError::MethodNotAllowed(allowed.to_vec()));
    }
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let user = auth::authenticate(&state.auth, authorization, peer)?;
    let body = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let query = path::query_pairs(parts.uri.query());
    let single_object_columns = (method == Method::GET)
        .then(|| list::ListQuery::parse(&query).ok())
        .flatten()
        .filter(|q| q.page.is_none())
        .and_then(|q| q.columns);
    let request = routes::Request {
        source: &state.source,
        user,
        method,
        query,
        headers: parts.headers,
        body,
    };
    let response = routes::handle(route, request).await?;
    match single_object_columns {
        Some(columns) => Ok(select_object_columns(response, &columns).await),
        None => Ok(response),
    }
}

/// `columns=` on a single object (`/api/overview`, `/api/queues/{v}/{q}`…): RabbitMQ answers
/// only those keys there too. Lists select their columns while they are built; a single object
/// is cut here, after the fact, so that no handler needs to know (only requests with `columns`
/// pay for the second parse).
async fn select_object_columns(response: Response, columns: &[Vec<String>]) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(object @ serde_json::Value::Object(_)) => {
            error::json_response(StatusCode::OK, &list::select_columns(&object, columns))
        }
        // An array (a list, already cut) or not JSON at all: as it was.
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// RabbitMQ's order: `HEAD, GET, PUT, DELETE, OPTIONS`.
pub(crate) fn allow_header(methods: &[Method]) -> String {
    let mut names: Vec<&str> = Vec::new();
    if methods.contains(&Method::GET) {
        names.push("HEAD");
    }
    names.extend(methods.iter().map(Method::as_str));
    names.push("OPTIONS");
    names.join(", ")
}
