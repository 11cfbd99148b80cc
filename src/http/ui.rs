//! The web UI's files, embedded in the binary (no CDN, no build step: plain JS modules and CSS in
//! `src/http/ui/`), served by the management listener outside `/api/`.
//!
//! The page itself needs no credentials; the API calls it makes do (the script sends them).
//! Opening `http://user:pass@host:15672/` lands logged in: browsers send credentials from the URL
//! only in answer to a challenge, so a visit to `/` without credentials is answered 401 with
//! `www-authenticate` (and the page as the body). A browser with credentials in the URL answers
//! it; that answer hands the credentials to the script in the short-lived `warren_ui_auth` cookie
//! (the script moves them to its session storage and deletes the cookie, as RabbitMQ's UI keeps
//! its credentials in the page). A browser without shows the page, whose login form sets the
//! `warren_ui=form` cookie so that later visits are not challenged again.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const CHART_JS: &str = include_str!("ui/chart.js");
const STYLE_CSS: &str = include_str!("ui/style.css");
const FAVICON: &str = include_str!("ui/favicon.svg");

/// The cookie the login form sets: this browser logs in with the form, do not challenge it.
const FORM_COOKIE: &str = "warren_ui=form";
/// The cookie that hands the page's Basic credentials to its script.
const AUTH_COOKIE: &str = "warren_ui_auth";

/// The answer for a UI path, `None` for one the UI does not have (then 404 as the API's).
pub fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let (body, content_type) = match path {
        "/" | "/index.html" => return Some(index(headers)),
        "/ui/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/ui/chart.js" => (CHART_JS, "text/javascript; charset=utf-8"),
        "/ui/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "/favicon.ico" | "/ui/favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return None,
    };
    Some(
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
    )
}

fn index(headers: &HeaderMap) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::trim)
        .filter(|token| is_base64(token));
    let cookies: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .collect();
    let uses_form = cookies.contains(&FORM_COOKIE);
    let handing_over = cookies
        .iter()
        .any(|c| c.starts_with(AUTH_COOKIE) && c[AUTH_COOKIE.len()..].starts_with('='));
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response();
    if let Some(token) = basic {
        let cookie = format!("{AUTH_COOKIE}={token}; Path=/; Max-Age=60; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    if basic.is_none() && !uses_form && !handing_over {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
        );
    }
    response
}

/// A Basic token is base64: nothing else may go into the cookie.
fn is_base64(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_visit_is_challenged_then_served() {
        let none = HeaderMap::new();
        let first = serve("/", &none).expect("index");
        assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
        assert!(first.headers().contains_key(header::WWW_AUTHENTICATE));

        let mut with_form = HeaderMap::new();
        with_form.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; warren_ui=form"),
        );
        assert_eq!(
            serve("/", &with_form).expect("index").status(),
            StatusCode::OK
        );

        let mut with_basic = HeaderMap::new();
        with_basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        let basic = serve("/", &with_basic).expect("index");
        assert_eq!(basic.status(), StatusCode::OK);
        assert!(basic.headers()[header::SET_COOKIE]
            .to_str()
            .is_ok_and(|c| c.starts_with("warren_ui_auth=eDp5;")));

        // The next load (at the URL without credentials) is not challenged while handing over.
        let mut handing_over = HeaderMap::new();
        handing_over.insert(
            header::COOKIE,
            HeaderValue::from_static("warren_ui_auth=eDp5"),
        );
        assert_eq!(
            serve("/", &handing_over).expect("index").status(),
            StatusCode::OK
        );

        // Only a base64 token goes into the cookie.
        let mut odd = HeaderMap::new();
        odd.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic a;b=c"),
        );
        assert!(!serve("/", &odd)
            .expect("index")
            .headers()
            .contains_key(header::SET_COOKIE));

        let js = serve("/ui/app.js", &none).expect("app.js");
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(serve("/ui/missing.js", &none).is_none());
    }
}
