#!/usr/bin/env bash
# The lapin and amqprs scenarios against $AMQP_URL, printing the lines of interop/README.md.
# Crates come from crates.io at the versions pinned in interop/rust/Cargo.toml and Cargo.lock.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${AMQP_URL:?AMQP_URL must be set}"
if ! cargo build --locked --quiet -p warren-interop --bin warren-interop >&2; then
    echo "FAIL build: cargo build -p warren-interop failed"
    echo "lapin: 0 passed, 1 failed"
    echo "amqprs: 0 passed, 1 failed"
    exit 1
fi
exec target/debug/warren-interop lapin amqprs
