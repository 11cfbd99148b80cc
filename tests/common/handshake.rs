//! A client handshake written by hand (guest/guest, vhost `/`, heartbeats off, channel 1
//! opened), for tests that open many bare connections without a client library: the frames to
//! send, and the next method out of what was read. Used by the blocking (heap-counting) and the
//! async connection tests alike, so it does no I/O itself.

use bytes::BytesMut;
use warren_protocol::{
    channel, connection, decode_frame, encode_method, FieldTable, Frame, LongStr, Method,
};

/// connection.start-ok with PLAIN guest/guest.
pub fn start_ok() -> BytesMut {
    let mut out = BytesMut::new();
    let start_ok = connection::StartOk {
        client_properties: FieldTable::new(),
        mechanism: "PLAIN".into(),
        response: LongStr::from_static(b"\0guest\0guest"),
        locale: "en_US".into(),
    };
    encode_method(0, &start_ok.into(), &mut out);
    out
}

/// tune-ok (the broker's limits, heartbeats off), connection.open of `/` and channel.open of
/// channel 1, pipelined.
pub fn tune_ok_and_open(tune: &connection::Tune) -> BytesMut {
    let mut out = BytesMut::new();
    let tune_ok = connection::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    };
    encode_method(0, &tune_ok.into(), &mut out);
    let open = connection::Open {
        virtual_host: "/".into(),
        ..Default::default()
    };
    encode_method(0, &open.into(), &mut out);
    encode_method(1, &channel::Open::default().into(), &mut out);
    out
}

/// The next method frame in `buf` (other frames skipped), or `None` until more is read.
pub fn take_method(buf: &mut BytesMut) -> Option<Method> {
    loop {
        match decode_frame(buf, 0) {
            Ok(Some(Frame::Method { method, .. })) => return Some(method),
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) => panic!("undecodable frame: {e}"),
        }
    }
}
