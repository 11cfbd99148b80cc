//! Interop scenarios: the same broker behaviours driven through real Rust client libraries
//! (`lapin` and `amqprs`), against Warren or any other broker (RabbitMQ, for a differential run).
//!
//! Each scenario is an async function of a [`Ctx`] that returns `Ok(())` when the broker behaved as
//! RabbitMQ does, an error saying what differed, or a [`Skip`] error when it cannot run here. The
//! `warren-interop` binary prints one `PASS`/`FAIL`/`SKIP` line per scenario (the convention in
//! `interop/README.md`); the crate's tests run the same scenarios against an in-process Warren.

pub mod amqprs_scenarios;
pub mod lapin_scenarios;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A boxed, sendable future, as scenario functions return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Restarts the broker on the same address and data, returning once it accepts connections.
pub type Restart = Arc<dyn Fn() -> BoxFuture<anyhow::Result<()>> + Send + Sync>;

/// How long one scenario may take before it counts as failed.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a scenario waits for any one thing (a delivery, a confirm, a reply).
pub const WAIT: Duration = Duration::from_secs(10);

/// What a scenario needs: the broker, a way to restart it, and names unique to this run.
pub struct Ctx {
    /// `amqp://user:pass@host:port/vhost`
    pub url: String,
    /// Unique per run, part of every queue and exchange name.
    pub run_id: String,
    /// `None` when the broker cannot be restarted (the restart scenario then skips).
    pub restart: Option<Restart>,
    /// The client library, part of every name (`lapin`, `amqprs`).
    pub client: &'static str,
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn new(
        url: String,
        run_id: String,
        restart: Option<Restart>,
        client: &'static str,
    ) -> Self {
        Ctx {
            url,
            run_id,
            restart,
            client,
            queues: Mutex::default(),
            exchanges: Mutex::default(),
        }
    }

    /// A queue name unique to this run and client, deleted after the scenario whatever happens.
    pub fn queue(&self, what: &str) -> String {
        let name = format!("interop.{}.{what}.{}", self.client, self.run_id);
        self.queues.lock().expect("not poisoned").push(name.clone());
        name
    }

    /// An exchange name unique to this run and client, deleted after the scenario.
    pub fn exchange(&self, what: &str) -> String {
        let name = format!("interop.{}.{what}.x.{}", self.client, self.run_id);
        self.exchanges
            .lock()
            .expect("not poisoned")
            .push(name.clone());
        name
    }

    /// Deletes every queue and exchange the scenario named, ignoring those already gone. Uses
    /// lapin whatever the client under test: cleanup is not part of what is being tested.
    pub async fn cleanup(&self) {
        let queues = std::mem::take(&mut *self.queues.lock().expect("not poisoned"));
        let exchanges = std::mem::take(&mut *self.exchanges.lock().expect("not poisoned"));
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        let Ok(Ok(conn)) =
            tokio::time::timeout(WAIT, lapin_scenarios::connect_url(&self.url)).await
        else {
            return;
        };
        for q in queues {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch.queue_delete(&q, Default::default()).await;
            }
        }
        for x in exchanges {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch.exchange_delete(&x, Default::default()).await;
            }
        }
        let _ = conn.close(200, "cleanup done").await;
    }
}

/// Returned (as an `anyhow` error) by a scenario that cannot run against this broker.
#[derive(Debug)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// One scenario of one client library.
pub struct Scenario {
    /// The shared scenario name from `interop/README.md`.
    pub name: &'static str,
    pub run: fn(Arc<Ctx>) -> BoxFuture<anyhow::Result<()>>,
}

/// Builds a `&[Scenario]` from async functions named like the scenarios.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        &[$($crate::Scenario { name: stringify!($name), run: |ctx| Box::pin($name(ctx)) }),*]
    };
}

/// How a scenario ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    /// The convention's line: `PASS name`, `FAIL name: reason`, `SKIP name: reason`.
    pub fn line(&self, name: &str) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            Outcome::Pass => format!("PASS {name}"),
            Outcome::Fail(why) => format!("FAIL {name}: {}", one_line(why)),
            Outcome::Skip(why) => format!("SKIP {name}: {}", one_line(why)),
        }
    }
}

/// Runs one scenario in its own task, with a timeout, then deletes what it declared.
pub async fn run_scenario(ctx: Arc<Ctx>, scenario: &Scenario) -> Outcome {
    let task = tokio::spawn((scenario.run)(ctx.clone()));
    let outcome = match tokio::time::timeout(SCENARIO_TIMEOUT, task).await {
        Err(_) => Outcome::Fail(format!("timed out after {SCENARIO_TIMEOUT:?}")),
        Ok(Err(join)) => Outcome::Fail(format!("panicked: {join}")),
        Ok(Ok(Ok(()))) => Outcome::Pass,
        Ok(Ok(Err(e))) => match e.downcast_ref::<Skip>() {
            Some(skip) => Outcome::Skip(skip.0.clone()),
            None => Outcome::Fail(format!("{e:#}")),
        },
    };
    ctx.cleanup().await;
    outcome
}

/// Fails with `what` unless `cond` holds.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($what:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            anyhow::bail!("{}: got {:?}, expected {:?}", format!($($what)+), l, r);
        }
    }};
}

/// Waits at most [`WAIT`] for `fut`, failing with "timed out waiting for {what}".
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))
}

/// Retries connecting for up to 60 s (a broker that was just restarted may still be starting).
pub async fn retry_connect<T, F, Fut>(mut connect: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(WAIT, connect()).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) if tokio::time::Instant::now() > deadline => {
                return Err(e.context("reconnecting after the restart"))
            }
            Err(_) if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("reconnecting after the restart timed out")
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A deterministic body of `len` bytes, different for each `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

/// The sizes the large-message scenario sends: several MiB over many body frames, and bodies
/// that exactly fill one frame, and one byte more, at the default frame_max of 128 KiB.
pub const LARGE_SIZES: [usize; 4] = [6 * 1024 * 1024 + 13, 131_072 - 8, 131_072 - 7, 0];

/// The n-th Fibonacci number, for the RPC server.
pub fn fib(n: u64) -> u64 {
    (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0
}
