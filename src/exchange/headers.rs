//! Headers exchange matching (`x-match` = all, any, all-with-x, any-with-x).

use crate::error::{field_type_name, field_value_text};
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
/// "the header is present", as in RabbitMQ; integers compare by value whatever their width.
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
    matches!(want, FieldValue::Void) || equivalent(want, have)
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
    fn void_means_present_and_ints_compare_by_value() {
        let args = table(&[("k", FieldValue::Void), ("n", FieldValue::I32(5))]);
        let headers = table(&[("k", "anything".into()), ("n", FieldValue::I64(5))]);
        assert!(matches(MatchMode::All, &args, Some(&headers)));
    }
}
