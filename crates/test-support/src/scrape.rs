//! Reading a service's `/metrics` as Prometheus does: the text format
//! (version 0.0.4) parsed into samples, so tests compare numbers before and
//! after something happened.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::DEADLINE;

/// One sample line: a name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    /// `# TYPE` of each metric family.
    pub types: HashMap<String, String>,
}

impl Metrics {
    /// The sum of the samples named `name` whose labels include `labels`;
    /// `None` when there is none.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            if labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                found = Some(found.unwrap_or(0.0) + s.value);
            }
        }
        found
    }

    /// Like [`Metrics::get`], 0 when absent (a counter not yet touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The `# TYPE` of a family.
    pub fn type_of(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }
}

/// Parses the text format; an error names the line that is not in it.
pub fn parse(text: &str) -> Result<Metrics, String> {
    let mut metrics = Metrics::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("TYPE") => {
                    let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                        return Err(bad("a TYPE line needs a name and a type"));
                    };
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(bad("unknown type"));
                    }
                    metrics.types.insert(family.to_owned(), kind.to_owned());
                }
                Some("HELP") if words.next().is_none() => {
                    return Err(bad("a HELP line needs a name"));
                }
                _ => {}
            }
            continue;
        }
        metrics.samples.push(sample(line).map_err(|why| bad(&why))?);
    }
    Ok(metrics)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err("no metric name".to_owned());
    }
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let close;
        loop {
            // Skip separators, then read `name="value"` or the closing brace.
            while chars.peek().is_some_and(|&(_, c)| c == ',' || c == ' ') {
                chars.next();
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unclosed label set".to_owned());
            };
            if c == '}' {
                close = start;
                break;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if !is_name_char(c, key.is_empty()) {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if key.is_empty() || chars.next().map(|(_, c)| c) != Some('=') {
                return Err("a label needs name=\"value\"".to_owned());
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("a label value must be quoted".to_owned());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        _ => return Err("bad escape in a label value".to_owned()),
                    },
                    Some(c) => value.push(c),
                    None => return Err("unterminated label value".to_owned()),
                }
            }
            if labels.insert(key, value).is_some() {
                return Err("a label given twice".to_owned());
            }
        }
        rest = &inner[close + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some("NaN") => f64::NAN,
        Some(v) => v.parse().map_err(|_| format!("bad value {v:?}"))?,
        None => return Err("no value".to_owned()),
    };
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {ts:?}"));
    }
    if fields.next().is_some() {
        return Err("trailing fields".to_owned());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Scrapes `url`, checking the answer is the text format; panics (failing
/// the test) otherwise.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Metrics {
    let resp = client.get(url).send().await.expect("scrape sent");
    assert_eq!(resp.status(), 200, "GET {url}");
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4", "GET {url}");
    let text = resp.text().await.expect("scrape read");
    parse(&text).unwrap_or_else(|e| panic!("GET {url}: {e}\n{text}"))
}

/// Scrapes `url` until `done` holds for what it shows, failing the test
/// after [`DEADLINE`]; returns the last scrape.
pub async fn scrape_until(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let until = Instant::now() + DEADLINE;
    loop {
        let metrics = scrape(client, url).await;
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < until,
            "{url} did not get there in {DEADLINE:?}: {metrics:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_types() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\n\
                    a_total{kind=\"x\",why=\"say \\\"hi\\\"\\n\"} 3\n\
                    a_total{kind=\"y\"} 4 1700000000000\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n";
        let m = parse(text).expect("parses");
        assert_eq!(m.type_of("a_total"), Some("counter"));
        assert_eq!(m.value("a_total", &[]), 7.0);
        assert_eq!(m.get("a_total", &[("why", "say \"hi\"\n")]), Some(3.0));
        assert_eq!(m.get("h_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(m.get("h_sum", &[]), Some(1.5));
        assert_eq!(m.get("missing", &[]), None);
    }

    #[test]
    fn rejects_what_is_not_the_format() {
        for bad in [
            "a{b=\"c\" 1",
            "a{b=c} 1",
            "a 1 2 3",
            "a one",
            "{b=\"c\"} 1",
            "# TYPE a meter",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
