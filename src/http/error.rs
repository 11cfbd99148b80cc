//! The management API's error answers, shaped as RabbitMQ's management plugin sends them.

use axum::http::{header, HeaderValue, Method, StatusCode};

use axum::response::{IntoResponse, Response};

/// `www-authenticate` on a failed login, so that browsers and curl prompt for credentials.
pub const AUTHENTICATE_REALM: &str = "Basic realm=\"RabbitMQ Management\"";

/// Every way a management request can fail. Rendered as `{"error": …, "reason": …}` (RabbitMQ's shape),
/// except where RabbitMQ sends an empty body (405, 401 without credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404 `{"error":"Object Not Found","reason":"Not Found"}`: a missing object, vhost or path.
    NotFound,
    /// 404 `{"error":"not_found","reason":…}`: a binding's missing end (`no exchange 'x' in vhost '/'`).
    NotFoundWith(String),
    /// 400 `{"error":"bad_request","reason":…}`.
    BadRequest(String),
    /// 400 with RabbitMQ's own error atom (e.g. `invalid_pagination_parameters`, `page_out_of_range`).
    BadRequestKind { error: &'static str, reason: String },
    /// 405 with an empty body and the `allow` header, as RabbitMQ's cowboy answers.
    MethodNotAllowed(Vec<Method>),
    /// 401 without credentials: empty body, `www-authenticate`.
    NoCredentials,
    /// 401 `{"error":"not_authorized","reason":"Login failed"}` with `www-authenticate`.
    LoginFailed,
    /// 401 `{"error":"not_authorised","reason":…}` (British spelling): authenticated, not allowed.
    NotAuthorised(String),
    /// 413: the request body is over the limit.
    PayloadTooLarge,
    /// 500 `{"error":"internal_server_error","reason":…}`: a broker failure, never a client error.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError::BadRequest(reason.into())
    }

    pub fn not_authorised(reason: impl Into<String>) -> Self {
        ApiError::NotAuthorised(reason.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NotFoundWith(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::BadRequestKind { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NoCredentials | ApiError::LoginFailed | ApiError::NotAuthorised(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `(error, reason)` pair of the JSON body; `None` where RabbitMQ sends no body.
    pub fn body(&self) -> Option<(&str, &str)> {
        match self {
            ApiError::NotFound => Some(("Object Not Found", "Not Found")),
            ApiError::NotFoundWith(reason) => Some(("not_found", reason)),
            ApiError::BadRequest(reason) => Some(("bad_request", reason)),
            ApiError::BadRequestKind { error, reason } => Some((error, reason)),
            ApiError::MethodNotAllowed(_) | ApiError::NoCredentials => None,
            ApiError::LoginFailed => Some(("not_authorized", "Login failed")),
            ApiError::NotAuthorised(reason) => Some(("not_authorised", reason)),
            ApiError::PayloadTooLarge => Some(("bad_request", "request entity too large")),
            ApiError::Internal(reason) => Some(("internal_server_error", reason)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.body() {
            Some((error, reason)) => {
                let body = serde_json::json!({ "error": error, "reason": reason });
                json_response(self.status(), &body)
            }
            None => (self.status(), "").into_response(),
        };
        let headers = response.headers_mut();
        match &self {
            ApiError::NoCredentials | ApiError::LoginFailed => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(AUTHENTICATE_REALM),
                );
            }
            ApiError::MethodNotAllowed(methods) => {
                if let Ok(value) = HeaderValue::from_str(&super::allow_header(methods)) {
                    headers.insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// A JSON response with RabbitMQ's content type.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A JSON response of bytes already written.
pub fn json_bytes_response(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}
