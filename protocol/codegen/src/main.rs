//! Generates `protocol/src/generated/mod.rs` from `protocol/spec/amqp0-9-1.extended.xml`.
//!
//! `cargo run -p warren-protocol-codegen` rewrites the file; with `--check` it only fails when the
//! checked-in file differs from what the spec gives (CI runs that).

mod emit;
mod extensions;
mod model;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let protocol = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let xml = match std::fs::read_to_string(protocol.join("spec/amqp0-9-1.extended.xml")) {
        Ok(xml) => xml,
        Err(e) => return fail(&format!("cannot read the spec: {e}")),
    };
    let mut spec = match model::parse(&xml) {
        Ok(spec) => spec,
        Err(e) => return fail(&format!("cannot parse the spec: {e}")),
    };
    extensions::apply(&mut spec);
    let source = match rustfmt(&emit::emit(&spec)) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let target = protocol.join("src/generated/mod.rs");
    if check {
        let current = std::fs::read_to_string(&target).unwrap_or_default();
        if current != source {
            return fail("protocol/src/generated/mod.rs is stale: run `cargo run -p warren-protocol-codegen`");
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(target.parent().expect("has a parent")) {
        return fail(&e.to_string());
    }
    match std::fs::write(&target, source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write {}: {e}", target.display())),
    }
}

fn rustfmt(source: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run rustfmt: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(source.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "rustfmt failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("codegen: {message}");
    ExitCode::FAILURE
}
