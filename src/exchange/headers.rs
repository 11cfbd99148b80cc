//! Headers exchange matching (`x-match` = all, any, all-with-x, any-with-x).

use crate::fields::{field_type_name, field_value_text};
use warren_protocol::{FieldTable, FieldValue};

/// How a headers binding combines its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMode {
    /// Every argument must match (the default).
    All,
    /// At least one argument must match.
    Any,
    /// Like `All`, and `x-` arguments count too (RabbitMQ 3.10+).
    AllWithX,
    /// Like `Any`, and `x-` arguments count too.
    AnyWithX,
}

impl MatchMode {
    /// Reads `x-match`; `Err` carries the text for a 406 (RabbitMQ refuses unknown values).
    pub fn from_arguments(args: &FieldTable) -> Result<Self, String> {
        match args.get("x-match") {
            None => Ok(MatchMode::All),
            Some(FieldValue::LongStr(v)) => match &v[..] {
                b"all" => Ok(MatchMode::All),
                b"any" => Ok(MatchMode::Any),
                b"all-with-x" => Ok(MatchMode::AllWithX),
                b"any-with-x" => Ok(MatchMode::AnyWithX),
                // RabbitMQ prints the value as an Erlang binary: <<"bogus">>.
                other => Err(format!(
                    "Invalid x-match field value <<{:?}>>; expected all, any, all-with-x, or any-with-x",
                    String::from_utf8_lossy(other)
                )),
            },
            Some(other) => Err(format!(
                "Invalid x-match field type {} (value {}); expected longstr",
                field_type_name(other),
                field_value_text(other)
            )),
        }
    }
}

/// Whether `headers` (the message's) satisfy a binding's `args`. A void argument value means
/// "the header is present", as in RabbitMQ; other values compare as [`header_value_eq`] says.
pub fn matches(mode: MatchMode, args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let with_x = matches!(mode, MatchMode::AllWithX | MatchMode::AnyWithX);
    let wanted = args
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.starts_with("x-")));
    for (key, want) in wanted {
        let found = headers
            .and_then(|h| h.get(key))
            .is_some_and(|have| value_matches(want, have));
        match mode {
            MatchMode::All | MatchMode::AllWithX if !found => return false,
            MatchMode::Any | MatchMode::AnyWithX if found => return true,
            _ => {}
        }
    }
    match mode {
        MatchMode::All | MatchMode::AllWithX => true,
        MatchMode::Any | MatchMode::AnyWithX => false,
    }
}

fn value_matches(want: &FieldValue, have: &FieldValue) -> bool {
    matches!(want, FieldValue::Void) || header_value_eq(want, have)
}

/// RabbitMQ 3.10's headers exchange compares a binding argument with the header of the same
/// name by Erlang's `==` on the decoded values, whatever their type letters: every integer type,
/// a timestamp, `f` and `d` compare as numbers (`l` 5 equals `d` 5.0 and `T` 5), and a long
/// string equals a byte array holding the same bytes. Booleans, decimals, tables and arrays only
/// equal a value of their own type (inside tables and arrays types count). Checked side by side
/// with RabbitMQ 3.10.8 through amqplib and pika. (Redeclared arguments use [`equivalent`].)
pub fn header_value_eq(a: &FieldValue, b: &FieldValue) -> bool {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.equals(y);
    }
    match (bytes(a), bytes(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn equals(self, other: Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a == b,
            (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                f.is_finite() && f.fract() == 0.0 && f.abs() < 1e38 && f as i128 == i
            }
        }
    }
}

fn number(v: &FieldValue) -> Option<Number> {
    Some(match *v {
        FieldValue::Timestamp(t) => Number::Int(t.into()),
        FieldValue::F32(f) => Number::Float(f.into()),
        FieldValue::F64(f) => Number::Float(f),
        ref other => Number::Int(other.as_i64()?.into()),
    })
}

fn bytes(v: &FieldValue) -> Option<&[u8]> {
    match v {
        FieldValue::LongStr(s) => Some(&s[..]),
        FieldValue::ByteArray(b) => Some(&b[..]),
        _ => None,
    }
}

/// RabbitMQ's value comparison for headers and redeclared arguments: the same type class and an
/// equal value. Every integer type is one class (so `I` 5 equals `l` 5), as are `f` and `d`;
/// any other type only equals itself, so the string "5" is not the integer 5.
pub fn equivalent(a: &FieldValue, b: &FieldValue) -> bool {
    match (int_value(a), int_value(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => match (a, b) {
            (FieldValue::F32(x), FieldValue::F64(y)) | (FieldValue::F64(y), FieldValue::F32(x)) => {
                f64::from(*x) == *y
            }
            _ => a == b,
        },
    }
}

/// Integer types only (RabbitMQ's `type_class` int; a timestamp is its own class).
fn int_value(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Timestamp(_) => None,
        other => other.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::ShortStr;

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        entries
            .iter()
            .map(|(k, v)| (ShortStr::from(*k), v.clone()))
            .collect()
    }

    #[test]
    fn all_and_any() {
        let args = table(&[("format", "pdf".into()), ("type", "report".into())]);
        let both = table(&[("format", "pdf".into()), ("type", "report".into())]);
        let one = table(&[("format", "pdf".into())]);
        assert!(matches(MatchMode::All, &args, Some(&both)));
        assert!(!matches(MatchMode::All, &args, Some(&one)));
        assert!(matches(MatchMode::Any, &args, Some(&one)));
        assert!(!matches(MatchMode::Any, &args, None));
    }

    #[test]
    fn x_arguments_only_count_with_x() {
        let args = table(&[("x-tag", "a".into())]);
        let headers = table(&[("x-tag", "b".into())]);
        assert!(
            matches(MatchMode::All, &args, Some(&headers)),
            "x- keys are ignored by all"
        );
        assert!(!matches(MatchMode::AllWithX, &args, Some(&headers)));
    }

    #[test]
    fn equivalence_follows_rabbitmq_type_classes() {
        assert!(equivalent(&FieldValue::U8(5), &FieldValue::I64(5)));
        assert!(!equivalent(&"5".into(), &FieldValue::I32(5)));
        assert!(!equivalent(&FieldValue::Timestamp(5), &FieldValue::I64(5)));
        assert!(equivalent(&FieldValue::F32(1.5), &FieldValue::F64(1.5)));
        assert!(!equivalent(&FieldValue::Bool(true), &FieldValue::I8(1)));
    }

    #[test]
    fn header_values_compare_like_erlang_equality() {
        let five = [
            FieldValue::I64(5),
            FieldValue::U8(5),
            FieldValue::F64(5.0),
            FieldValue::F32(5.0),
            FieldValue::Timestamp(5),
        ];
        for a in &five {
            for b in &five {
                assert!(header_value_eq(a, b), "{a:?} == {b:?}");
            }
        }
        assert!(!header_value_eq(&FieldValue::F64(5.5), &FieldValue::I64(5)));
        let bytes = FieldValue::ByteArray(bytes::Bytes::from_static(b"ab"));
        assert!(header_value_eq(&"ab".into(), &bytes));
        assert!(!header_value_eq(
            &"ab".into(),
            &FieldValue::ByteArray(bytes::Bytes::new())
        ));
        assert!(!header_value_eq(
            &FieldValue::Bool(true),
            &FieldValue::I32(1)
        ));
        assert!(!header_value_eq(&"5".into(), &FieldValue::I32(5)));
        let nested = |v: FieldValue| FieldValue::Array(vec![v]);
        assert!(!header_value_eq(
            &nested(FieldValue::I32(1)),
            &nested(FieldValue::I64(1))
        ));
    }

    #[test]
    fn void_means_present_and_ints_compare_by_value() {
        let args = table(&[("k", FieldValue::Void), ("n", FieldValue::I32(5))]);
        let headers = table(&[("k", "anything".into()), ("n", FieldValue::I64(5))]);
        assert!(matches(MatchMode::All, &args, Some(&headers)));
    }
}
