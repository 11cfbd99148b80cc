//! `GET /api/health/checks/certificate-expiration/{within}/{unit}`: 503 when a TLS listener's
//! certificate or CA file holds a certificate that ends within the period (or a section that is
//! no valid certificate), as RabbitMQ's `rabbit_mgmt_wm_health_check_certificate_expiration`:
//! same units (a month is 365/12 days), error texts and answer shapes.

use serde_json::{json, Value};

use super::error::ApiError;
use super::views::{format_expiry_date, ListenerView};
use crate::tls::validity::{certificate_end_dates, expiring_before, SectionValidity};

const DAY: i64 = 86_400;

/// The period `within` `unit` in seconds, or RabbitMQ's 400 reason.
pub fn period_seconds(within: &str, unit: &str) -> Result<i64, ApiError> {
    let within: i64 = within
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid expiration value."))?;
    let unit_seconds = match unit.to_lowercase().as_str() {
        "days" => DAY,
        "weeks" => 7 * DAY,
        "months" => 365 * DAY / 12,
        "years" => 365 * DAY,
        _ => {
            return Err(ApiError::bad_request(
                "Time unit not recognised. Supported units: days, weeks, months, years.",
            ))
        }
    };
    Ok(within.saturating_mul(unit_seconds))
}

/// The TLS listeners that fail the check at `now` (Unix seconds) for a period of `seconds`, in
/// RabbitMQ's shape; empty when all pass.
pub fn expiring_listeners(
    node: &str,
    listeners: &[ListenerView],
    now: i64,
    seconds: i64,
) -> Vec<Value> {
    let deadline = now.saturating_add(seconds);
    listeners
        .iter()
        .filter_map(|l| {
            let files = l.certificates.as_ref()?;
            let check = |path: &std::path::Path| {
                expiring_before(certificate_end_dates(path, now), deadline)
            };
            let cert = check(&files.cert);
            let ca = files.ca.as_deref().map(check).unwrap_or(Ok(Vec::new()));
            if matches!((&cert, &ca), (Ok(c), Ok(a)) if c.is_empty() && a.is_empty()) {
                return None;
            }
            Some(json!({
                "node": node,
                "protocol": l.protocol,
                "interface": l.ip_address,
                "port": l.port,
                "certfile": files.cert.display().to_string(),
                "cacertfile": files.ca.as_ref().map(|p| p.display().to_string()),
                "certfile_expires_on": expires_on(cert),
                "cacertfile_expires_on": expires_on(ca),
            }))
        })
        .collect()
}

/// A file's failing sections: dates as RabbitMQ writes them, errors as `{"error": reason}`.
fn expires_on(sections: Result<Vec<SectionValidity>, String>) -> Value {
    match sections {
        Err(reason) => json!({ "error": reason }),
        Ok(sections) => sections
            .into_iter()
            .map(|s| match s {
                Ok(end) => json!(format_expiry_date(end)),
                Err(reason) => json!({ "error": reason }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_units_as_rabbitmq_counts_them() {
        assert_eq!(period_seconds("2", "days").unwrap(), 2 * DAY);
        assert_eq!(period_seconds("1", "WEEKS").unwrap(), 7 * DAY);
        assert_eq!(period_seconds("12", "months").unwrap(), 365 * DAY);
        assert_eq!(period_seconds("-1", "years").unwrap(), -365 * DAY);
        let reason = |r: Result<i64, ApiError>| match r {
            Err(ApiError::BadRequest(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(period_seconds("x", "days")),
            "Invalid expiration value."
        );
        assert!(reason(period_seconds("1", "fortnights")).starts_with("Time unit not recognised"));
    }

    #[test]
    fn listeners_without_tls_never_fail() {
        let plain = ListenerView::plain("amqp", "127.0.0.1:5672".parse().unwrap());
        assert!(expiring_listeners("rabbit@x", &[plain], 0, i64::MAX).is_empty());
    }
}
