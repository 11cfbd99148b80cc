//! Writes metric families in the Prometheus text format (0.0.4), one family at a time so that
//! a scrape of 10,000 queues never holds more than one family's samples. Counters, gauges and
//! histograms go through the `prometheus` crate's encoder; it has no `untyped` type and
//! refuses families without samples, which RabbitMQ emits (`rabbitmq_identity_info` is
//! untyped; a per-object family with no objects is its HELP and TYPE lines), so those two
//! cases are written here with the same escaping.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;
use std::fmt::Write as _;

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
}

/// Labels of one sample.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

/// The text of a scrape, built family by family.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// The text so far.
    pub fn finish(self) -> String {
        self.out
    }

    /// A counter, gauge or untyped family with its samples (none: HELP and TYPE only).
    pub fn family<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let metrics: Vec<Metric> = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut m = Metric::from_label(label_pairs(labels));
                match kind {
                    Kind::Counter => {
                        let mut c = Counter::default();
                        c.set_value(value);
                        m.set_counter(c);
                    }
                    Kind::Gauge | Kind::Untyped => {
                        let mut g = Gauge::default();
                        g.set_value(value);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect();
        if metrics.is_empty() || kind == Kind::Untyped {
            self.by_hand(name, help, kind, &metrics);
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(match kind {
            Kind::Counter => MetricType::COUNTER,
            _ => MetricType::GAUGE,
        });
        family.set_metric(metrics);
        self.encode(&family);
    }

    /// A histogram family: one sample set per label set, with per-bucket (not cumulative)
    /// counts for the upper bounds `bounds` and a last, unbounded bucket.
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        samples: impl IntoIterator<Item = (Labels<'a>, Vec<u64>, f64)>,
    ) {
        let metrics: Vec<Metric> = samples
            .into_iter()
            .map(|(labels, counts, sum)| {
                let mut cumulative = 0;
                let buckets = bounds
                    .iter()
                    .zip(&counts)
                    .map(|(bound, n)| {
                        cumulative += n;
                        let mut b = Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect();
                let mut h = Histogram::default();
                h.set_bucket(buckets);
                h.set_sample_count(counts.iter().sum());
                h.set_sample_sum(sum);
                let mut m = Metric::from_label(label_pairs(labels));
                m.set_histogram(h);
                m
            })
            .collect();
        if metrics.is_empty() {
            let _ = writeln!(self.out, "# HELP {name} {}", escape(help, false));
            let _ = writeln!(self.out, "# TYPE {name} histogram");
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        self.encode(&family);
    }

    fn encode(&mut self, family: &MetricFamily) {
        // Only a family without samples or name is refused, and neither comes here.
        if let Err(e) = TextEncoder::new().encode_utf8(std::slice::from_ref(family), &mut self.out)
        {
            tracing::warn!(error = %e, family = family.name(), "cannot encode a metric family");
        }
    }

    fn by_hand(&mut self, name: &str, help: &str, kind: Kind, metrics: &[Metric]) {
        let type_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.out, "# TYPE {name} {type_name}");
        for m in metrics {
            self.out.push_str(name);
            let labels = m.get_label();
            if !labels.is_empty() {
                self.out.push('{');
                for (i, l) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{}=\"{}\"", l.name(), escape(l.value(), true));
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {}", m.get_gauge().get_value());
        }
    }
}

fn label_pairs(labels: Labels<'_>) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

/// The text format's escaping: `\` and newline, and `"` in label values.
fn escape(text: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    let needs_escaping = text.contains(['\\', '\n']) || (quotes && text.contains('"'));
    if !needs_escaping {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_in_the_text_format() {
        let mut w = Writer::default();
        w.family(
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            Kind::Gauge,
            [(&[("vhost", "/"), ("queue", "a\"b")][..], 3.0)],
        );
        w.family("rabbitmq_empty_total", "none yet", Kind::Counter, []);
        w.family(
            "rabbitmq_identity_info",
            "RabbitMQ node & cluster identity info",
            Kind::Untyped,
            [(&[("rabbitmq_node", "warren@h")][..], 1.0)],
        );
        w.histogram(
            "rabbitmq_message_size_bytes",
            "Size of messages received from publishers",
            &[100.0, 1000.0],
            [(&[("protocol", "amqp091")][..], vec![1, 2, 3], 5000.0)],
        );
        let text = w.finish();
        assert!(text.contains("rabbitmq_queue_messages{vhost=\"/\",queue=\"a\\\"b\"} 3\n"));
        assert!(text.contains(
            "# HELP rabbitmq_empty_total none yet\n# TYPE rabbitmq_empty_total counter\n"
        ));
        assert!(text.contains("# TYPE rabbitmq_identity_info untyped\nrabbitmq_identity_info{rabbitmq_node=\"warren@h\"} 1\n"));
        assert!(text
            .contains("rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1000\"} 3\n"));
        assert!(text
            .contains("rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"+Inf\"} 6\n"));
        assert!(text.contains("rabbitmq_message_size_bytes_count{protocol=\"amqp091\"} 6\n"));
    }
}
