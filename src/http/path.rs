//! Splitting the raw, still-encoded request path into decoded segments.
//!
//! RabbitMQ's paths carry names that may contain `/` (the vhost `/` is `%2F`), so the path is split on
//! the literal `/` first and each segment decoded afterwards; decoding first would merge segments.

/// The decoded segments after `/api/`, or `None` when the path is not under `/api` or a segment is
/// not valid percent-encoded UTF-8. A trailing slash is ignored (`/api/queues/` is `/api/queues`).
pub fn api_segments(raw_path: &str) -> Option<Vec<String>> {
    let rest = raw_path.strip_prefix("/api")?;
    if rest.is_empty() || rest == "/" {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/').map(|s| percent_decode(s, false)).collect()
}

/// Decodes `%XX` escapes; with `plus_is_space` (query strings), `+` is a space.
pub fn percent_decode(input: &str, plus_is_space: bool) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but RFC 3986's unreserved characters, as RabbitMQ encodes names in
/// `properties_key` and `Location` (`a.#` → `a.%23`).
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `a=1&b=x+y` into decoded pairs; undecodable pairs are dropped.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_slash_and_encoded_names_stay_one_segment() {
        assert_eq!(
            api_segments("/api/queues/%2F/q%2Fslash%23hash").unwrap(),
            vec!["queues", "/", "q/slash#hash"]
        );
        assert_eq!(
            api_segments("/api/exchanges/test%2fvh/amq.default/").unwrap(),
            vec!["exchanges", "test/vh", "amq.default"]
        );
        assert_eq!(api_segments("/api").unwrap(), Vec::<String>::new());
        assert_eq!(api_segments("/api/").unwrap(), Vec::<String>::new());
        assert!(api_segments("/apix/queues").is_none());
        assert!(api_segments("/other").is_none());
    }

    #[test]
    fn bad_escapes_and_invalid_utf8_are_rejected() {
        assert!(api_segments("/api/queues/%ZZ").is_none());
        assert!(api_segments("/api/queues/%2").is_none());
        assert!(api_segments("/api/queues/%FF%FE").is_none());
        assert_eq!(percent_decode("a+b%20c", false).unwrap(), "a+b c");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
    }

    #[test]
    fn encode_matches_rabbitmq_properties_keys() {
        assert_eq!(percent_encode("a.#"), "a.%23");
        assert_eq!(percent_encode("b.*"), "b.%2A");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("ab-c_d~"), "ab-c_d~");
    }

    #[test]
    fn query_pairs_decode_and_skip_garbage() {
        let pairs = query_pairs(Some("name=%5Eq&use_regex=true&&flag&bad=%ZZ"));
        assert_eq!(
            pairs,
            vec![
                ("name".to_string(), "^q".to_string()),
                ("use_regex".to_string(), "true".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }
}
