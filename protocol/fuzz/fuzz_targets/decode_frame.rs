//! Arbitrary bytes into `decode_frame`, again and again until it errs or needs more bytes. Every
//! frame it returns must encode to bytes that decode to the same frame and encode identically.
//!
//! Input: `[frame_max selector, split selector, stream...]`. The stream arrives in two pieces (split
//! where the second byte says) so that partial frames and the "read more" path are exercised too.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_protocol::{decode_frame, encode_frame, Frame};

fn frame_max(selector: u8) -> u32 {
    match selector % 4 {
        0 => 0,                                // no limit
        1 => 4096,                             // frame-min-size
        2 => 131_072,                          // RabbitMQ's default
        _ => 8 + u32::from(selector / 4) * 64, // small: FrameTooLarge paths
    }
}

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out
}

/// Re-encodes `frame` and decodes the result: the same frame, and the same bytes once more.
fn check(frame: &Frame, consumed: usize) {
    let first = encode(frame);
    assert!(
        first.len() <= consumed,
        "re-encoding ({} bytes) is longer than the input frame ({consumed} bytes)",
        first.len()
    );
    let mut buf = first.clone();
    let again = match decode_frame(&mut buf, 0) {
        Ok(Some(f)) => f,
        other => panic!("re-encoded {frame:?} decodes as {other:?}"),
    };
    assert!(buf.is_empty(), "re-encoded frame left {} bytes", buf.len());
    // `==` is false for a NaN in a header table; Debug prints every NaN alike and the byte
    // comparison below catches any bit that differs.
    if again != *frame {
        assert_eq!(format!("{again:?}"), format!("{frame:?}"));
    }
    assert_eq!(encode(&again), first, "re-encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    let [max, split, stream @ ..] = data else {
        return;
    };
    let frame_max = frame_max(*max);
    let split = stream.len() * usize::from(*split) / 255;
    let mut buf = BytesMut::new();
    for piece in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode_frame(&mut buf, frame_max) {
                Ok(Some(frame)) => {
                    let consumed = before - buf.len();
                    assert!(consumed >= 8, "a frame of {consumed} bytes");
                    if frame_max != 0 {
                        // RabbitMQ's allowance: the payload may be frame_max bytes.
                        assert!(
                            consumed <= frame_max as usize + 8,
                            "frame payload larger than frame_max"
                        );
                    }
                    check(&frame, consumed);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
