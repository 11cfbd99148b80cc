//! Reads frames from the socket into one buffer; bodies come out as slices of it.

use crate::stats::ConnectionCounters;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use warren_protocol::{
    decode_frame, decode_protocol_header, DecodeError, Frame, ProtocolHeader, FRAME_MIN_SIZE,
};

/// How much the reader asks the socket for at a time.
const READ_CHUNK: usize = 64 * 1024;

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
    /// Where bytes read are counted (one add per read).
    counters: Option<Arc<ConnectionCounters>>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Until tune-ok, frames may be as large as the spec's minimum frame size.
    pub fn new(socket: R) -> Self {
        FrameReader {
            socket,
            buf: BytesMut::with_capacity(READ_CHUNK),
            frame_max: FRAME_MIN_SIZE,
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
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.socket.read_buf(&mut self.buf).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                if let Some(c) = &self.counters {
                    crate::stats::bump_by(&c.bytes_in, n as u64);
                    crate::stats::bump(&c.reads);
                }
                Ok(())
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
