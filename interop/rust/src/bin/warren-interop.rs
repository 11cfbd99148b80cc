//! Runs the interop scenarios of `lapin` and `amqprs` against `AMQP_URL` and prints the
//! convention's lines (interop/README.md): `PASS name` / `FAIL name: why` / `SKIP name: why`
//! per scenario, then `<client>: N passed, M failed` per library. Exits 1 if anything failed.
//!
//! `warren-interop [lapin] [amqprs]` (both by default). `BROKER_RESTART` names the restart
//! script; `INTEROP_RUN_ID` makes names unique; `INTEROP_SCENARIOS=a,b` runs only those.

use std::io::Write;
use std::sync::Arc;
use warren_interop::{run_scenario, Ctx, Outcome, Restart, Scenario};

fn restart_from_env() -> Option<Restart> {
    let script = std::env::var("BROKER_RESTART")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(Arc::new(move || {
        let script = script.clone();
        Box::pin(async move {
            let status = tokio::process::Command::new(&script).status().await?;
            anyhow::ensure!(status.success(), "{script} exited with {status}");
            Ok(())
        })
    }))
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("AMQP_URL") else {
        eprintln!("AMQP_URL is not set");
        std::process::exit(2);
    };
    let run_id = std::env::var("INTEROP_RUN_ID").unwrap_or_else(|_| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{}-{t}", std::process::id())
    });
    let only: Vec<String> = std::env::var("INTEROP_SCENARIOS")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut clients: Vec<String> = std::env::args().skip(1).collect();
    if clients.is_empty() {
        clients = vec!["lapin".into(), "amqprs".into()];
    }
    let mut any_failed = false;
    for client in clients {
        let (name, scenarios): (&'static str, &[Scenario]) = match client.as_str() {
            "lapin" => ("lapin", warren_interop::lapin_scenarios::SCENARIOS),
            "amqprs" => ("amqprs", warren_interop::amqprs_scenarios::SCENARIOS),
            other => {
                eprintln!("unknown client {other:?} (lapin, amqprs)");
                std::process::exit(2);
            }
        };
        let (mut passed, mut failed) = (0, 0);
        for scenario in scenarios {
            if !only.is_empty() && !only.iter().any(|o| o == scenario.name) {
                continue;
            }
            let ctx = Arc::new(Ctx::new(
                url.clone(),
                run_id.clone(),
                restart_from_env(),
                name,
            ));
            let outcome = run_scenario(ctx, scenario).await;
            match outcome {
                Outcome::Pass => passed += 1,
                Outcome::Fail(_) => failed += 1,
                Outcome::Skip(_) => {}
            }
            println!("{}", outcome.line(scenario.name));
            let _ = std::io::stdout().flush();
        }
        println!("{name}: {passed} passed, {failed} failed");
        any_failed |= failed > 0;
    }
    std::process::exit(i32::from(any_failed));
}
