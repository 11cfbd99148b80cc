//! The web UI in a real browser: Debian's headless chromium, driven over WebDriver (chromedriver)
//! from this test. It logs in (the browser's own Basic credentials, then the login form), sees a
//! queue declared over AMQP with its message count, purges it, publishes from the UI and receives
//! the message over AMQP, gets a message in the UI, shows a declare's error, closes a connection,
//! deletes the queue, renders the overview's charts at a phone's width, and fails on any console
//! error the browser logged.
//!
//! chromium and chromedriver come from `.ci/install-chromium` (run by `.ci/run`, and by this test
//! when they are missing). Screenshots land in `target/ui-screenshots/`; with
//! `WARREN_UI_SCREENSHOTS=docs` also in `docs/` (the README's pictures), after a longer run so the
//! charts have a few samples.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::BasicProperties;
use serde_json::{json, Value};

/// How long the UI gets to show something (its pages refresh every 5 s).
// Generous: headless chromium on a loaded 2-core machine can take seconds per page.
const UI_WAIT: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// chromium and chromedriver, installed by the repository's script when missing.
fn provision_chromium() {
    if installed("chromium") && installed("chromedriver") {
        return;
    }
    let script = repo().join(".ci/install-chromium");
    let status = Command::new(&script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success() && installed("chromium") && installed("chromedriver"),
        "chromium and chromedriver are needed for the web UI test: {} failed ({status})",
        script.display()
    );
}

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        provision_chromium();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Owned by the guard from here on: a failed start still kills it.
        let driver = Driver {
            child,
            url: format!("http://{addr}"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not listen on {addr}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's log endpoint (not in the W3C protocol, so not in fantoccini): the browser's
/// console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// The browser, plus the console errors seen so far.
struct Browser {
    client: Client,
    base: String,
    errors: Vec<String>,
}

impl Browser {
    async fn open(driver: &Driver, base: String) -> Browser {
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.as_object().cloned().unwrap_or_default())
            .connect(&driver.url)
            .await
            .expect("a chromium session");
        Browser {
            client,
            base,
            errors: Vec::new(),
        }
    }

    async fn goto(&self, hash: &str) {
        let url = format!("{}/{hash}", self.base);
        self.client.goto(&url).await.expect("navigates");
    }

    async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(UI_WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                // What the page showed instead (an error banner, the login form…).
                let url = self.client.current_url().await.map(|u| u.to_string());
                let text = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let text: String = text.chars().take(800).collect();
                panic!("no {css} on the page: {e}\nat {url:?}, showing:\n{text}")
            }
        }
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + UI_WAIT;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if ok(&text) {
                        return text;
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let page = self.client.source().await.unwrap_or_default();
        let url = self.client.current_url().await.map(|u| u.to_string());
        let log = self.client.issue_cmd(BrowserLog).await.unwrap_or_default();
        panic!("{css} never showed {what}; last text: {last:?}\nat {url:?}\nconsole: {log}\npage:\n{page}");
    }

    async fn fill(&self, css: &str, text: &str) {
        let input = self.wait_for(css).await;
        input.clear().await.expect("clears");
        input.send_keys(text).await.expect("types");
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("clicks");
    }

    /// Follows a link; tables are redrawn every 5 s, so a found link may go stale: find it again.
    async fn click_link(&self, text: &str) {
        for _ in 0..10 {
            if let Ok(link) = self.client.find(Locator::LinkText(text)).await {
                if link.click().await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no link {text:?} to follow");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = repo().join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(name), &png).expect("writes screenshot");
        if std::env::var("WARREN_UI_SCREENSHOTS").as_deref() == Ok("docs") {
            std::fs::write(repo().join("docs").join(name), &png).expect("writes docs screenshot");
        }
    }

    /// Collects the console's errors (SEVERE entries) since the last call; `expected` lists the
    /// substrings of the ones this test caused on purpose (a failed request's status line).
    /// Returns how many expected ones it saw.
    async fn collect_console_errors(&mut self, expected: &[&str]) -> usize {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver's browser log");
        let mut seen = 0;
        for entry in log.as_array().cloned().unwrap_or_default() {
            let level = entry["level"].as_str().unwrap_or_default();
            let message = entry["message"].as_str().unwrap_or_default().to_owned();
            if level != "SEVERE" {
                continue;
            }
            if expected.iter().any(|e| message.contains(e)) {
                seen += 1;
            } else {
                self.errors.push(message);
            }
        }
        seen
    }
}

async fn passive_count(ch: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .map(|q| q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium() {
    let broker = TestBroker::start_with_management().await;
    let http = broker.handle.management_addr.expect("management listener");
    let driver = Driver::start().await;
    let mut browser = Browser::open(&driver, format!("http://{http}")).await;
    let docs = std::env::var("WARREN_UI_SCREENSHOTS").as_deref() == Ok("docs");

    // What an AMQP client did: a queue with three messages, and a consumer elsewhere.
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "ui-orders",
        QueueDeclareOptions::default(),
        Default::default(),
    )
    .await
    .expect("declare");
    for i in 0..3 {
        ch.basic_publish(
            "",
            "ui-orders",
            BasicPublishOptions::default(),
            format!("order {i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }

    // The browser's own Basic credentials land logged in.
    let with_credentials = format!("http://guest:guest@{http}/#/");
    browser
        .client
        .goto(&with_credentials)
        .await
        .expect("navigates");
    browser
        .wait_text("#who-name", "the user", |t| t == "User: guest")
        .await;
    browser
        .wait_text("#overview-totals", "the queue totals", |t| {
            t.contains("Ready")
        })
        .await;

    // Log out, then in again with the form, by keyboard (Enter submits).
    browser.click("#logout").await;
    browser.wait_for("#login-form").await;
    browser.fill("#login-username", "guest").await;
    browser.fill("#login-password", "guest\u{E007}").await;
    browser
        .wait_text("#who-name", "the user", |t| t == "User: guest")
        .await;

    // The queue list shows the queue with its three messages; the filter finds it.
    browser.goto("#/queues").await;
    browser.fill("#queues-filter", "ui-ord").await;
    let row = browser
        .wait_text("#queues-table tbody", "ui-orders with 3 messages", |t| {
            t.contains("ui-orders") && t.contains(" 3")
        })
        .await;
    assert!(!row.contains("aliveness"), "the filter left others: {row}");
    browser
        .wait_text("#queues-count", "one match", |t| t.contains("1 shown of"))
        .await;

    // A declare that conflicts (durable here, transient over AMQP) shows the API's reason.
    browser.fill("#add-queue-name", "ui-orders").await;
    browser.click("#add-queue-submit").await;
    browser
        .wait_text("#flash", "the inequivalent-arg error", |t| {
            t.contains("400") && t.contains("inequivalent arg 'durable'")
        })
        .await;
    // The browser logs the failed request: proof that console errors reach this test at all.
    let expected = "/api/queues/%2F/ui-orders - Failed to load resource: the server responded with a status of 400";
    assert_eq!(
        browser.collect_console_errors(&[expected]).await,
        1,
        "the browser's console log did not show the 400; other errors: {:?}",
        browser.errors
    );

    // The queue's page: its count, then purge it from the UI.
    if docs {
        // The UI keeps a message across a page change only within 1.5 s: not in the picture.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    browser.click_link("ui-orders").await;
    browser
        .wait_text("#queue-ready", "3 ready", |t| t == "3")
        .await;
    browser.wait_for("#queue-chart-queued svg").await;
    if docs {
        // A few samples for the chart before the picture.
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    browser.screenshot("ui-queue.png").await;
    browser.click("#queue-purge").await;
    browser
        .wait_text("#flash", "purged", |t| t == "Queue purged.")
        .await;
    assert_eq!(passive_count(&ch, "ui-orders").await.expect("queue"), 0);
    browser
        .wait_text("#queue-ready", "0 ready", |t| t == "0")
        .await;

    // Published from the UI, received over AMQP.
    browser
        .fill("#queue-publish-payload", "from the browser")
        .await;
    browser.click("#queue-publish-submit").await;
    browser
        .wait_text("#flash", "published", |t| t == "Message published.")
        .await;
    let got = within(
        "the UI's message",
        ch.basic_get("ui-orders", BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .expect("a message");
    assert_eq!(got.delivery.data, b"from the browser");

    // Published over AMQP, taken in the UI (acked: gone from the queue).
    ch.basic_publish(
        "",
        "ui-orders",
        BasicPublishOptions::default(),
        b"from amqp",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    browser
        .client
        .find(Locator::Css("#get-ackmode"))
        .await
        .expect("ack mode")
        .select_by_value("ack_requeue_false")
        .await
        .expect("selects");
    browser.click("#get-submit").await;
    browser
        .wait_text("#get-result", "the message", |t| t.contains("from amqp"))
        .await;
    assert_eq!(passive_count(&ch, "ui-orders").await.expect("queue"), 0);

    // Deleted from the UI (asked twice, inline).
    browser.click("#queue-delete").await;
    browser.click("#queue-delete-confirm").await;
    browser
        .wait_text("#flash", "deleted", |t| t.contains("deleted"))
        .await;
    let (_gone_conn, gone_ch) = broker.channel().await;
    let missing = passive_count(&gone_ch, "ui-orders").await;
    assert!(
        matches!(&missing, Err(e) if amqp_error(e).is_some_and(|(code, _)| code == 404)),
        "{missing:?}"
    );

    // A connection closed from the UI gets 320 with the reason typed in.
    let victim = lapin::Connection::connect(
        &broker.url(),
        lapin_properties().with_connection_name("close-me".into()),
    )
    .await
    .expect("connects");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let closed_tx = std::sync::Mutex::new(Some(closed_tx));
    victim.on_error(move |e| {
        if let Some(tx) = closed_tx.lock().expect("lock").take() {
            let _ = tx.send(e);
        }
    });
    browser.goto("#/connections").await;
    browser
        .wait_text("#connections-table", "close-me", |t| t.contains("close-me"))
        .await;
    let rows = browser
        .client
        .find_all(Locator::Css("#connections-table tbody tr"))
        .await
        .expect("rows");
    let mut opened = false;
    for row in rows {
        if row.text().await.unwrap_or_default().contains("close-me") {
            row.find(Locator::Css("a"))
                .await
                .expect("connection link")
                .click()
                .await
                .expect("opens");
            opened = true;
            break;
        }
    }
    assert!(opened, "no row for the close-me connection");
    browser
        .fill("#connection-close input[name=reason]", "tidy up")
        .await;
    browser.click("#connection-close-submit").await;
    let error = within("the close from the UI", closed_rx)
        .await
        .expect("error handler");
    assert_eq!(
        amqp_error(&error),
        Some((320, "CONNECTION_FORCED - tidy up".to_owned()))
    );

    // The overview's live charts, then a phone's width: nothing wider than the screen.
    if docs {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    browser.goto("#/").await;
    for chart in ["#chart-queued", "#chart-rates", "#chart-objects"] {
        browser.wait_for(&format!("{chart} svg polyline")).await;
    }
    if docs {
        // Some traffic for the picture: about 16 messages a second for 12 s.
        ch.queue_declare(
            "ui-demo",
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .expect("declare");
        for i in 0..200u32 {
            ch.basic_publish(
                "",
                "ui-demo",
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    browser.screenshot("ui-overview.png").await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("narrow window");
    browser.goto("#/queues").await;
    browser.wait_for("#queues-table").await;
    let overflow: Value = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .expect("measures");
    assert!(
        overflow.as_i64().unwrap_or(i64::MAX) <= 0,
        "the page is wider than a phone's screen by {overflow} px"
    );

    browser.collect_console_errors(&[]).await;
    assert!(
        browser.errors.is_empty(),
        "console errors in the browser:\n{}",
        browser.errors.join("\n")
    );
    browser.client.close().await.expect("closes the browser");
    drop(driver);
    broker.finish().await;
}
