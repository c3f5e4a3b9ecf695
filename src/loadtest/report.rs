//! A run's outcome, printed as one JSON object (`--json`, for scripts) or as an aligned
//! table (for people), plus the once-a-second progress line on stderr.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// `{"scenario", "target", "params", "results"}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `publish`, `fanout`, `idle`, `calls`, `soak` or `storm`.
    pub scenario: String,
    /// `switchboard` or `nchan`.
    pub target: String,
    /// The options the run used, defaults filled in.
    pub params: Value,
    /// The numbers (see docs/loadtest.md for each key).
    pub results: Value,
}

impl Report {
    /// The single-line JSON form.
    pub fn to_json(&self) -> String {
        // A Report holds only JSON values and strings: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The readable table: parameters, then results with nested objects flattened to
    /// dotted names; a list of objects (soak's intervals) becomes its own table.
    pub fn to_table(&self) -> String {
        let mut rows = Vec::new();
        let mut lists = Vec::new();
        flatten("", &self.params, &mut rows, &mut lists);
        let params = rows.len();
        flatten("", &self.results, &mut rows, &mut lists);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("loadtest {} against {}\n", self.scenario, self.target);
        for (i, (key, value)) in rows.iter().enumerate() {
            if i == 0 {
                out.push_str("parameters\n");
            }
            if i == params {
                out.push_str("results\n");
            }
            let _ = writeln!(out, "  {key:<width$}  {value:>14}");
        }
        for (name, items) in lists {
            out.push_str(&list_table(&name, &items));
        }
        out
    }
}

fn flatten(
    prefix: &str,
    value: &Value,
    rows: &mut Vec<(String, String)>,
    lists: &mut Vec<(String, Vec<Value>)>,
) {
    match value {
        Value::Object(map) if map.is_empty() && !prefix.is_empty() => {
            rows.push((prefix.to_owned(), "none".into()));
        }
        Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, rows, lists);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            lists.push((prefix.to_owned(), items.clone()));
        }
        other => rows.push((prefix.to_owned(), cell(other))),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn list_table(name: &str, items: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[c.as_str()])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!("{name}\n");
    let line = |fields: Vec<&str>| {
        let mut s = String::from(" ");
        for (f, w) in fields.iter().zip(&widths) {
            let _ = write!(s, "  {f:>w$}");
        }
        s.push('\n');
        s
    };
    out.push_str(&line(columns.iter().map(String::as_str).collect()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Writes a progress line to stderr about once a second (overwritten with `\r`).
pub struct Progress {
    label: &'static str,
    start: Instant,
    last: Instant,
}

impl Progress {
    /// Starts the clock for `label`.
    pub fn new(label: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            label,
            start: now,
            last: now,
        }
    }

    /// Prints `text` if a second has passed since the last line.
    pub fn tick(&mut self, text: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            eprint!(
                "\r[{}] {:>6.1}s  {}    ",
                self.label,
                self.start.elapsed().as_secs_f64(),
                text()
            );
        }
    }

    /// Awaits `work`, printing `text()` as [`Progress::tick`] does meanwhile.
    pub async fn during<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        mut text: impl FnMut() -> String,
    ) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep(Duration::from_millis(200)) => self.tick(&mut text),
            }
        }
    }

    /// Ends the line if one was printed.
    pub fn finish(&self) {
        if self.last != self.start {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_flattens_and_aligns() {
        let report = Report {
            scenario: "soak".into(),
            target: "switchboard".into(),
            params: json!({"duration": 3}),
            results: json!({
                "published": 10,
                "latency_ms": {"p50": 1.5, "max": null},
                "intervals": [{"t_secs": 1, "lost": 0}, {"t_secs": 2, "lost": 3}]
            }),
        };
        let table = report.to_table();
        assert!(table.contains("latency_ms.p50"), "{table}");
        assert!(table.contains("1.500"), "{table}");
        assert!(table.contains("intervals\n"), "{table}");
        assert!(table.lines().any(|l| l.trim() == "t_secs  lost"), "{table}");
        let json: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["results"]["published"], 10);
    }
}
