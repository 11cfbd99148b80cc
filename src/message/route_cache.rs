//! The route of a channel's last publish, reused by the next publishes that name the same
//! exchange and routing key (a publisher usually repeats its pair): one shared [`Route`] per
//! run of publishes instead of two string copies per message.

use super::Route;
use std::sync::Arc;

/// A channel's route cache: the last route it published on.
#[derive(Default)]
pub struct RouteCache {
    last: Option<LastRoute>,
}

impl RouteCache {
    /// The shared route for a publish to `exchange` with `routing_key`: the last one when it
    /// is the same, else a fresh copy (which becomes the last one).
    #[inline]
    pub fn route_of(&mut self, exchange: &str, routing_key: &str) -> Arc<Route> {
        match &self.last {
            Some(last) if last.is(exchange, routing_key) => last.route.clone(),
            _ => {
                let route = Route::new(exchange, routing_key);
                self.last = Some(LastRoute::new(route.clone()));
                route
            }
        }
    }
}

/// A channel's last route, with its exchange and routing key copied into the channel itself
/// when they fit [`LAST_ROUTE_INLINE`] bytes together. The check per publish compares them with
/// inline code against that copy, not with `==` on `str`, which is a `memcmp` call: glibc's
/// AVX-512 `memcmp` compares short strings with two masked loads, and those two calls per
/// publish took ~6% of the broker's CPU in 1p/1c on the 2-vCPU VM (issue 16: the regression
/// after the shared route; BENCHMARKS.md, "1p/1c CPU per delivery after the memory round").
struct LastRoute {
    /// The exchange's bytes, then the routing key's (valid when `inline`).
    key: [u8; LAST_ROUTE_INLINE],
    exchange_len: usize,
    routing_key_len: usize,
    inline: bool,
    route: Arc<Route>,
}

/// Room for the last route's exchange and routing key in the channel (`amq.direct` + a
/// 38-byte key; longer pairs are compared with the route's own strings).
const LAST_ROUTE_INLINE: usize = 48;

impl LastRoute {
    fn new(route: Arc<Route>) -> LastRoute {
        let (exchange, routing_key) = (route.exchange.as_bytes(), route.routing_key.as_bytes());
        let mut key = [0; LAST_ROUTE_INLINE];
        let inline = exchange.len() + routing_key.len() <= LAST_ROUTE_INLINE;
        if inline {
            key[..exchange.len()].copy_from_slice(exchange);
            key[exchange.len()..exchange.len() + routing_key.len()].copy_from_slice(routing_key);
        }
        LastRoute {
            key,
            exchange_len: exchange.len(),
            routing_key_len: routing_key.len(),
            inline,
            route,
        }
    }

    fn is(&self, exchange: &str, routing_key: &str) -> bool {
        if exchange.len() != self.exchange_len || routing_key.len() != self.routing_key_len {
            return false;
        }
        if !self.inline {
            return self.route.is(exchange, routing_key);
        }
        let (e, r) = self.key.split_at(self.exchange_len);
        same_bytes(e, exchange.as_bytes())
            && same_bytes(&r[..self.routing_key_len], routing_key.as_bytes())
    }
}

/// `a == b` for two slices of the same length, eight bytes at a time, without a `memcmp` call.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut a8 = a.chunks_exact(8);
    let mut b8 = b.chunks_exact(8);
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    for (x, y) in (&mut a8).zip(&mut b8) {
        if word(x) != word(y) {
            return false;
        }
    }
    let (ta, tb) = (a8.remainder(), b8.remainder());
    ta.len() == tb.len() && ta.iter().zip(tb).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_route_matches_only_its_own_pair() {
        for (exchange, key) in [
            ("", "perf"),
            ("amq.direct", "a.routing.key.of.twenty"),
            ("", ""),
            ("x", &"k".repeat(200)),
        ] {
            let last = LastRoute::new(Route::new(exchange, key));
            assert_eq!(last.inline, exchange.len() + key.len() <= LAST_ROUTE_INLINE);
            assert!(last.is(exchange, key), "{exchange}/{key}");
            assert!(!last.is(exchange, &format!("{key}x")));
            assert!(!last.is("other", key));
            if let Some(last_char) = key.len().checked_sub(1) {
                let changed = format!("{}#", &key[..last_char]);
                assert!(!last.is(exchange, &changed), "last byte differs");
                let changed = format!("#{}", &key[1..]);
                assert!(!last.is(exchange, &changed), "first byte differs");
            }
        }
        // Same total length, split differently between exchange and key.
        let last = LastRoute::new(Route::new("ab", "cd"));
        assert!(!last.is("a", "bcd"));
        assert!(!last.is("abc", "d"));
    }

    #[test]
    fn the_cache_reuses_the_route_while_the_pair_repeats() {
        let mut cache = RouteCache::default();
        let first = cache.route_of("", "q");
        assert!(Arc::ptr_eq(&first, &cache.route_of("", "q")));
        let other = cache.route_of("", "r");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(
            (other.exchange.as_str(), other.routing_key.as_str()),
            ("", "r")
        );
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        let a: Vec<u8> = (0..40).collect();
        for len in 0..a.len() {
            assert!(same_bytes(&a[..len], &a[..len]));
            for i in 0..len {
                let mut b = a[..len].to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(&a[..len], &b), "len {len}, byte {i}");
            }
        }
    }
}
