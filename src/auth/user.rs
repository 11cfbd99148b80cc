//! Users: name, stored password, tags and per-user limits. Plain data; the registry in
//! `access_control` owns them.

use super::password::PasswordHash;

/// Tag that lets a user set `user-id` to another user's name (RabbitMQ's `impersonator`).
pub const TAG_IMPERSONATOR: &str = "impersonator";
/// Full management access.
pub const TAG_ADMINISTRATOR: &str = "administrator";
/// Management: sees every object and node metrics.
pub const TAG_MONITORING: &str = "monitoring";
/// Management: may set policies in its vhosts.
pub const TAG_POLICYMAKER: &str = "policymaker";
/// Management: may log in to the management UI and see its own vhosts.
pub const TAG_MANAGEMENT: &str = "management";

/// A user.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// `None`: no password (RabbitMQ's cleared password); only EXTERNAL can log in.
    pub password: Option<PasswordHash>,
    /// Tags in the order set; unknown tags are kept, as RabbitMQ keeps them.
    pub tags: Vec<String>,
    /// Per-user limits.
    pub limits: UserLimits,
}

impl User {
    /// Whether the user has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Per-user limits (`rabbitmqctl set_user_limits`). `None` is unlimited, as RabbitMQ's negative
/// values; `Some(0)` refuses every connection or channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// `max-connections`.
    pub max_connections: Option<u64>,
    /// `max-channels`.
    pub max_channels: Option<u64>,
}

/// Parses tags as RabbitMQ's `tag_list_from/1`: a comma-separated string (3.10's HTTP API and
/// definitions), each tag trimmed; empty pieces dropped.
pub fn parse_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `count` existing items already reach `limit` (RabbitMQ's `is_over_limit`: 0 refuses
/// everything, otherwise refused once `count >= limit`).
pub fn is_over_limit(limit: Option<u64>, count: u64) -> bool {
    limit.is_some_and(|limit| count >= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_like_rabbitmq() {
        assert_eq!(
            parse_tags("administrator, monitoring,,custom-tag "),
            vec!["administrator", "monitoring", "custom-tag"]
        );
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn limits_zero_refuses_and_none_is_unlimited() {
        assert!(is_over_limit(Some(0), 0));
        assert!(!is_over_limit(Some(2), 1));
        assert!(is_over_limit(Some(2), 2));
        assert!(!is_over_limit(None, u64::MAX));
    }

    #[test]
    fn has_tag_matches_exactly() {
        let u = User {
            name: "u".into(),
            password: None,
            tags: vec!["impersonator".into(), "ops".into()],
            limits: UserLimits::default(),
        };
        assert!(u.has_tag(TAG_IMPERSONATOR) && u.has_tag("ops"));
        assert!(!u.has_tag("imperson") && !u.has_tag(TAG_ADMINISTRATOR));
    }
}
