//! Field values in RabbitMQ's words, for reply texts (a leaf module: it imports nothing from
//! the crate, so exchange/, queue/, vhost and error can all use it).

use warren_protocol::FieldValue;

/// RabbitMQ's name for a field value's type, as its reply texts show it (`signedint`, `longstr`).
pub fn field_type_name(value: &FieldValue) -> &'static str {
    match value {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) | FieldValue::I64Upper(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal(_) => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::ByteArray(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

/// A field value as RabbitMQ's reply texts print it: strings as their text, numbers and
/// booleans as Erlang prints them (`10`, `true`).
pub fn field_value_text(value: &FieldValue) -> String {
    match value {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        FieldValue::Void => "undefined".into(),
        other => match other.as_i64() {
            Some(n) => n.to_string(),
            None => format!("{other:?}"),
        },
    }
}
