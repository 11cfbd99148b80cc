//! The web UI's files, embedded in the binary (no CDN, no build step: plain JS modules and CSS in
//! `src/http/ui/`), served by the management listener outside `/api/`.
//!
//! The page itself needs no credentials; the API calls it makes do. One exception makes
//! `http://user:pass@host:15672/` land logged in: browsers send credentials from the URL only in
//! answer to a challenge, so a first visit to `/` without credentials is answered 401 with
//! `www-authenticate` (and the page as the body). A browser with credentials in the URL answers
//! it and then sends them with every API call; one without shows the page, whose login form sets
//! the `warren_ui=form` cookie so that later visits are not challenged again. The page tells its
//! script whether it came with credentials through the `warren_ui_basic` cookie, so the script
//! tries the browser's own credentials only then (a call bound to fail would log a console
//! error).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const CHART_JS: &str = include_str!("ui/chart.js");
const STYLE_CSS: &str = include_str!("ui/style.css");
const FAVICON: &str = include_str!("ui/favicon.svg");

/// The cookie the login form sets: this browser logs in with the form, do not challenge it.
const FORM_COOKIE: &str = "warren_ui=form";
/// Set while the page was loaded with Basic credentials (the browser sends them with API calls).
const BASIC_COOKIE_SET: &str = "warren_ui_basic=1; Path=/; SameSite=Strict";
const BASIC_COOKIE_CLEAR: &str = "warren_ui_basic=; Path=/; Max-Age=0; SameSite=Strict";

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
    let has_credentials = headers.contains_key(header::AUTHORIZATION);
    let uses_form = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim() == FORM_COOKIE);
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response();
    let basic = if has_credentials {
        BASIC_COOKIE_SET
    } else {
        BASIC_COOKIE_CLEAR
    };
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(basic));
    if !has_credentials && !uses_form {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
        );
    }
    response
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
        with_form.insert(header::COOKIE, HeaderValue::from_static("a=b; warren_ui=form"));
        assert_eq!(
            serve("/", &with_form).expect("index").status(),
            StatusCode::OK
        );

        let mut with_basic = HeaderMap::new();
        with_basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        let basic = serve("/", &with_basic).expect("index");
        assert_eq!(basic.status(), StatusCode::OK);
        assert!(basic.headers()[header::SET_COOKIE]
            .to_str()
            .is_ok_and(|c| c.starts_with("warren_ui_basic=1")));

        let js = serve("/ui/app.js", &none).expect("app.js");
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(serve("/ui/missing.js", &none).is_none());
    }
}
