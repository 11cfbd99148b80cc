//! AMQP 0-9-1 (RabbitMQ-extended) codec: bytes in, typed frames out, and back. No I/O.
//!
//! - Generated (`generated/`, from `spec/amqp0-9-1.extended.xml` by `protocol/codegen`): reply
//!   codes, class ids, one struct per method, the [`Method`] enum and each method's field codec.
//! - Hand-written: the frame layer ([`frame`]), primitives and field tables ([`codec`], [`field`]),
//!   basic properties ([`properties`]), and the extensions the XML lacks
//!   (`codegen/src/extensions.rs`: connection.blocked/unblocked, update-secret, 312 NO_ROUTE).
//!
//! Decoding never panics on any input and never copies a body: see [`frame::decode_frame`].

#![deny(missing_docs, unsafe_code)]
#![warn(unreachable_pub, clippy::unwrap_in_result)]

pub mod codec;
pub mod field;
pub mod frame;

pub mod generated;
pub mod properties;

pub use codec::{decode_field_table, encode_field_table, DecodeError};
pub use field::{Decimal, FieldTable, FieldValue, LongStr, ShortStr};
pub use frame::{
    decode_frame, decode_protocol_header, encode_body, encode_content, encode_frame, encode_header,
    encode_heartbeat, encode_method, Frame, ProtocolHeader, FRAME_END, FRAME_MIN_SIZE,
    PROTOCOL_HEADER,
};
pub use generated::{
    all_methods, basic, channel, class_id, confirm, connection, exchange, queue, tx, Method,
    ReplyCode,
};
pub use properties::{BasicProperties, ContentHeader};
