//! Reads frames from the socket into one buffer; bodies come out as slices of it.
//!
//! An idle connection holds no read buffer: when a read finds the socket empty, every byte
//! read so far was handled and recent reads were small, the buffer is released while the task
//! waits, and the read after the wakeup takes a fresh one (10,000 idle connections held 10,000
//! buffers; issue 16). A busy publisher keeps its large buffer between reads.

use crate::stats::ConnectionCounters;
use bytes::BytesMut;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt};
use warren_protocol::{
    decode_frame, decode_protocol_header, DecodeError, Frame, ProtocolHeader, FRAME_MIN_SIZE,
};

/// The least and the most room the reader offers the socket per read. A connection starts
/// small and doubles its room each time a read fills it, up to 64 KiB for a busy publisher;
/// reads that use little of it halve it again.
const READ_MIN: usize = 2 * 1024;
const READ_MAX: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug)]
pub enum ReadError {
    /// Socket error or end of stream.
    Io(std::io::Error),
    /// Bytes that are not a valid frame (carries the reply code).
    Decode(DecodeError),
}

/// A socket's read half with its buffer and the negotiated frame_max.
pub struct FrameReader<R> {
    socket: R,
    buf: BytesMut,
    frame_max: u32,
    /// The room offered per read now (between [`READ_MIN`] and [`READ_MAX`]).
    chunk: usize,
    /// Where bytes read are counted (one add per read).
    counters: Option<Arc<ConnectionCounters>>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Until tune-ok, frames may be as large as the spec's minimum frame size. The buffer is
    /// taken at the first read that finds input.
    pub fn new(socket: R) -> Self {
        FrameReader {
            socket,
            buf: BytesMut::new(),
            frame_max: FRAME_MIN_SIZE,
            chunk: READ_MIN,
            counters: None,
        }
    }

    /// Counts the bytes read from now on in `counters`.
    pub fn count_into(&mut self, counters: Arc<ConnectionCounters>) {
        self.counters = Some(counters);
    }

    /// Applies the negotiated frame_max.
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// Reads more bytes; end of stream is an `UnexpectedEof` error.
    pub async fn fill(&mut self) -> Result<(), std::io::Error> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            // A fresh allocation when frames still point into the old one (a BytesMut grows
            // to at least the capacity it started with: hence the small start), or when the
            // buffer was released while idle.
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        // The read future keeps no state between polls: a fresh one per poll reads the same.
        let read = std::pin::pin!(self.socket.read_buf(&mut self.buf)).poll(cx);
        match read {
            Poll::Pending => {
                if self.buf.is_empty() && self.chunk == READ_MIN {
                    // Nothing buffered and nothing to read: wait without a buffer. A partial
                    // frame keeps it (its bytes are in it), and so does a busy connection (its
                    // reads grew the room): it would take a large one again at once.
                    self.buf = BytesMut::new();
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into())),
            Poll::Ready(Ok(n)) => {
                self.chunk = next_chunk(self.chunk, room, n);
                if let Some(c) = &self.counters {
                    crate::stats::bump_by(&c.bytes_in, n as u64);
                    crate::stats::bump(&c.reads);
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Reads and throws away input (used while closing); errors at end of stream.
    pub async fn discard(&mut self) -> Result<(), std::io::Error> {
        self.buf.clear();
        self.fill().await
    }

    /// The next frame already in the buffer, if a whole one is there.
    pub fn try_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        decode_frame(&mut self.buf, self.frame_max).map_err(ReadError::Decode)
    }

    /// Reads until one whole frame arrived.
    pub async fn next_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(frame);
            }
            self.fill().await.map_err(ReadError::Io)?;
        }
    }

    /// Reads the 8-byte protocol header.
    pub async fn read_protocol_header(&mut self) -> Result<ProtocolHeader, std::io::Error> {
        loop {
            if let Some(header) = decode_protocol_header(&self.buf) {
                let _ = self.buf.split_to(8);
                return Ok(header);
            }
            // A peer that sends something shorter than 8 bytes and waits is cut by the
            // handshake timeout.
            self.fill().await?;
        }
    }
}

/// The room for the next read, after a read of `n` bytes into `room`: doubled when the read
/// filled it, halved when it used less than an eighth.
fn next_chunk(chunk: usize, room: usize, n: usize) -> usize {
    if n >= room {
        (chunk * 2).min(READ_MAX)
    } else if n < chunk / 8 {
        (chunk / 2).max(READ_MIN)
    } else {
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_grows_while_reads_fill_it_and_shrinks_when_they_do_not() {
        let mut chunk = READ_MIN;
        for _ in 0..10 {
            chunk = next_chunk(chunk, chunk, chunk);
        }
        assert_eq!(chunk, READ_MAX);
        chunk = next_chunk(chunk, chunk, chunk / 2);
        assert_eq!(chunk, READ_MAX, "half-full reads keep it");
        for _ in 0..10 {
            chunk = next_chunk(chunk, chunk, 100);
        }
        assert_eq!(chunk, READ_MIN);
    }

    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use warren_protocol::encode_body;

    fn body_frame(channel: u16, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_body(channel, payload, &mut out);
        out
    }

    /// Reads until no more input comes for a while (the read is abandoned, as the connection's
    /// `select!` abandons it when another branch wins).
    async fn read_until_idle<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) {
        let waited = tokio::time::timeout(Duration::from_millis(20), reader.fill()).await;
        assert!(waited.is_err(), "unexpected input or end of stream");
    }

    fn expect_body<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>, payload: &[u8]) {
        match reader.try_frame() {
            Ok(Some(Frame::Body {
                channel: 1,
                payload: got,
            })) => {
                assert_eq!(got.len(), payload.len());
                assert!(got == payload, "the payload arrived changed");
            }
            other => panic!("expected a body frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_new_connection_holds_no_buffer_until_input_arrives() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server);
        assert_eq!(reader.buf.capacity(), 0);
        read_until_idle(&mut reader).await;
        assert_eq!(reader.buf.capacity(), 0, "waiting took a buffer");
        drop(client);
        assert!(reader.fill().await.is_err(), "end of stream");
    }

    #[tokio::test]
    async fn the_buffer_is_released_once_everything_read_was_handled() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server);
        client.write_all(&body_frame(1, b"hello")).await.unwrap();
        reader.fill().await.unwrap();
        assert!(reader.buf.capacity() >= READ_MIN);
        expect_body(&mut reader, b"hello");
        read_until_idle(&mut reader).await;
        assert_eq!(reader.buf.capacity(), 0, "an idle reader kept its buffer");
    }

    #[tokio::test]
    async fn a_partial_frame_keeps_the_buffer_while_the_rest_is_awaited() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server);
        let frame = body_frame(1, &[7u8; 1000]);
        client.write_all(&frame[..300]).await.unwrap();
        reader.fill().await.unwrap();
        assert!(reader.try_frame().unwrap().is_none());
        read_until_idle(&mut reader).await;
        assert_eq!(reader.buf.len(), 300, "the partial frame's bytes were lost");
        client.write_all(&frame[300..]).await.unwrap();
        let got = reader.next_frame().await.unwrap();
        assert!(
            matches!(got, Frame::Body { channel: 1, ref payload } if payload[..] == [7u8; 1000])
        );
    }

    #[tokio::test]
    async fn a_frame_split_over_many_reads_arrives_whole() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server);
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let frame = body_frame(1, &payload);
        let writer = tokio::spawn(async move {
            for piece in frame.chunks(7) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let got = reader.next_frame().await.unwrap();
        assert!(matches!(got, Frame::Body { channel: 1, payload: ref p } if p[..] == payload[..]));
        let _client = writer.await.unwrap();
        read_until_idle(&mut reader).await;
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_large_frame_after_the_buffer_was_released_arrives_whole() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(server);
        reader.set_frame_max(131_072);
        client.write_all(&body_frame(1, b"small")).await.unwrap();
        reader.fill().await.unwrap();
        expect_body(&mut reader, b"small");
        read_until_idle(&mut reader).await;
        assert_eq!(reader.buf.capacity(), 0);
        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&body_frame(1, &large)).await.unwrap();
        let got = reader.next_frame().await.unwrap();
        assert!(matches!(got, Frame::Body { channel: 1, payload: ref p } if p[..] == large[..]));
        // Two frames in one read: both come out, the second from the same buffer.
        let mut two = body_frame(1, b"one");
        two.extend_from_slice(&body_frame(1, b"two"));
        client.write_all(&two).await.unwrap();
        reader.fill().await.unwrap();
        expect_body(&mut reader, b"one");
        expect_body(&mut reader, b"two");
    }
}
