//! A client byte stream against the broker's real connection code: `warren::connection::serve`
//! on an in-memory duplex stream, with a fresh broker (temporary data directory) per input, on
//! a current-thread runtime with paused time (timers fire at once when nothing else can run).
//!
//! Input: `[mode, stream...]`. Mode bit 0 set: a valid handshake (protocol header, start-ok as
//! guest, tune-ok, open `/`) is sent before the stream, so every input reaches the steady
//! state (channels, content, close handshakes); clear: the stream is all the client sends,
//! handshake included. The client reads and drops everything the broker writes, then closes its
//! side. The broker must never panic, and must end the connection once the client has gone.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use warren_protocol::{connection, encode_method, FieldTable, LongStr, Method, PROTOCOL_HEADER};

fn handshake() -> BytesMut {
    let mut out = BytesMut::from(&PROTOCOL_HEADER[..]);
    let methods: [Method; 3] = [
        connection::StartOk {
            client_properties: FieldTable::new(),
            mechanism: "PLAIN".into(),
            response: LongStr::from_static(b"\0guest\0guest"),
            locale: "en_US".into(),
        }
        .into(),
        connection::TuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 0,
        }
        .into(),
        connection::Open {
            virtual_host: "/".into(),
            ..Default::default()
        }
        .into(),
    ];
    for m in &methods {
        encode_method(0, m, &mut out);
    }
    out
}

fn run(data: &[u8]) {
    let [mode, stream @ ..] = data else {
        return;
    };
    let mut input = if mode & 1 == 1 {
        handshake()
    } else {
        BytesMut::new()
    };
    input.extend_from_slice(stream);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = warren::Config {
        data_dir: dir.path().to_path_buf(),
        disk_free_limit: 0,
        ..Default::default()
    };
    let broker = warren::server::open_broker(config).expect("broker opens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = "127.0.0.1:40000".parse().expect("address");
        let served = tokio::spawn(warren::connection::serve(
            broker.clone(),
            server,
            peer,
            CancellationToken::new(),
        ));
        let (mut from_broker, mut to_broker) = tokio::io::split(client);
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(from_broker.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        // The broker may close first (a protocol error): the rest of the input is then moot.
        let _ = to_broker.write_all(&input).await;
        let _ = to_broker.shutdown().await;
        drop(to_broker);
        // Virtual time: generous, and it costs nothing while the broker is idle.
        let ended = tokio::time::timeout(Duration::from_secs(600), served).await;
        if let Ok(Err(e)) = ended {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        drain.abort();
    });
    drop(runtime);
    broker.close();
}

fuzz_target!(|data: &[u8]| run(data));
