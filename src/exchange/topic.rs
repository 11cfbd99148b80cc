//! Topic matching: words separated by `.`, `*` matches one word, `#` matches zero or more.

/// A binding key split into words once, at bind time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    words: Vec<String>,
}

impl TopicPattern {
    /// Splits `binding_key` into words (see [`words`]).
    pub fn new(binding_key: &str) -> Self {
        TopicPattern {
            words: words(binding_key).map(str::to_owned).collect(),
        }
    }

    /// Whether `routing_key` matches. Dynamic programming over (pattern word, key word), so a
    /// pattern full of `#` costs O(pattern × key), never exponential backtracking.
    pub fn matches(&self, routing_key: &str) -> bool {
        let key: Vec<&str> = words(routing_key).collect();
        // reach[j]: the pattern prefix seen so far can consume exactly the first j key words.
        let mut reach = vec![false; key.len() + 1];
        reach[0] = true;
        for word in &self.words {
            let mut next = vec![false; key.len() + 1];
            match word.as_str() {
                "#" => {
                    let mut any = false;
                    for j in 0..=key.len() {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                "*" => {
                    next[1..].copy_from_slice(&reach[..key.len()]);
                }
                literal => {
                    for j in 0..key.len() {
                        next[j + 1] = reach[j] && key[j] == literal;
                    }
                }
            }
            if !next.iter().any(|r| *r) {
                return false;
            }
            reach = next;
        }
        reach[key.len()]
    }
}

/// The words of a key. An empty key has no words at all, so `*` does not match it and `#` does
/// (RabbitMQ's `split_topic_key(<<>>) -> []`; confirmed with pika against RabbitMQ 3.10.8).
/// Any other key splits at every dot, so `a.` is the two words `a` and ``.
pub(crate) fn words(key: &str) -> impl Iterator<Item = &str> {
    let parts = (!key.is_empty()).then(|| key.split('.'));
    parts.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::TopicPattern;

    fn m(pattern: &str, key: &str) -> bool {
        TopicPattern::new(pattern).matches(key)
    }

    #[test]
    fn rabbitmq_tutorial_examples() {
        assert!(m("*.orange.*", "quick.orange.rabbit"));
        assert!(m("*.*.rabbit", "lazy.orange.rabbit"));
        assert!(m("lazy.#", "lazy.brown.fox"));
        assert!(m("lazy.#", "lazy"));
        assert!(!m("*.orange.*", "quick.orange.male.rabbit"));
        assert!(!m("*.*.rabbit", "quick.brown.fox"));
        assert!(!m("*.orange.*", "orange"));
    }

    #[test]
    fn hash_and_empty_words() {
        assert!(m("#", ""));
        assert!(m("#", "a.b.c"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("a.#.b", "a.b"));
        assert!(m("a.#.b", "a.x.y.b"));
        assert!(!m("a.#.b", "a.x.y.c"));
        assert!(!m("*", ""), "an empty routing key has no words");
        assert!(!m("#.*", ""));
        assert!(m("*", "a"));
        assert!(m("*.", "a."));
        assert!(!m("", "."));
        assert!(m("a..b", "a..b"));
        assert!(m("a.*.b", "a..b"));
        assert!(m("#.#", "x"));
    }

    #[test]
    fn many_hashes_are_not_exponential() {
        let pattern = vec!["#"; 200].join(".") + ".z";
        let key = vec!["a"; 200].join(".");
        assert!(!m(&pattern, &key));
    }
}
