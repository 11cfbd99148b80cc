//! RabbitMQ's `vm_memory_high_watermark`: a fraction of the memory available to the process
//! (`0.4`, the default) or an absolute amount (`1GB`, `512MiB`, `1073741824`), where "available"
//! is the machine's RAM or, inside a container, the cgroup's memory limit if lower.

use std::fmt;

/// RabbitMQ's default: 40% of the available memory.
pub const DEFAULT_RELATIVE: f64 = 0.4;

/// Used when neither /proc/meminfo nor a cgroup limit can be read.
const FALLBACK_TOTAL: u64 = 1 << 30;

/// The watermark as the operator wrote it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Watermark {
    /// A fraction of the available memory (0.0 blocks every publisher, as in RabbitMQ).
    Relative(f64),
    /// Bytes.
    Absolute(u64),
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark::Relative(DEFAULT_RELATIVE)
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watermark::Relative(r) => write!(f, "{r} of available memory"),
            Watermark::Absolute(b) => write!(f, "{b} bytes"),
        }
    }
}

impl Watermark {
    /// Parses `0.4`, `1`, `1073741824`, `1GB`, `512MiB`, `2G`, `800kB`… A plain number up to 1
    /// is a fraction; a larger plain integer is bytes; units are RabbitMQ's (`k`/`KiB` = 1024,
    /// `kB`/`KB` = 1000, and so on for M, G, T).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        if number.is_empty() {
            return Err(format!("'{text}' is not a number"));
        }
        if unit.is_empty() {
            let value: f64 = number
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?;
            if value <= 1.0 {
                return Ok(Watermark::Relative(value));
            }
            return match number.parse::<u64>() {
                Ok(bytes) => Ok(Watermark::Absolute(bytes)),
                Err(_) => Err(format!(
                    "'{text}': a fraction must be between 0 and 1 (e.g. 0.4); an amount is \
                     whole bytes or has a unit (e.g. 1GB, 512MiB)"
                )),
            };
        }
        let multiplier: u64 = match unit {
            "B" => 1,
            "k" | "K" | "KiB" | "kiB" => 1 << 10,
            "kB" | "KB" => 1_000,
            "M" | "MiB" => 1 << 20,
            "MB" => 1_000_000,
            "G" | "GiB" => 1 << 30,
            "GB" => 1_000_000_000,
            "T" | "TiB" => 1 << 40,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "'{text}': unknown unit '{other}' (use B, kB, MB, GB, TB for powers of 1000 \
                     or KiB, MiB, GiB, TiB for powers of 1024)"
                ))
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a number"))?;
        Ok(Watermark::Absolute((value * multiplier as f64) as u64))
    }

    /// The watermark in bytes, given the memory available to the process.
    pub fn bytes(self, available: u64) -> u64 {
        match self {
            Watermark::Relative(r) => (available as f64 * r) as u64,
            Watermark::Absolute(b) => b,
        }
    }
}

/// The memory available to this process: the machine's RAM, or the cgroup limit (v2
/// `memory.max`, v1 `memory.limit_in_bytes`) when one is set and lower, as RabbitMQ reads it
/// inside containers.
pub fn available_memory() -> u64 {
    let ram = read_meminfo_total();
    let cgroup = read_cgroup_limit();
    match (ram, cgroup) {
        (Some(r), Some(c)) => r.min(c),
        (Some(r), None) => r,
        (None, Some(c)) => c,
        (None, None) => FALLBACK_TOTAL,
    }
}

fn read_meminfo_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&meminfo)
}

fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn read_cgroup_limit() -> Option<u64> {
    const FILES: [&str; 2] = [
        "/sys/fs/cgroup/memory.max",                   // cgroup v2
        "/sys/fs/cgroup/memory/memory.limit_in_bytes", // cgroup v1
    ];
    FILES
        .iter()
        .find_map(|f| parse_cgroup_limit(&std::fs::read_to_string(f).ok()?))
}

/// `max` (v2) and v1's "no limit" (a page-rounded i64::MAX) mean no limit.
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let limit = text.trim().parse::<u64>().ok()?;
    (limit < (1 << 62)).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_forms() {
        assert_eq!(Watermark::parse("0.4"), Ok(Watermark::Relative(0.4)));
        assert_eq!(Watermark::parse("1"), Ok(Watermark::Relative(1.0)));
        assert_eq!(Watermark::parse("0"), Ok(Watermark::Relative(0.0)));
        assert_eq!(
            Watermark::parse("1073741824"),
            Ok(Watermark::Absolute(1 << 30))
        );
        assert_eq!(
            Watermark::parse("1GB"),
            Ok(Watermark::Absolute(1_000_000_000))
        );
        assert_eq!(
            Watermark::parse("512MiB"),
            Ok(Watermark::Absolute(512 << 20))
        );
        assert_eq!(Watermark::parse("2G"), Ok(Watermark::Absolute(2 << 30)));
        assert_eq!(Watermark::parse("800kB"), Ok(Watermark::Absolute(800_000)));
        assert!(Watermark::parse("1.5").is_err());
        assert!(Watermark::parse("12 parsecs").is_err());
        assert!(Watermark::parse("GB").is_err());
    }

    #[test]
    fn bytes_of_a_fraction() {
        assert_eq!(Watermark::Relative(0.4).bytes(1000), 400);
        assert_eq!(Watermark::Absolute(7).bytes(1000), 7);
    }

    #[test]
    fn cgroup_limits() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 << 20));
        assert_eq!(
            parse_meminfo_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16384 * 1024)
        );
    }
}
