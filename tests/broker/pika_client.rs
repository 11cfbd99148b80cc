//! A second client library: pika (Python) runs a scenario against an in-process broker, proving
//! the handshake, the capabilities table, confirms, consume/ack and a channel-scoped 404.
//!
//! Needs only `python3`: when it cannot `import pika`, the test installs the pinned pika from
//! tests/python/requirements.txt under the target directory once (a venv, or `pip install
//! --target` where Debian's python3-venv is missing) and reuses it on later runs.

use crate::common::TestBroker;
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/requirements.txt");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_scenario_passes() {
    let python = tokio::task::spawn_blocking(python_with_pika)
        .await
        .expect("provisioning pika");
    let broker = TestBroker::start().await;
    let port = broker.addr().port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pika_scenario.py");
    let mut command = tokio::process::Command::new(&python.program);
    if let Some(path) = &python.pythonpath {
        command.env("PYTHONPATH", path);
    }
    let output = command
        .args([script, &port])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pika scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PIKA OK"), "{stdout}");
    broker.finish().await;
}

/// A Python interpreter that can `import pika`, and the PYTHONPATH it needs for that.
pub(crate) struct Python {
    pub(crate) program: PathBuf,
    pub(crate) pythonpath: Option<PathBuf>,
}

impl Python {
    fn imports_pika(&self) -> bool {
        let mut c = Command::new(&self.program);
        if let Some(path) = &self.pythonpath {
            c.env("PYTHONPATH", path);
        }
        c.args(["-c", "import pika, requests"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

/// The system `python3` if it has pika (and `requests`, for the management API's scenario), else
/// the pinned packages installed under the target dir.
pub(crate) fn python_with_pika() -> Python {
    let system = Python {
        program: "python3".into(),
        pythonpath: None,
    };
    if system.imports_pika() {
        return system;
    }
    let requirements =
        std::fs::read_to_string(REQUIREMENTS).expect("tests/python/requirements.txt");
    // Keyed by the pins, so changing requirements.txt provisions afresh.
    let pins: String = requirements
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-{pins}"));
    installed(&root).unwrap_or_else(|| provision(&root))
}

/// The install under `root`, if one is there and works.
fn installed(root: &Path) -> Option<Python> {
    let venv = Python {
        program: root.join("venv/bin/python"),
        pythonpath: None,
    };
    let pydeps = Python {
        program: "python3".into(),
        pythonpath: Some(root.join("pydeps")),
    };
    [venv, pydeps].into_iter().find(|p| {
        (p.program.is_absolute() && p.program.exists()
            || p.pythonpath.as_ref().is_some_and(|d| d.exists()))
            && p.imports_pika()
    })
}

/// Installs pika into a fresh directory beside `root` and renames it into place, so a run that
/// is interrupted, or another test run at the same time, never sees half an install.
fn provision(root: &Path) -> Python {
    let mut staging = root.as_os_str().to_owned();
    staging.push(format!(".tmp-{}", std::process::id()));
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("create the python staging dir");
    let venv_ok = run(Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(staging.join("venv")))
    .and_then(|()| {
        run(Command::new(staging.join("venv/bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(REQUIREMENTS))
    });
    if let Err(venv_error) = venv_ok {
        // Debian's python3 has no venv (ensurepip) without the python3-venv package; pip
        // installing into a plain directory works without it.
        let _ = std::fs::remove_dir_all(staging.join("venv"));
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(staging.join("pydeps"))
            .arg("-r")
            .arg(REQUIREMENTS))
        .unwrap_or_else(|pip_error| {
            let _ = std::fs::remove_dir_all(&staging);
            panic!(
                "cannot install pika for the pika test: `python3 -m venv` failed ({venv_error}) \
                     and so did `python3 -m pip install --target` ({pip_error}). On Debian/Ubuntu \
                     install python3-venv (or python3-pip), or install pika yourself: \
                     python3 -m pip install -r tests/python/requirements.txt"
            )
        });
    }
    if std::fs::rename(&staging, root).is_err() {
        // Another run finished first; use its install.
        let _ = std::fs::remove_dir_all(&staging);
    }
    installed(root).unwrap_or_else(|| {
        panic!(
            "pika installed under {} but `import pika` still fails",
            root.display()
        )
    })
}

/// Runs `command`; its stderr as the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
