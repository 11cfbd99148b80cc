//! The topic exchange's routing index: binding keys in a trie of words, so routing a message
//! costs about the length of its key, not the number of bindings (nats-server's sublist is the
//! model). `TopicPattern` stays the reference matcher the tests compare this one with.

use super::topic::words;
use std::collections::{HashMap, HashSet};

/// Binding keys → values (destinations), each with the id of its binding.
pub struct TopicTrie<T> {
    root: Node<T>,
}

struct Node<T> {
    literal: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    /// Bindings whose key ends here.
    here: Vec<(u64, T)>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            hash: None,
            here: Vec::new(),
        }
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
        }
    }
}

impl<T: Clone> TopicTrie<T> {
    /// Adds binding `id` with key `pattern`.
    pub fn insert(&mut self, pattern: &str, id: u64, value: T) {
        let mut node = &mut self.root;
        for word in words(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                literal => node.literal.entry(literal.into()).or_default(),
            };
        }
        node.here.push((id, value));
    }

    /// Removes binding `id` with key `pattern` (empty branches are pruned).
    pub fn remove(&mut self, pattern: &str, id: u64) {
        let path: Vec<&str> = words(pattern).collect();
        remove_at(&mut self.root, &path, id);
    }

    /// Adds the values of every binding whose key matches `routing_key` to `out` (a binding
    /// reached along several paths is added once).
    pub fn matches(&self, routing_key: &str, out: &mut Vec<T>) {
        let key: Vec<&str> = words(routing_key).collect();
        let mut seen_nodes = HashSet::new();
        let mut found: Vec<(u64, T)> = Vec::new();
        walk(&self.root, &key, 0, &mut seen_nodes, &mut found);
        found.sort_by_key(|(id, _)| *id);
        found.dedup_by_key(|(id, _)| *id);
        out.extend(found.into_iter().map(|(_, v)| v));
    }
}

/// Visits `node` having consumed `i` key words. Each (node, i) is visited once, so patterns
/// full of `#` cost O(nodes × words), never exponential.
fn walk<T: Clone>(
    node: &Node<T>,
    key: &[&str],
    i: usize,
    seen: &mut HashSet<(*const Node<T>, usize)>,
    found: &mut Vec<(u64, T)>,
) {
    if !seen.insert((node as *const Node<T>, i)) {
        return;
    }
    if let Some(hash) = &node.hash {
        for k in i..=key.len() {
            walk(hash, key, k, seen, found);
        }
    }
    if i == key.len() {
        found.extend(node.here.iter().cloned());
        return;
    }
    if let Some(next) = node.literal.get(key[i]) {
        walk(next, key, i + 1, seen, found);
    }
    if let Some(star) = &node.star {
        walk(star, key, i + 1, seen, found);
    }
}

/// Removes `id` below `node` along `path`; returns whether `node` is now empty.
fn remove_at<T>(node: &mut Node<T>, path: &[&str], id: u64) -> bool {
    match path.split_first() {
        None => node.here.retain(|(x, _)| *x != id),
        Some((&"*", rest)) => {
            if node
                .star
                .as_deref_mut()
                .is_some_and(|n| remove_at(n, rest, id))
            {
                node.star = None;
            }
        }
        Some((&"#", rest)) => {
            if node
                .hash
                .as_deref_mut()
                .is_some_and(|n| remove_at(n, rest, id))
            {
                node.hash = None;
            }
        }
        Some((word, rest)) => {
            if node
                .literal
                .get_mut(*word)
                .is_some_and(|n| remove_at(n, rest, id))
            {
                node.literal.remove(*word);
            }
        }
    }
    node.here.is_empty() && node.literal.is_empty() && node.star.is_none() && node.hash.is_none()
}

#[cfg(test)]
mod tests {
    use super::super::topic::TopicPattern;
    use super::*;

    const PATTERNS: &[&str] = &[
        "", "#", "*", "a", "a.b", "a.*", "*.b", "a.#", "#.b", "a.#.b", "#.#", "*.*", "a.*.#",
        "#.*", "*.#.*", "a..b", "a.*.b", "#.a.#", "b.#", "a.b.c", "*.b.#",
    ];
    const KEYS: &[&str] = &[
        "", "a", "b", "a.b", "a.c", "a.b.c", "a.x.y.b", "x", "a..b", "b.a", "a.b.b", "x.a.y",
        "a.b.c.d",
    ];

    #[test]
    fn the_trie_matches_exactly_what_the_reference_matcher_does() {
        let mut trie = TopicTrie::default();
        for (id, p) in PATTERNS.iter().enumerate() {
            trie.insert(p, id as u64, id);
        }
        for key in KEYS {
            let mut got = Vec::new();
            trie.matches(key, &mut got);
            let want: Vec<usize> = PATTERNS
                .iter()
                .enumerate()
                .filter(|(_, p)| TopicPattern::new(p).matches(key))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(got, want, "routing key {key:?}");
        }
    }

    #[test]
    fn removal_prunes_and_keeps_the_others() {
        let mut trie = TopicTrie::default();
        trie.insert("a.*", 1, "one");
        trie.insert("a.*", 2, "two");
        trie.insert("a.#", 3, "three");
        trie.remove("a.*", 1);
        let mut got = Vec::new();
        trie.matches("a.x", &mut got);
        assert_eq!(got, vec!["two", "three"]);
        trie.remove("a.*", 2);
        trie.remove("a.#", 3);
        assert!(trie.root.literal.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn many_hashes_stay_cheap() {
        let mut trie = TopicTrie::default();
        trie.insert(&vec!["#"; 30].join("."), 1, ());
        let key = vec!["w"; 200].join(".");
        let mut got = Vec::new();
        trie.matches(&key, &mut got);
        assert_eq!(got.len(), 1);
    }
}
