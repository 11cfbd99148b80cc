//! Permission patterns: the configure/write/read regular expressions of a user in a vhost and the
//! write/read patterns of topic permissions. Compiled once, when they are set, so a garbage
//! regex is refused then and never at use (RabbitMQ: `set_permissions` runs `re:compile/1`).

use regex::{Regex, RegexBuilder};
use std::fmt;

/// Compiled-size ceiling: patterns are set by administrators, but one should not be able to
/// make the broker build a huge automaton by mistake.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What an operation needs, as RabbitMQ names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Declare and delete.
    Configure,
    /// Publish to an exchange, bind a queue/exchange as destination.
    Write,
    /// Consume, get, purge, bind from an exchange as source.
    Read,
}

impl Access {
    /// `configure`, `write` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A pattern refused when it was set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression '{pattern}': {reason}")]
pub struct InvalidPattern {
    /// The pattern as given.
    pub pattern: String,
    /// Why the regex engine refused it.
    pub reason: String,
}

/// One permission pattern: the text as set (for export) and its compiled form.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    compiled: Regex,
    matches_all: bool,
}

impl Pattern {
    /// Compiles a pattern. As RabbitMQ, it is unanchored and case-sensitive, and `""` stands for
    /// `^$`: it grants nothing but the empty name (`rabbit_auth_backend_internal:
    /// check_resource_access/4`).
    ///
    /// RabbitMQ uses PCRE; Warren uses the `regex` crate, which has the same syntax for what
    /// permission patterns use (classes, alternation, anchors, repetition) but no look-around
    /// or back-references: such a pattern is refused here rather than misread.
    pub fn try_new(source: &str) -> Result<Self, InvalidPattern> {
        Self::compile(source, if source.is_empty() { "^$" } else { source })
    }

    fn compile(source: &str, effective: &str) -> Result<Self, InvalidPattern> {
        let compiled = RegexBuilder::new(effective)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| InvalidPattern {
                pattern: source.to_owned(),
                reason: first_line(&e.to_string()),
            })?;
        // Each matches (at least) the empty string at some position of any name. `^.*$` does
        // not: `.` stops at a newline.
        let matches_all = matches!(effective, ".*" | "^.*" | ".*$");
        Ok(Pattern {
            source: source.to_owned(),
            compiled,
            matches_all,
        })
    }

    /// The pattern as it was set.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` is allowed.
    pub fn is_match(&self, name: &str) -> bool {
        self.matches_all || self.compiled.is_match(name)
    }

    /// Whether this pattern allows every name (`.*`), so callers can skip caching.
    pub fn matches_all(&self) -> bool {
        self.matches_all
    }
}

/// The variables of topic permissions, in RabbitMQ's spelling.
const TOPIC_VARIABLES: [&str; 3] = ["{username}", "{vhost}", "{client_id}"];

/// A topic-permission pattern: kept as text because `{username}`, `{vhost}` and `{client_id}`
/// are expanded per connection before it is compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    source: String,
}

impl TopicPattern {
    /// Checks the pattern now, with each variable standing for a plain word, so a garbage regex
    /// is refused when set. PCRE reads `{username}` as literal text; the `regex` crate would
    /// read it as a broken repetition, so variables never reach it unexpanded.
    pub fn try_new(source: &str) -> Result<Self, InvalidPattern> {
        let probe = TOPIC_VARIABLES
            .iter()
            .fold(source.to_owned(), |text, var| text.replace(var, "x"));
        Pattern::compile(source, if probe.is_empty() { "^$" } else { &probe })?;
        Ok(TopicPattern {
            source: source.to_owned(),
        })
    }

    /// The pattern as it was set.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pattern for one connection. As RabbitMQ (`expand_topic_permission/2`, a plain
    /// `binary:replace`), values are not escaped; a variable without a value stays as literal
    /// text. The result can fail to compile (a user name with `(`): the caller then refuses.
    pub fn expand(&self, vars: &TopicVariables<'_>) -> Result<Pattern, InvalidPattern> {
        if self.source.is_empty() {
            return Pattern::try_new("");
        }
        let values = [Some(vars.username), Some(vars.vhost), vars.client_id];
        let text =
            TOPIC_VARIABLES
                .iter()
                .zip(values)
                .fold(self.source.clone(), |text, (var, value)| {
                    let literal = regex::escape(var);
                    text.replace(var, value.unwrap_or(&literal))
                });
        Pattern::compile(&text, &text)
    }
}

/// The values a topic permission's variables expand to.
#[derive(Clone, Copy, Debug)]
pub struct TopicVariables<'a> {
    /// The authenticated user.
    pub username: &'a str,
    /// The connection's vhost.
    pub vhost: &'a str,
    /// A client id, when the connection has one (MQTT's; AMQP 0-9-1 clients have none).
    pub client_id: Option<&'a str>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn first_line(text: &str) -> String {
    // regex errors are multi-line drawings of the pattern; the last line says what is wrong.
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

/// A user's permissions in one vhost.
#[derive(Clone, Debug, PartialEq)]
pub struct Permission {
    /// Declare/delete queues and exchanges.
    pub configure: Pattern,
    /// Publish, bind destinations.
    pub write: Pattern,
    /// Consume, get, purge, bind sources.
    pub read: Pattern,
}

impl Permission {
    /// Compiles the three patterns, refusing the first invalid one.
    pub fn try_new(configure: &str, write: &str, read: &str) -> Result<Self, InvalidPattern> {
        Ok(Permission {
            configure: Pattern::try_new(configure)?,
            write: Pattern::try_new(write)?,
            read: Pattern::try_new(read)?,
        })
    }

    /// The pattern for `access`.
    pub fn pattern(&self, access: Access) -> &Pattern {
        match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        }
    }
}

/// A user's topic permission on one exchange of one vhost (RabbitMQ 3.7+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPermission {
    /// Routing keys the user may publish with.
    pub write: TopicPattern,
    /// Binding keys the user may bind with.
    pub read: TopicPattern,
}

impl TopicPermission {
    /// Checks both patterns.
    pub fn try_new(write: &str, read: &str) -> Result<Self, InvalidPattern> {
        Ok(TopicPermission {
            write: TopicPattern::try_new(write)?,
            read: TopicPattern::try_new(read)?,
        })
    }

    /// The pattern for `access` (configure has none: it maps to write, never asked).
    pub fn pattern(&self, access: Access) -> &TopicPattern {
        match access {
            Access::Read => &self.read,
            Access::Write | Access::Configure => &self.write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_unanchored_and_case_sensitive() {
        let p = Pattern::try_new("app").expect("valid");
        assert!(p.is_match("app"));
        assert!(p.is_match("xapp-1"), "unanchored, as RabbitMQ");
        assert!(!p.is_match("APP"), "case-sensitive");
        let anchored = Pattern::try_new("^app-").expect("valid");
        assert!(anchored.is_match("app-1") && !anchored.is_match("my-app-1"));
    }

    #[test]
    fn empty_pattern_grants_nothing_but_the_empty_name() {
        let p = Pattern::try_new("").expect("valid");
        assert!(!p.is_match("q"));
        assert!(!p.is_match("amq.default"));
        assert!(p.is_match(""), "RabbitMQ turns \"\" into ^$");
        assert_eq!(p.as_str(), "");
    }

    #[test]
    fn match_all_shortcut_agrees_with_the_regex() {
        for source in [".*", "^.*", ".*$"] {
            let p = Pattern::try_new(source).expect("valid");
            assert!(p.matches_all());
            assert!(p.is_match("") && p.is_match("anything\nat all"));
        }
        assert!(!Pattern::try_new(".+").expect("valid").matches_all());
        let whole = Pattern::try_new("^.*$").expect("valid");
        assert!(!whole.matches_all() && !whole.is_match("a\nb") && whole.is_match("ab"));
    }

    #[test]
    fn garbage_regex_is_refused_when_set() {
        let err = Permission::try_new(".*", "(", ".*").expect_err("unbalanced");
        assert_eq!(err.pattern, "(");
        assert!(err
            .to_string()
            .starts_with("invalid regular expression '(': "));
        assert!(err.reason.contains("unclosed group"), "{}", err.reason);
        assert!(TopicPermission::try_new("[a-", ".*").is_err());
        // PCRE-only syntax is refused rather than misread.
        assert!(Pattern::try_new("^(?!amq\\.).*").is_err());
    }

    #[test]
    fn topic_variables_expand_without_escaping() {
        let vars = TopicVariables {
            username: "alice",
            vhost: "prod",
            client_id: None,
        };
        let p = TopicPattern::try_new("^{username}\\.{vhost}\\.").expect("valid");
        let e = p.expand(&vars).expect("expands");
        assert!(e.is_match("alice.prod.orders"));
        assert!(!e.is_match("bob.prod.orders"));
        // Not escaped, as RabbitMQ: the dot of a user name matches any character.
        let dotted = TopicVariables {
            username: "a.b",
            ..vars
        };
        assert!(p.expand(&dotted).expect("ok").is_match("axb.prod.x"));
        // No client id: the variable stays as literal text.
        let c = TopicPattern::try_new("^{client_id}$").expect("valid");
        assert!(c.expand(&vars).expect("compiles").is_match("{client_id}"));
        let with_id = TopicVariables {
            client_id: Some("dev-7"),
            ..vars
        };
        assert!(c.expand(&with_id).expect("compiles").is_match("dev-7"));
        // A user name that breaks the regex makes the expansion fail: the caller refuses access.
        let bad = TopicVariables {
            username: "a(b",
            ..vars
        };
        assert!(p.expand(&bad).is_err());
        // Empty expands to ^$.
        let empty = TopicPattern::try_new("")
            .expect("valid")
            .expand(&vars)
            .expect("ok");
        assert!(empty.is_match("") && !empty.is_match("x"));
    }
}
