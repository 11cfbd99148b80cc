//! A message body as a queue keeps it: small bodies inline in the message itself, larger ones in
//! an allocation of their own (or, past [`KEEP_SLICE_FROM`], the frame's slice as it came).
//!
//! Why copy: a body frame arrives as a slice of the connection's read buffer, and a slice keeps
//! that whole buffer (64 KiB) alive. A deep queue of small messages from a client that writes one
//! message per read would hold one read buffer per few messages; copying a 16-byte body costs
//! less than the reference count it replaces.

use bytes::{Bytes, BytesMut};

/// Bodies up to this many bytes live inside the message (no allocation of their own). 23 keeps
/// [`Body`] as small as a `Bytes` (32 bytes): the length byte and the bytes fill the room before
/// the `Bytes` variant's vtable pointer, whose null value tells the variants apart.
pub const INLINE_MAX: usize = 23;

/// From this size on a single-frame body keeps pointing into the read buffer it came in: it fills
/// a good part of that buffer anyway, and copying it would cost more than it frees.
pub const KEEP_SLICE_FROM: usize = 8 * 1024;

/// A message body; reads as a byte slice.
#[derive(Clone)]
pub enum Body {
    /// At most [`INLINE_MAX`] bytes, stored in place.
    Inline {
        /// How many of `bytes` are the body.
        len: u8,
        /// The body, then zeroes.
        bytes: [u8; INLINE_MAX],
    },
    /// A body in its own allocation (or a large frame's slice), shared by clones.
    Shared(Bytes),
}

impl Body {
    /// The empty body.
    pub const EMPTY: Body = Body::Inline {
        len: 0,
        bytes: [0; INLINE_MAX],
    };

    /// A body that owns its bytes: inline when small, else one exact-size copy.
    pub fn copied(data: &[u8]) -> Body {
        match u8::try_from(data.len()) {
            Ok(len) if data.len() <= INLINE_MAX => {
                let mut bytes = [0; INLINE_MAX];
                bytes[..data.len()].copy_from_slice(data);
                Body::Inline { len, bytes }
            }
            _ => Body::Shared(Bytes::copy_from_slice(data)),
        }
    }

    /// The body assembled from its frames' payloads (slices of the read buffer), holding no
    /// reference to that buffer unless it is one frame of [`KEEP_SLICE_FROM`] bytes or more.
    pub fn from_frames(mut parts: Vec<Bytes>) -> Body {
        match parts.len() {
            0 => Body::EMPTY,
            1 => parts.pop().map(Body::from).unwrap_or(Body::EMPTY),
            _ => {
                let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                parts.iter().for_each(|p| all.extend_from_slice(p));
                Body::from_owned(all.freeze())
            }
        }
    }

    /// A body from bytes nobody else shares (inlined if small, else kept as is).
    fn from_owned(bytes: Bytes) -> Body {
        if bytes.len() <= INLINE_MAX {
            Body::copied(&bytes)
        } else {
            Body::Shared(bytes)
        }
    }

    /// The body as `Bytes` (a copy for an inline body, a reference otherwise).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Body::Inline { .. } => Bytes::copy_from_slice(self),
            Body::Shared(b) => b.clone(),
        }
    }
}

/// Bytes of unknown origin (a frame's slice, a journal segment's slice): copied unless large.
impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        if bytes.len() >= KEEP_SLICE_FROM {
            Body::Shared(bytes)
        } else {
            Body::copied(&bytes)
        }
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Body {
        Body::copied(bytes)
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Body::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Body::Shared(b) => b,
        }
    }
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Bytes::copy_from_slice(self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB "read buffer" holding `frames` body frames back to back, as a connection's
    /// reader would slice them out.
    fn read_buffer_slices(sizes: &[usize]) -> (Bytes, Vec<Bytes>) {
        let buffer = Bytes::from(vec![7u8; 64 * 1024]);
        let mut at = 0;
        let slices = sizes
            .iter()
            .map(|n| {
                let s = buffer.slice(at..at + n);
                at += n;
                s
            })
            .collect();
        (buffer, slices)
    }

    fn points_into(body: &Body, buffer: &Bytes) -> bool {
        let range = buffer.as_ptr_range();
        let p = body.as_ptr();
        !body.is_empty() && range.contains(&p)
    }

    #[test]
    fn body_is_no_larger_than_bytes() {
        assert_eq!(std::mem::size_of::<Body>(), std::mem::size_of::<Bytes>());
    }

    #[test]
    fn small_bodies_do_not_pin_the_read_buffer() {
        for size in [
            0,
            1,
            16,
            INLINE_MAX,
            INLINE_MAX + 1,
            1024,
            KEEP_SLICE_FROM - 1,
        ] {
            let (buffer, mut slices) = read_buffer_slices(&[100, size]);
            let body = Body::from_frames(vec![slices.pop().expect("a slice")]);
            assert_eq!(&body[..], &buffer[100..100 + size], "{size} bytes");
            assert!(
                !points_into(&body, &buffer),
                "{size} bytes point into the buffer"
            );
            assert_eq!(
                matches!(body, Body::Inline { .. }),
                size <= INLINE_MAX,
                "{size} bytes"
            );
        }
    }

    #[test]
    fn a_large_single_frame_body_stays_a_slice() {
        let (buffer, mut slices) = read_buffer_slices(&[KEEP_SLICE_FROM]);
        let body = Body::from_frames(vec![slices.pop().expect("a slice")]);
        assert!(points_into(&body, &buffer));
    }

    #[test]
    fn several_frames_are_joined_into_a_fresh_allocation() {
        let (buffer, slices) = read_buffer_slices(&[5, 10, 20000]);
        let body = Body::from_frames(slices);
        assert_eq!(body.len(), 20015);
        assert!(!points_into(&body, &buffer));
        let (buffer, slices) = read_buffer_slices(&[5, 10]);
        let body = Body::from_frames(slices);
        assert_eq!(&body[..], &buffer[..15]);
        assert!(matches!(body, Body::Inline { len: 15, .. }));
    }
}
