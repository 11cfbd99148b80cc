//! Property tests: arbitrary values of every wire type, every method and every property combination
//! survive encode → decode → encode unchanged; every prefix of a valid stream is "need more"; no
//! byte sequence makes the decoder panic.
//!
//! Methods are filled through the generated `fields_mut` (feature `field-access`), so a method added
//! to the spec is covered here without touching this file.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{
    assert_reencodes_stably, decode_all, encode, frame_eq, method_eq, properties_eq, table_eq,
    value_eq,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use warren_protocol::codec::MAX_NESTING;
use warren_protocol::generated::FieldMut;
use warren_protocol::{
    all_methods, decode_frame, encode_content, BasicProperties, ContentHeader, Decimal,
    DecodeError, FieldTable, FieldValue, Frame, Method, ReplyCode, ShortStr,
};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any UTF-8 string of at most 255 bytes, including the empty string and exactly 255 bytes.
fn arb_shortstr() -> impl Strategy<Value = ShortStr> {
    prop_oneof![
        // Any Unicode (multi-byte characters included), cut to 255 bytes at a char boundary.
        vec(any::<char>(), 0..=200).prop_map(|cs| {
            let s: String = cs.into_iter().collect();
            let mut end = s.len().min(255);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            ShortStr::try_new(s[..end].to_owned()).expect("at most 255 bytes")
        }),
        // ASCII right up to the limit.
        "[ -~]{0,255}".prop_map(|s| ShortStr::try_new(s).expect("at most 255 bytes")),
        "[ -~]{255}".prop_map(|s| ShortStr::try_new(s).expect("exactly 255 bytes")),
    ]
}

/// Table keys: mostly short, sometimes any shortstr.
fn arb_key() -> impl Strategy<Value = ShortStr> {
    prop_oneof![
        3 => "[a-z_-]{0,12}".prop_map(|s| ShortStr::try_new(s).expect("short")),
        1 => arb_shortstr(),
    ]
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Floats from proptest's own distribution and from raw bit patterns (every NaN payload, -0.0,
/// subnormals, infinities).
fn arb_f32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), any::<u32>().prop_map(f32::from_bits)]
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>(), any::<u64>().prop_map(f64::from_bits)]
}

/// Every non-container type letter: t b B s u I i l L f d D S x T V.
fn arb_scalar() -> BoxedStrategy<FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<i64>().prop_map(FieldValue::I64Upper),
        arb_f32().prop_map(FieldValue::F32),
        arb_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| FieldValue::Decimal(Decimal { scale, value })),
        arb_bytes(64).prop_map(FieldValue::LongStr),
        arb_bytes(64).prop_map(FieldValue::ByteArray),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
    .boxed()
}

/// Any field value, arrays (`A`) and tables (`F`) nested up to 4 levels.
fn arb_value() -> impl Strategy<Value = FieldValue> {
    arb_scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            vec((arb_key(), inner), 0..6).prop_map(|e| FieldValue::Table(FieldTable(e))),
        ]
    })
}

/// Any field table (duplicate keys included: they are kept in wire order).
fn arb_table() -> impl Strategy<Value = FieldTable> {
    vec((arb_key(), arb_value()), 0..8).prop_map(FieldTable)
}

/// Properties with presence decided by a random flag word, so every one of the 2^14 flag
/// combinations is equally likely (all absent and all present included).
fn arb_properties() -> impl Strategy<Value = BasicProperties> {
    let strs = || {
        (
            arb_shortstr(),
            arb_shortstr(),
            arb_shortstr(),
            arb_shortstr(),
            arb_shortstr(),
        )
    };
    (
        any::<u16>(),
        (arb_shortstr(), arb_shortstr(), arb_table(), any::<u8>()),
        (any::<u8>(), any::<u64>(), arb_shortstr()),
        strs(),
        strs(),
    )
        .prop_map(
            |(mask, (ct, ce, headers, dm), (prio, ts, corr), (rt, exp, mid, kind, uid), s2)| {
                let (app, cluster, _, _, _) = s2;
                let on = |i: u32| mask & (1 << (15 - i)) != 0;
                BasicProperties {
                    content_type: on(0).then_some(ct),
                    content_encoding: on(1).then_some(ce),
                    headers: on(2).then_some(headers),
                    delivery_mode: on(3).then_some(dm),
                    priority: on(4).then_some(prio),
                    correlation_id: on(5).then_some(corr),
                    reply_to: on(6).then_some(rt),
                    expiration: on(7).then_some(exp),
                    message_id: on(8).then_some(mid),
                    timestamp: on(9).then_some(ts),
                    kind: on(10).then_some(kind),
                    user_id: on(11).then_some(uid),
                    app_id: on(12).then_some(app),
                    cluster_id: on(13).then_some(cluster),
                }
            },
        )
}

fn arb_content_header() -> impl Strategy<Value = ContentHeader> {
    (any::<u16>(), any::<u16>(), any::<u64>(), arb_properties()).prop_map(
        |(class_id, weight, body_size, properties)| ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        },
    )
}

/// A value for one method field, of the field's wire type.
#[derive(Clone, Debug)]
enum Arg {
    Bit(bool),
    Octet(u8),
    Short(u16),
    Long(u32),
    LongLong(u64),
    ShortStr(ShortStr),
    LongStr(Bytes),
    Table(FieldTable),
}

fn arb_arg(field: &FieldMut<'_>) -> BoxedStrategy<Arg> {
    match field {
        FieldMut::Bit(_) => any::<bool>().prop_map(Arg::Bit).boxed(),
        FieldMut::Octet(_) => any::<u8>().prop_map(Arg::Octet).boxed(),
        FieldMut::Short(_) => any::<u16>().prop_map(Arg::Short).boxed(),
        FieldMut::Long(_) => any::<u32>().prop_map(Arg::Long).boxed(),
        FieldMut::LongLong(_) | FieldMut::Timestamp(_) => {
            any::<u64>().prop_map(Arg::LongLong).boxed()
        }
        FieldMut::ShortStr(_) => arb_shortstr().prop_map(Arg::ShortStr).boxed(),
        FieldMut::LongStr(_) => arb_bytes(300).prop_map(Arg::LongStr).boxed(),
        FieldMut::Table(_) => arb_table().prop_map(Arg::Table).boxed(),
    }
}

fn set(field: FieldMut<'_>, arg: Arg) {
    match (field, arg) {
        (FieldMut::Bit(f), Arg::Bit(v)) => *f = v,
        (FieldMut::Octet(f), Arg::Octet(v)) => *f = v,
        (FieldMut::Short(f), Arg::Short(v)) => *f = v,
        (FieldMut::Long(f), Arg::Long(v)) => *f = v,
        (FieldMut::LongLong(f), Arg::LongLong(v)) | (FieldMut::Timestamp(f), Arg::LongLong(v)) => {
            *f = v
        }
        (FieldMut::ShortStr(f), Arg::ShortStr(v)) => *f = v,
        (FieldMut::LongStr(f), Arg::LongStr(v)) => *f = v,
        (FieldMut::Table(f), Arg::Table(v)) => *f = v,
        (field, arg) => panic!("strategy built {arg:?} for {field:?}"),
    }
}

/// The same method as `template` with every field set to an arbitrary value of its type.
fn arb_method_like(template: &Method) -> BoxedStrategy<Method> {
    let mut probe = template.clone();
    let args: Vec<BoxedStrategy<Arg>> =
        probe.fields_mut().iter().map(|(_, f)| arb_arg(f)).collect();
    let template = template.clone();
    args.prop_map(move |args| {
        let mut method = template.clone();
        {
            let fields = method.fields_mut();
            assert_eq!(fields.len(), args.len());
            for ((_, field), arg) in fields.into_iter().zip(args) {
                set(field, arg);
            }
        }
        method
    })
    .boxed()
}

/// Any method of the protocol with arbitrary arguments.
fn arb_method() -> impl Strategy<Value = Method> {
    Union::new(all_methods().iter().map(arb_method_like))
}

/// Any frame.
fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (any::<u16>(), arb_method()).prop_map(|(channel, method)| Frame::Method { channel, method }),
        2 => (any::<u16>(), arb_content_header())
            .prop_map(|(channel, header)| Frame::Header { channel, header }),
        2 => (any::<u16>(), arb_bytes(200))
            .prop_map(|(channel, payload)| Frame::Body { channel, payload }),
        1 => Just(Frame::Heartbeat),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// encode → decode_frame gives an equal frame and consumes exactly the frame's bytes;
/// encode again gives identical bytes.
fn check_round_trip(frame: &Frame) -> Result<Bytes, TestCaseError> {
    let bytes = encode(frame);
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decode_frame(&mut buf, 0)
        .map_err(|e| TestCaseError::fail(format!("{e} decoding {}", hex::encode(&bytes))))?
        .ok_or_else(|| TestCaseError::fail("a whole frame decoded as incomplete"))?;
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert!(
        frame_eq(&decoded, frame),
        "decoded\n{decoded:?}\nencoded\n{frame:?}"
    );
    prop_assert_eq!(hex::encode(encode(&decoded)), hex::encode(&bytes));
    Ok(bytes)
}

/// Wraps a table in a content header (flags: headers only) and returns the table's bytes.
fn table_bytes(table: &FieldTable) -> Bytes {
    let frame = Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 0,
            properties: BasicProperties {
                headers: Some(table.clone()),
                ..Default::default()
            },
        },
    };
    let bytes = encode(&frame);
    // 7 header + class 2 + weight 2 + size 8 + flags 2 ... frame end 1
    assert_eq!(&bytes[19..21], &[0x20, 0x00], "flag word: headers only");
    bytes.slice(21..bytes.len() - 1)
}

fn headers_frame(headers: FieldTable) -> Frame {
    Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 0,
            properties: BasicProperties {
                headers: Some(headers),
                ..Default::default()
            },
        },
    }
}

fn short(s: &'static str) -> ShortStr {
    ShortStr::from_static(s)
}

// ---------------------------------------------------------------------------------------------
// Field values and tables
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn field_table_round_trips(table in arb_table()) {
        check_round_trip(&headers_frame(table))?;
    }

    #[test]
    fn every_field_value_round_trips_in_a_table_and_in_an_array(value in arb_value(), key in arb_key()) {
        let in_table = FieldTable(vec![(key, value.clone())]);
        check_round_trip(&headers_frame(in_table.clone()))?;
        let in_array = FieldTable(vec![(short("a"), FieldValue::Array(vec![value.clone(), value]))]);
        check_round_trip(&headers_frame(in_array))?;
    }

    #[test]
    fn shortstr_round_trips(s in arb_shortstr()) {
        prop_assert!(s.len() <= 255);
        let method: Method = warren_protocol::queue::Declare { queue: s.clone(), ..Default::default() }.into();
        let bytes = check_round_trip(&Frame::Method { channel: 1, method })?;
        // class 2 + method 2 + reserved-1 2, then the length octet and the bytes
        prop_assert_eq!(usize::from(bytes[13]), s.len());
        prop_assert_eq!(&bytes[14..14 + s.len()], s.as_bytes());
    }

    #[test]
    fn shortstr_constructors_keep_255_bytes(cs in vec(any::<char>(), 0..300)) {
        let s: String = cs.into_iter().collect();
        let t = ShortStr::truncated(&s);
        prop_assert!(t.len() <= 255);
        prop_assert!(s.starts_with(t.as_str()));
        prop_assert!(s.len() <= 255 || t.len() > 255 - 4, "cut more than one character");
        prop_assert_eq!(ShortStr::try_new(s.clone()).is_some(), s.len() <= 255);
    }
}

#[test]
fn every_type_letter_has_its_rabbitmq_wire_form() {
    let table = FieldTable(vec![
        (short("t"), FieldValue::Bool(true)),
        (short("b"), FieldValue::I8(-2)),
        (short("B"), FieldValue::U8(200)),
        (short("s"), FieldValue::I16(-2)),
        (short("u"), FieldValue::U16(65535)),
        (short("I"), FieldValue::I32(-2)),
        (short("i"), FieldValue::U32(4_000_000_000)),
        (short("l"), FieldValue::I64(-2)),
        (short("f"), FieldValue::F32(1.5)),
        (short("d"), FieldValue::F64(-0.25)),
        (
            short("D"),
            FieldValue::Decimal(Decimal {
                scale: 2,
                value: 12345,
            }),
        ),
        (short("S"), FieldValue::LongStr(Bytes::from_static(b"hi"))),
        (
            short("x"),
            FieldValue::ByteArray(Bytes::from_static(&[0, 255])),
        ),
        (
            short("A"),
            FieldValue::Array(vec![FieldValue::U8(1), FieldValue::Void]),
        ),
        (short("T"), FieldValue::Timestamp(1)),
        (
            short("F"),
            FieldValue::Table(FieldTable(vec![(short("k"), FieldValue::Void)])),
        ),
        (short("V"), FieldValue::Void),
    ]);
    let entries = concat!(
        "0174",
        "74",
        "01", // t
        "0162",
        "62",
        "fe", // b
        "0142",
        "42",
        "c8", // B
        "0173",
        "73",
        "fffe", // s
        "0175",
        "75",
        "ffff", // u
        "0149",
        "49",
        "fffffffe", // I
        "0169",
        "69",
        "ee6b2800", // i
        "016c",
        "6c",
        "fffffffffffffffe", // l
        "0166",
        "66",
        "3fc00000", // f
        "0164",
        "64",
        "bfd0000000000000", // d
        "0144",
        "44",
        "02",
        "00003039", // D
        "0153",
        "53",
        "00000002",
        "6869", // S
        "0178",
        "78",
        "00000002",
        "00ff", // x
        "0141",
        "41",
        "00000003",
        "4201",
        "56", // A
        "0154",
        "54",
        "0000000000000001", // T
        "0146",
        "46",
        "00000003",
        "016b56", // F
        "0156",
        "56", // V
    );
    let expected = format!("{:08x}{entries}", entries.len() / 2);
    assert_eq!(hex::encode(table_bytes(&table)), expected);
    for (key, value) in table.iter() {
        assert_eq!(
            key.as_bytes(),
            [value.type_letter()],
            "type_letter of {value:?}"
        );
    }
    let frame = headers_frame(table);
    let mut buf = BytesMut::from(&encode(&frame)[..]);
    assert_eq!(decode_frame(&mut buf, 0), Ok(Some(frame)));
}

#[test]
fn nan_and_negative_zero_survive_bit_for_bit() {
    let values = [
        FieldValue::F32(f32::from_bits(0x7fc0_0001)),
        FieldValue::F32(f32::from_bits(0xff80_0001)), // signalling NaN
        FieldValue::F32(-0.0),
        FieldValue::F64(f64::from_bits(0x7ff8_0000_dead_beef)),
        FieldValue::F64(-0.0),
        FieldValue::F64(f64::NEG_INFINITY),
    ];
    let table: FieldTable = values.iter().map(|v| (short("k"), v.clone())).collect();
    check_round_trip(&headers_frame(table)).expect("round trip");
    // The comparison used everywhere above really does tell floats apart.
    assert!(!value_eq(&FieldValue::F32(0.0), &FieldValue::F32(-0.0)));
    assert!(!value_eq(
        &FieldValue::F64(f64::from_bits(0x7ff8_0000_0000_0001)),
        &FieldValue::F64(f64::from_bits(0x7ff8_0000_0000_0002))
    ));
    assert!(value_eq(
        &FieldValue::F64(f64::NAN),
        &FieldValue::F64(f64::NAN)
    ));
    assert!(!table_eq(
        &FieldTable(vec![(short("a"), FieldValue::I32(1))]),
        &FieldTable(vec![(short("a"), FieldValue::U32(1))])
    ));
}

/// `levels` containers nested inside one another, the innermost empty: an array for even levels, a
/// table for odd ones.
fn nested(levels: usize) -> FieldValue {
    let mut value = FieldValue::Array(Vec::new());
    for level in 1..levels {
        value = if level % 2 == 0 {
            FieldValue::Array(vec![value])
        } else {
            FieldValue::Table(FieldTable(vec![(short("n"), value)]))
        };
    }
    value
}

#[test]
fn nesting_up_to_max_nesting_round_trips_and_one_more_is_a_syntax_error() {
    let ok = headers_frame(FieldTable(vec![(short("deep"), nested(MAX_NESTING))]));
    check_round_trip(&ok).expect("MAX_NESTING levels decode");
    let too_deep = headers_frame(FieldTable(vec![(short("deep"), nested(MAX_NESTING + 1))]));
    let mut buf = BytesMut::from(&encode(&too_deep)[..]);
    let err = decode_frame(&mut buf, 0).expect_err("one level too many");
    assert_eq!(err.reply_code(), ReplyCode::SyntaxError, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Basic properties
// ---------------------------------------------------------------------------------------------

/// Presence of each property in spec (flag) order.
fn presence(p: &BasicProperties) -> [bool; 14] {
    [
        p.content_type.is_some(),
        p.content_encoding.is_some(),
        p.headers.is_some(),
        p.delivery_mode.is_some(),
        p.priority.is_some(),
        p.correlation_id.is_some(),
        p.reply_to.is_some(),
        p.expiration.is_some(),
        p.message_id.is_some(),
        p.timestamp.is_some(),
        p.kind.is_some(),
        p.user_id.is_some(),
        p.app_id.is_some(),
        p.cluster_id.is_some(),
    ]
}

fn expected_flags(p: &BasicProperties) -> u16 {
    presence(p)
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| 1u16 << (15 - i))
        .sum()
}

fn check_header(channel: u16, header: &ContentHeader) -> Result<(), TestCaseError> {
    let frame = Frame::Header {
        channel,
        header: header.clone(),
    };
    let bytes = check_round_trip(&frame)?;
    prop_assert_eq!(bytes[0], 2, "frame type");
    prop_assert_eq!(&bytes[7..9], &header.class_id.to_be_bytes());
    prop_assert_eq!(&bytes[11..19], &header.body_size.to_be_bytes());
    let flags = u16::from_be_bytes([bytes[19], bytes[20]]);
    prop_assert_eq!(
        flags,
        expected_flags(&header.properties),
        "flag word {:016b}",
        flags
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn content_header_round_trips_with_any_properties(channel in any::<u16>(), header in arb_content_header()) {
        check_header(channel, &header)?;
    }
}

fn full_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some(short("application/json")),
        content_encoding: Some(short("gzip")),
        headers: Some(FieldTable(vec![
            (short("x-retries"), FieldValue::I64(3)),
            (short("f"), FieldValue::F32(f32::NAN)),
        ])),
        delivery_mode: Some(2),
        priority: Some(9),
        correlation_id: Some(short("corr")),
        reply_to: Some(short("amq.rabbitmq.reply-to")),
        expiration: Some(short("60000")),
        message_id: Some(short("m-1")),
        timestamp: Some(1_700_000_000),
        kind: Some(short("order.created")),
        user_id: Some(short("guest")),
        app_id: Some(short("warren-tests")),
        cluster_id: Some(short("")),
    }
}

#[test]
fn properties_empty_all_set_and_each_one_alone() {
    let header = |properties| ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: 42,
        properties,
    };
    // Empty: flag word 0 and nothing after it.
    let empty = Frame::Header {
        channel: 1,
        header: header(BasicProperties::default()),
    };
    let bytes = check_round_trip(&empty).expect("empty properties");
    assert_eq!(
        hex::encode(&bytes),
        "0200010000000e003c0000000000000000002a0000ce"
    );
    // All set: bits 15..2.
    let all = header(full_properties());
    check_header(1, &all).expect("all properties");
    assert_eq!(expected_flags(&all.properties), 0xfffc);
    // Each alone gets its own bit, in spec order.
    let full = full_properties();
    for i in 0..14 {
        let mut p = BasicProperties::default();
        match i {
            0 => p.content_type = full.content_type.clone(),
            1 => p.content_encoding = full.content_encoding.clone(),
            2 => p.headers = full.headers.clone(),
            3 => p.delivery_mode = full.delivery_mode,
            4 => p.priority = full.priority,
            5 => p.correlation_id = full.correlation_id.clone(),
            6 => p.reply_to = full.reply_to.clone(),
            7 => p.expiration = full.expiration.clone(),
            8 => p.message_id = full.message_id.clone(),
            9 => p.timestamp = full.timestamp,
            10 => p.kind = full.kind.clone(),
            11 => p.user_id = full.user_id.clone(),
            12 => p.app_id = full.app_id.clone(),
            _ => p.cluster_id = full.cluster_id.clone(),
        }
        assert_eq!(expected_flags(&p), 1 << (15 - i));
        check_header(7, &header(p)).unwrap_or_else(|e| panic!("property {i} alone: {e}"));
    }
    assert!(properties_eq(&full, &full.clone()));
    assert!(!properties_eq(&full, &BasicProperties::default()));
}

#[test]
fn undefined_property_flags_are_a_syntax_error() {
    let bytes = encode(&Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 0,
            properties: BasicProperties::default(),
        },
    });
    // Bit 1 (undefined), and bit 0 (continuation) followed by a non-zero second word.
    for (flags, extra) in [(0x0002u16, &[][..]), (0x0001, &[0x80, 0x00][..])] {
        let mut raw = bytes[..19].to_vec();
        raw.extend_from_slice(&flags.to_be_bytes());
        raw.extend_from_slice(extra);
        raw.push(0xce);
        let size = (raw.len() - 8) as u32;
        raw[3..7].copy_from_slice(&size.to_be_bytes());
        let err = decode_frame(&mut BytesMut::from(&raw[..]), 0).expect_err("undefined flag");
        assert_eq!(err.reply_code(), ReplyCode::SyntaxError, "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------------

/// The encoded size of a default-valued field list: what the wire layout of `fields` must be if
/// `fields_mut` lists every field (bits packed eight to an octet).
fn minimal_size(method: &Method) -> usize {
    let mut m = method.clone();
    let mut size = 0;
    let mut bits_in_octet = 0;
    for (_, f) in m.fields_mut() {
        if let FieldMut::Bit(_) = f {
            if bits_in_octet == 0 || bits_in_octet == 8 {
                size += 1;
                bits_in_octet = 0;
            }
            bits_in_octet += 1;
            continue;
        }
        bits_in_octet = 0;
        size += match f {
            FieldMut::Octet(_) => 1,
            FieldMut::Short(_) => 2,
            FieldMut::Long(_) => 4,
            FieldMut::LongLong(_) | FieldMut::Timestamp(_) => 8,
            FieldMut::ShortStr(_) => 1,
            FieldMut::LongStr(_) | FieldMut::Table(_) => 4,
            FieldMut::Bit(_) => unreachable!(),
        };
    }
    size
}

/// A non-default value for a field.
fn poke(field: FieldMut<'_>) {
    match field {
        FieldMut::Bit(f) => *f = true,
        FieldMut::Octet(f) => *f = 1,
        FieldMut::Short(f) => *f = 1,
        FieldMut::Long(f) => *f = 1,
        FieldMut::LongLong(f) | FieldMut::Timestamp(f) => *f = 1,
        FieldMut::ShortStr(f) => *f = short("x"),
        FieldMut::LongStr(f) => *f = Bytes::from_static(b"x"),
        FieldMut::Table(f) => *f = FieldTable(vec![(short("k"), FieldValue::Void)]),
    }
}

#[test]
fn all_methods_lists_every_method_the_decoder_knows_once() {
    let methods = all_methods();
    let ids: Vec<(u16, u16)> = methods
        .iter()
        .map(|m| (m.class_id(), m.method_id()))
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a method is listed twice");
    let mut known = 0;
    for class_id in 0..=255u16 {
        for method_id in 0..=255u16 {
            if let Some(name) = Method::name_of(class_id, method_id) {
                known += 1;
                let m = methods
                    .iter()
                    .find(|m| (m.class_id(), m.method_id()) == (class_id, method_id))
                    .unwrap_or_else(|| panic!("{name} is missing from all_methods()"));
                assert_eq!(m.name(), name);
            }
        }
    }
    assert_eq!(known, methods.len());
    // AMQP 0-9-1 with RabbitMQ's extensions: 14 connection (incl. blocked/unblocked and
    // update-secret), 6 channel, 8 exchange, 10 queue, 18 basic, 6 tx, 2 confirm.
    assert_eq!(methods.len(), 64);
    for must in [
        "connection.blocked",
        "connection.update-secret-ok",
        "exchange.unbind-ok",
        "basic.nack",
        "confirm.select",
    ] {
        assert!(methods.iter().any(|m| m.name() == must), "{must}");
    }
}

#[test]
fn fields_mut_lists_every_wire_field_of_every_method() {
    for template in all_methods() {
        let name = template.name();
        let bytes = encode(&Frame::Method {
            channel: 0,
            method: template.clone(),
        });
        let args = bytes.len() - 8 - 4;
        assert_eq!(
            args,
            minimal_size(&template),
            "{name}: the fields fields_mut lists do not add up to the encoded arguments"
        );
        let count = template.clone().fields_mut().len();
        for i in 0..count {
            let mut m = template.clone();
            let (field_name, field) = m.fields_mut().swap_remove(i);
            poke(field);
            assert_ne!(
                m, template,
                "{name}.{field_name}: not a field of the struct"
            );
            let poked = encode(&Frame::Method {
                channel: 0,
                method: m.clone(),
            });
            assert_ne!(poked, bytes, "{name}.{field_name}: not on the wire");
            assert!(!method_eq(&m, &template));
        }
    }
}

#[test]
fn every_method_round_trips_with_arbitrary_arguments() {
    let mut runner_config = Config::with_cases(64);
    runner_config.failure_persistence = None;
    for template in all_methods() {
        let name = template.name();
        let mut runner = TestRunner::new(runner_config.clone());
        let strategy = (any::<u16>(), arb_method_like(&template));
        let result = runner.run(&strategy, |(channel, method)| {
            let frame = Frame::Method {
                channel,
                method: method.clone(),
            };
            let bytes = check_round_trip(&frame)?;
            // Wire layout: type 1, channel, size, class id, method id.
            prop_assert_eq!(bytes[0], 1);
            prop_assert_eq!(&bytes[1..3], &channel.to_be_bytes());
            prop_assert_eq!(
                u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]) as usize,
                bytes.len() - 8
            );
            prop_assert_eq!(&bytes[7..9], &method.class_id().to_be_bytes());
            prop_assert_eq!(&bytes[9..11], &method.method_id().to_be_bytes());
            prop_assert_eq!(bytes[bytes.len() - 1], 0xce);
            prop_assert_eq!(
                Method::name_of(method.class_id(), method.method_id()),
                Some(method.name())
            );
            // frame_max limits the payload (RabbitMQ's 8-byte allowance): a payload of exactly
            // frame_max passes, one byte over does not.
            let payload = bytes.len() as u32 - 8;
            let exact = decode_frame(&mut BytesMut::from(&bytes[..]), payload);
            prop_assert!(
                matches!(exact, Ok(Some(_))),
                "frame_max = payload: {:?}",
                exact
            );
            let over = decode_frame(&mut BytesMut::from(&bytes[..]), payload - 1);
            prop_assert_eq!(
                over,
                Err(DecodeError::FrameTooLarge {
                    payload,
                    frame_max: payload - 1
                })
            );
            Ok(())
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_frame_round_trips(frame in arb_frame()) {
        check_round_trip(&frame)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Streams: prefixes, content, garbage
// ---------------------------------------------------------------------------------------------

/// Checks that decoding `bytes[..len]` yields exactly the frames that end within `len`, then
/// `Ok(None)` with the partial frame's bytes left in the buffer.
fn check_prefix(
    frames: &[Frame],
    bytes: &[u8],
    ends: &[usize],
    len: usize,
    frame_max: u32,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(&bytes[..len]);
    let decoded = decode_all(&mut buf, frame_max)
        .map_err(|e| TestCaseError::fail(format!("prefix of {len} bytes: {e}")))?;
    let whole = ends.iter().take_while(|&&end| end <= len).count();
    prop_assert_eq!(decoded.len(), whole, "prefix of {} bytes", len);
    for (d, f) in decoded.iter().zip(frames) {
        prop_assert!(frame_eq(&d.frame, f));
    }
    let consumed = if whole == 0 { 0 } else { ends[whole - 1] };
    prop_assert_eq!(&buf[..], &bytes[consumed..len], "prefix of {} bytes", len);
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn every_prefix_of_a_stream_is_incomplete_never_an_error(
        frames in vec(arb_frame(), 1..6),
        limit in prop_oneof![Just(false), Just(true)],
    ) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for f in &frames {
            bytes.extend_from_slice(&encode(f));
            ends.push(bytes.len());
        }
        // frame_max either unlimited or exactly the largest frame.
        let largest = ends.iter().scan(0, |start, &end| { let len = end - *start; *start = end; Some(len) }).max().unwrap_or(0);
        let frame_max = if limit { largest as u32 } else { 0 };
        for len in 0..=bytes.len() {
            check_prefix(&frames, &bytes, &ends, len, frame_max)?;
        }
    }

    #[test]
    fn content_split_over_frame_max_reassembles(
        publish in arb_method_like(&warren_protocol::basic::Publish::default().into()),
        properties in arb_properties(),
        body in arb_bytes(3000),
        frame_max in prop_oneof![Just(0u32), 9u32..64, 4096u32..8192],
    ) {
        let mut out = BytesMut::new();
        encode_content(5, &publish, &properties, &body, frame_max, &mut out);
        // Headers can be larger than a tiny frame_max: decode without a limit, then check bodies.
        let frames = decode_all(&mut out, 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(out.is_empty());
        let mut frames = frames.into_iter();
        let first = frames.next().expect("method frame");
        let expected_method = Frame::Method { channel: 5, method: publish };
        prop_assert!(frame_eq(&first.frame, &expected_method), "{:?}", first.frame);
        let Some(Frame::Header { channel: 5, header }) = frames.next().map(|d| d.frame) else {
            return Err(TestCaseError::fail("no content header after the method"));
        };
        prop_assert_eq!(header.class_id, 60);
        prop_assert_eq!(header.body_size, body.len() as u64);
        prop_assert!(properties_eq(&header.properties, &properties));
        let mut joined = Vec::new();
        for d in frames {
            let Frame::Body { channel: 5, payload } = &d.frame else {
                return Err(TestCaseError::fail(format!("not a body frame: {:?}", d.frame)));
            };
            prop_assert!(!payload.is_empty(), "empty body frame");
            if frame_max != 0 {
                prop_assert!(d.bytes.len() <= frame_max as usize, "body frame larger than frame_max");
            }
            joined.extend_from_slice(payload);
        }
        prop_assert_eq!(joined, body.to_vec());
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..2048),
        frame_max in prop_oneof![Just(0u32), Just(4096u32), any::<u32>()],
    ) {
        decode_garbage(&bytes, frame_max)?;
    }

    #[test]
    fn corrupted_streams_never_panic(
        frames in vec(arb_frame(), 1..4),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        frame_max in prop_oneof![Just(0u32), Just(4096u32), any::<u32>()],
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend_from_slice(&encode(f));
        }
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let len = cut.index(bytes.len() + 1);
        decode_garbage(&bytes[..len], frame_max)?;
        decode_garbage(&bytes, frame_max)?;
    }
}

/// Feeds `bytes` to the decoder until it errs or needs more; whatever it decodes must re-encode
/// stably.
fn decode_garbage(bytes: &[u8], frame_max: u32) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, frame_max) {
            Ok(Some(frame)) => {
                prop_assert!(buf.len() + 8 <= before, "a frame consumed under 8 bytes");
                assert_reencodes_stably(&frame).map_err(TestCaseError::fail)?;
            }
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "incomplete frame consumed bytes");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

#[test]
fn a_stream_of_every_method_decodes_in_one_buffer() {
    // Every method back to back with a content header and body after each content method.
    let mut out = BytesMut::new();
    let mut expected = Vec::new();
    for (i, method) in all_methods().into_iter().enumerate() {
        let channel = i as u16;
        if method.has_content() {
            encode_content(
                channel,
                &method,
                &full_properties(),
                b"body",
                4096,
                &mut out,
            );
            expected.push(Frame::Method { channel, method });
            expected.push(Frame::Header {
                channel,
                header: ContentHeader {
                    class_id: 60,
                    weight: 0,
                    body_size: 4,
                    properties: full_properties(),
                },
            });
            expected.push(Frame::Body {
                channel,
                payload: Bytes::from_static(b"body"),
            });
        } else {
            let frame = Frame::Method { channel, method };
            out.put_slice(&encode(&frame));
            expected.push(frame);
        }
    }
    let decoded = decode_all(&mut out, 4096).expect("valid stream");
    assert!(out.is_empty());
    assert_eq!(decoded.len(), expected.len());
    for (d, e) in decoded.iter().zip(&expected) {
        assert!(frame_eq(&d.frame, e), "{:?} != {:?}", d.frame, e);
        assert_eq!(d.bytes, encode(e));
    }
}

/// Bit fields pack low bit first in spec field order (spec 4.2.5.2): known answers for methods
/// whose bits no captured client happens to set one at a time.
#[test]
fn bit_fields_sit_where_the_spec_puts_them() {
    use warren_protocol::{basic, exchange, queue};
    // (method, offset of the bit octet in the arguments, expected octet)
    let arguments = |m: Method| {
        let bytes = encode(&Frame::Method {
            channel: 1,
            method: m,
        });
        bytes.slice(11..bytes.len() - 1)
    };
    let declare = |f: fn(&mut exchange::Declare)| {
        let mut d = exchange::Declare {
            exchange: short("x"),
            kind: short("topic"),
            ..Default::default()
        };
        f(&mut d);
        arguments(d.into())[10] // reserved-1 (2), "x" (2), "topic" (6), then the bits
    };
    assert_eq!(declare(|d| d.passive = true), 0x01);
    assert_eq!(declare(|d| d.durable = true), 0x02);
    assert_eq!(declare(|d| d.auto_delete = true), 0x04);
    assert_eq!(declare(|d| d.internal = true), 0x08);
    assert_eq!(declare(|d| d.no_wait = true), 0x10);
    let qdeclare = |f: fn(&mut queue::Declare)| {
        let mut d = queue::Declare::default();
        f(&mut d);
        arguments(d.into())[3] // reserved-1 (2), "" (1), then the bits
    };
    assert_eq!(qdeclare(|d| d.passive = true), 0x01);
    assert_eq!(qdeclare(|d| d.durable = true), 0x02);
    assert_eq!(qdeclare(|d| d.exclusive = true), 0x04);
    assert_eq!(qdeclare(|d| d.auto_delete = true), 0x08);
    assert_eq!(qdeclare(|d| d.no_wait = true), 0x10);
    let consume = |f: fn(&mut basic::Consume)| {
        let mut c = basic::Consume::default();
        f(&mut c);
        arguments(c.into())[4] // reserved-1 (2), queue "" (1), consumer-tag "" (1)
    };
    assert_eq!(consume(|c| c.no_local = true), 0x01);
    assert_eq!(consume(|c| c.no_ack = true), 0x02);
    assert_eq!(consume(|c| c.exclusive = true), 0x04);
    assert_eq!(consume(|c| c.no_wait = true), 0x08);
    let nack = |multiple, requeue| {
        arguments(
            basic::Nack {
                delivery_tag: 1,
                multiple,
                requeue,
            }
            .into(),
        )[8]
    };
    assert_eq!(nack(true, false), 0x01);
    assert_eq!(nack(false, true), 0x02);
}
