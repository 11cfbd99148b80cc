//! Vhost records of the access model: name, RabbitMQ 3.11+ metadata (description, tags, default
//! queue type) and limits. Exchanges and queues live in `crate::vhost`; this is only what access
//! control and definitions need.

/// Queue types a vhost may default to (`default_queue_type`).
pub const QUEUE_TYPES: [&str; 3] = ["classic", "quorum", "stream"];

/// A vhost's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VhostInfo {
    /// The vhost's name (`/` is the default).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Free tags.
    pub tags: Vec<String>,
    /// Queue type of queues declared without `x-queue-type`; `None` is classic.
    pub default_queue_type: Option<String>,
    /// Per-vhost limits.
    pub limits: VhostLimits,
}

impl VhostInfo {
    /// A vhost with no metadata and no limits.
    pub fn named(name: &str) -> Self {
        VhostInfo {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// Per-vhost limits (`rabbitmqctl set_vhost_limits`). `None` is unlimited; `Some(0)` refuses all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VhostLimits {
    /// `max-connections`.
    pub max_connections: Option<u64>,
    /// `max-queues`.
    pub max_queues: Option<u64>,
}

/// Checks a `default_queue_type` with RabbitMQ's message (`rabbit_definitions:
/// invalid_queue_type_message/1`).
pub fn validate_queue_type(queue_type: &str) -> Result<(), String> {
    if queue_type.is_empty() {
        return Err("default_queue_type must not be an empty string".to_owned());
    }
    if QUEUE_TYPES.contains(&queue_type) {
        Ok(())
    } else {
        Err(format!("{queue_type} is not a valid queue type"))
    }
}

/// Whether declaring one more queue exceeds `max-queues` (RabbitMQ's
/// `rabbit_vhost_limit:would_exceed_queue_limit/2`: 0 refuses all, else `count + 1 > limit`).
pub fn would_exceed_queue_limit(limit: Option<u64>, queues: u64) -> bool {
    limit.is_some_and(|limit| queues.saturating_add(1) > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_types_are_checked_with_rabbitmqs_texts() {
        assert!(validate_queue_type("quorum").is_ok());
        assert_eq!(
            validate_queue_type("fifo").unwrap_err(),
            "fifo is not a valid queue type"
        );
        assert_eq!(
            validate_queue_type("").unwrap_err(),
            "default_queue_type must not be an empty string"
        );
    }

    #[test]
    fn queue_limit_counts_the_queue_being_declared() {
        assert!(would_exceed_queue_limit(Some(0), 0));
        assert!(!would_exceed_queue_limit(Some(2), 1));
        assert!(would_exceed_queue_limit(Some(2), 2));
        assert!(!would_exceed_queue_limit(None, 10_000));
    }
}
