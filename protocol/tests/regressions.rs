//! Inputs the fuzzer (`protocol/fuzz`, target `decode_frame`) found, kept as tests so the bugs stay
//! fixed. Each test names the artifact it came from; the bytes are the artifact's, unchanged.

mod common;

use bytes::BytesMut;
use common::assert_reencodes_stably;
use warren_protocol::decode_frame;
use warren_protocol::frame::MAX_RESERVE;

/// Runs the fuzz target's logic on an artifact: `[frame_max selector, split selector, stream...]`.
/// Returns the buffer's largest capacity along the way.
fn replay(artifact: &[u8]) -> usize {
    let [max, split, stream @ ..] = artifact else {
        panic!("artifact too short");
    };
    let frame_max = match max % 4 {
        0 => 0,
        1 => 4096,
        2 => 131_072,
        _ => 8 + u32::from(max / 4) * 64,
    };
    let split = stream.len() * usize::from(*split) / 255;
    let mut buf = BytesMut::new();
    let mut largest = 0;
    for piece in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let result = decode_frame(&mut buf, frame_max);
            largest = largest.max(buf.capacity());
            match result {
                Ok(Some(frame)) => {
                    assert!(before - buf.len() >= 8);
                    assert_reencodes_stably(&frame).expect("stable re-encoding");
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => return largest,
            }
        }
    }
    largest
}

/// fuzz artifact `oom-4af2554be513c65a3d3fb4a52ef93299505100dd`: with frame_max 0 (no limit), a
/// 7-byte frame header declaring a payload of 0x90909090 bytes made `decode_frame` reserve all
/// 2.4 GB at once, before a single payload byte had arrived (libFuzzer: out-of-memory).
/// Fixed by reserving at most `MAX_RESERVE` bytes per call.
#[test]
fn oom_huge_declared_frame_size_with_no_frame_max() {
    let artifact = hex::decode(
        concat!(
            "0080010190909090909090909090909090909090909090909090909090909090",
            "9090909090909090909090909090909090909090909090909090909090909090",
            "00000000 1a003c0028000000117761727265 6e2e66782e70696b612e713200ce"
        )
        .replace(' ', ""),
    )
    .expect("hex");
    let largest = replay(&artifact);
    // Growth policy (doubling) aside, the buffer stays within a few times MAX_RESERVE.
    assert!(
        largest <= 4 * MAX_RESERVE,
        "buffer grew to {largest} bytes for a {}-byte input",
        artifact.len()
    );
}

/// The same bug reduced to its core: a header alone that declares a payload of almost 4 GiB, with
/// no frame_max and with the largest one.
#[test]
fn a_frame_header_alone_never_reserves_gigabytes() {
    for frame_max in [0, u32::MAX] {
        for kind in [1u8, 2, 3] {
            let mut buf = BytesMut::from(&[kind, 0, 1, 0xff, 0xff, 0xff, 0xf0][..]);
            assert_eq!(decode_frame(&mut buf, frame_max), Ok(None));
            assert!(
                buf.capacity() <= 2 * MAX_RESERVE,
                "type {kind}, frame_max {frame_max}: reserved {} bytes",
                buf.capacity()
            );
            // Called again and again while bytes trickle in, it still grows only with the data.
            for _ in 0..100 {
                buf.extend_from_slice(&[0u8; 1000]);
                assert_eq!(decode_frame(&mut buf, frame_max), Ok(None));
            }
            assert!(
                buf.capacity() <= 2 * (buf.len() + MAX_RESERVE),
                "{} bytes of capacity for {} of data",
                buf.capacity(),
                buf.len()
            );
        }
    }
}
