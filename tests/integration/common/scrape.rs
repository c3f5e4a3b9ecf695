//! A small reader of the Prometheus text format (after linkerd's `MetricMatch`):
//! enough to assert exact values of named series in a live `/metrics` scrape.

use std::collections::BTreeMap;

/// One scrape: series text (`name{label="v",…}` with labels sorted) → value.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            series.insert(normalise(key), value);
        }
        Scrape { series }
    }

    /// The value of `name` with exactly these labels (order-insensitive); 0 when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// Whether a series `name` (any labels) exists.
    pub fn has(&self, name: &str) -> bool {
        self.series
            .keys()
            .any(|k| k == name || k.starts_with(&format!("{name}{{")))
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn normalise(series: &str) -> String {
    match series.split_once('{') {
        None => series.to_owned(),
        Some((name, labels)) => {
            let labels = labels.trim_end_matches('}');
            let mut parts: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
            parts.sort();
            format!("{name}{{{}}}", parts.join(","))
        }
    }
}
