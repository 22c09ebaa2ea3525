//! Reading one proxy's admin `/metrics` page (Prometheus text exposition,
//! or OpenMetrics as `prometheus-client` writes it) into what it observed
//! of each destination service and subset as a caller: requests, failed
//! requests and the latency histogram, all cumulative since the proxy
//! started.
//!
//! Every line must be well-formed, so a page of garbage (an HTML error
//! page, a truncated body) is an error rather than an empty reading. Only
//! the outbound series of two families are kept:
//!
//! - [`REQUESTS_METRIC`]`{direction="outbound",service,subset,class}`: one
//!   counter per status class; `class="5xx"` are the errors (the proxy
//!   records requests it could not forward, timeouts and refused
//!   connections, as the 5xx status it answered with).
//! - [`LATENCY_METRIC`]`_bucket{direction="outbound",service,subset,le}`:
//!   time to response headers, in seconds.

use std::collections::{BTreeMap, BTreeSet};

use super::histogram::{Bucket, Histogram, HistogramError};

/// Requests by status class, a counter family.
pub const REQUESTS_METRIC: &str = "gitmesh_requests_total";
/// Latency histogram family (seconds); its buckets are `…_bucket`.
pub const LATENCY_METRIC: &str = "gitmesh_request_duration_seconds";
const LATENCY_BUCKET: &str = "gitmesh_request_duration_seconds_bucket";
const ERROR_CLASS: &str = "5xx";
const OUTBOUND: &str = "outbound";

/// A destination as the callers see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubsetKey {
    pub service: String,
    /// Empty for traffic not split by subset.
    pub subset: String,
}

/// What callers observed of one subset, cumulative; also the increase over
/// a window, or the sum over several proxies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    /// Requests answered with a 5xx status (or failed: the proxy records
    /// those as the 5xx it answered with).
    pub errors: u64,
    /// `None` when the page had no latency series for this subset.
    pub latency: Option<Histogram>,
}

/// One proxy's page: a [`Sample`] per destination subset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    samples: BTreeMap<SubsetKey, Sample>,
}

/// Why a page could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    #[error("line {line}: expected {expected}, found `{found}`")]
    Syntax {
        line: usize,
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: {metric} has no `{label}` label")]
    MissingLabel {
        line: usize,
        metric: &'static str,
        label: &'static str,
    },
    #[error("line {line}: {metric} value `{value}` is not a count (a whole number, at least 0)")]
    BadCount {
        line: usize,
        metric: &'static str,
        value: String,
    },
    #[error("line {line}: bucket bound le=\"{value}\" is not a number")]
    BadBound { line: usize, value: String },
    #[error("line {line}: the series {series} appears twice")]
    Duplicate { line: usize, series: String },
    #[error("latency histogram of {service}/{subset}: {problem}")]
    Histogram {
        service: String,
        subset: String,
        problem: HistogramError,
    },
}

impl Sample {
    /// Both sets of observations: the sum of two proxies' views.
    pub fn add(&self, other: &Sample) -> Result<Sample, HistogramError> {
        let latency = match (&self.latency, &other.latency) {
            (Some(a), Some(b)) => Some(a.add(b)?),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Ok(Sample {
            requests: self.requests.saturating_add(other.requests),
            errors: self.errors.saturating_add(other.errors),
            latency,
        })
    }

    /// A sample of the same shape that has counted nothing.
    pub fn zeroed(&self) -> Sample {
        Sample {
            requests: 0,
            errors: 0,
            latency: self.latency.as_ref().map(Histogram::zeroed),
        }
    }

    /// What was observed since `start` (`self` is the later reading of the
    /// same proxy). `None` when a counter went down: the proxy restarted
    /// in between, and the difference means nothing. The latency is `None`
    /// when either reading lacks it.
    pub fn since(&self, start: &Sample) -> Option<Sample> {
        let requests = self.requests.checked_sub(start.requests)?;
        let errors = self.errors.checked_sub(start.errors)?;
        if errors > requests {
            return None;
        }
        let latency = match (&self.latency, &start.latency) {
            (Some(end), Some(start)) => Some(end.since(start)?),
            _ => None,
        };
        Some(Sample {
            requests,
            errors,
            latency,
        })
    }
}

impl Scrape {
    /// Reads a whole page.
    pub fn parse(text: &str) -> Result<Scrape, ScrapeError> {
        let mut partial: BTreeMap<SubsetKey, Partial> = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            if let Some(comment) = raw.strip_prefix('#') {
                if comment.trim() == "EOF" {
                    break;
                }
                continue;
            }
            let series = parse_line(raw).map_err(|(expected, found)| ScrapeError::Syntax {
                line,
                expected,
                found,
            })?;
            series.interpret(line, &mut partial)?;
        }
        let mut samples = BTreeMap::new();
        for (key, p) in partial {
            let latency = if p.buckets.is_empty() {
                None
            } else {
                Some(Histogram::from_buckets(p.buckets).map_err(|problem| {
                    ScrapeError::Histogram {
                        service: key.service.clone(),
                        subset: key.subset.clone(),
                        problem,
                    }
                })?)
            };
            let sample = Sample {
                requests: p.requests,
                errors: p.errors,
                latency,
            };
            samples.insert(key, sample);
        }
        Ok(Scrape { samples })
    }

    /// What this proxy observed of `service`'s `subset`, if it calls it.
    pub fn get(&self, service: &str, subset: &str) -> Option<&Sample> {
        self.samples.get(&SubsetKey {
            service: service.to_string(),
            subset: subset.to_string(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SubsetKey, &Sample)> {
        self.samples.iter()
    }

    /// Several proxies' pages summed subset by subset.
    pub fn merge(&self, other: &Scrape) -> Result<Scrape, ScrapeError> {
        let mut samples = self.samples.clone();
        for (key, sample) in &other.samples {
            let merged = match samples.get(key) {
                Some(mine) => mine.add(sample).map_err(|problem| ScrapeError::Histogram {
                    service: key.service.clone(),
                    subset: key.subset.clone(),
                    problem,
                })?,
                None => sample.clone(),
            };
            samples.insert(key.clone(), merged);
        }
        Ok(Scrape { samples })
    }
}

/// A subset's series as they are read, before the histogram is checked.
#[derive(Default)]
struct Partial {
    requests: u64,
    errors: u64,
    classes: BTreeSet<String>,
    buckets: Vec<Bucket>,
}

/// One sample line: `name{label="value",…} value [timestamp] [# exemplar]`.
struct Series<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: &'a str,
}

impl Series<'_> {
    fn label(
        &self,
        line: usize,
        metric: &'static str,
        name: &'static str,
    ) -> Result<&str, ScrapeError> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(ScrapeError::MissingLabel {
                line,
                metric,
                label: name,
            })
    }

    fn count(&self, line: usize, metric: &'static str) -> Result<u64, ScrapeError> {
        let bad = || ScrapeError::BadCount {
            line,
            metric,
            value: self.value.to_string(),
        };
        let v: f64 = self.value.parse().map_err(|_| bad())?;
        // Counts are whole numbers below 2^53 (where f64 stops being exact).
        if !(0.0..9_007_199_254_740_992.0).contains(&v) || v.fract() != 0.0 {
            return Err(bad());
        }
        Ok(v as u64)
    }

    fn key(&self, line: usize, metric: &'static str) -> Result<SubsetKey, ScrapeError> {
        Ok(SubsetKey {
            service: self.label(line, metric, "service")?.to_string(),
            subset: self.label(line, metric, "subset")?.to_string(),
        })
    }

    fn interpret(
        &self,
        line: usize,
        partial: &mut BTreeMap<SubsetKey, Partial>,
    ) -> Result<(), ScrapeError> {
        match self.name {
            REQUESTS_METRIC => {
                let metric = REQUESTS_METRIC;
                if self.label(line, metric, "direction")? != OUTBOUND {
                    return Ok(());
                }
                let key = self.key(line, metric)?;
                let class = self.label(line, metric, "class")?.to_string();
                let count = self.count(line, metric)?;
                let entry = partial.entry(key.clone()).or_default();
                if !entry.classes.insert(class.clone()) {
                    return Err(ScrapeError::Duplicate {
                        line,
                        series: format!(
                            "{metric}{{service=\"{}\",subset=\"{}\",class=\"{class}\"}}",
                            key.service, key.subset
                        ),
                    });
                }
                entry.requests = entry.requests.saturating_add(count);
                if class == ERROR_CLASS {
                    entry.errors = entry.errors.saturating_add(count);
                }
            }
            LATENCY_BUCKET => {
                let metric = LATENCY_BUCKET;
                if self.label(line, metric, "direction")? != OUTBOUND {
                    return Ok(());
                }
                let key = self.key(line, metric)?;
                let le_text = self.label(line, metric, "le")?;
                let le: f64 = match le_text.parse() {
                    Ok(v) if !f64::is_nan(v) => v,
                    _ => {
                        return Err(ScrapeError::BadBound {
                            line,
                            value: le_text.to_string(),
                        });
                    }
                };
                let count = self.count(line, metric)?;
                let entry = partial.entry(key.clone()).or_default();
                if entry.buckets.iter().any(|b| b.le == le) {
                    return Err(ScrapeError::Duplicate {
                        line,
                        series: format!(
                            "{metric}{{service=\"{}\",subset=\"{}\",le=\"{le_text}\"}}",
                            key.service, key.subset
                        ),
                    });
                }
                entry.buckets.push(Bucket { le, count });
            }
            _ => {}
        }
        Ok(())
    }
}

type SyntaxError = (&'static str, String);

/// Parses a non-comment line of the exposition format.
fn parse_line(line: &str) -> Result<Series<'_>, SyntaxError> {
    let mut c = Cursor { rest: line };
    let name = c.name().ok_or_else(|| ("a metric name", c.peek_token()))?;
    let mut spaced = c.skip_blanks();
    let mut labels = Vec::new();
    if c.eat('{') {
        loop {
            c.skip_blanks();
            if c.eat('}') {
                break;
            }
            let label = c
                .name()
                .ok_or_else(|| ("a label name or `}`", c.peek_token()))?;
            c.skip_blanks();
            if !c.eat('=') {
                return Err(("`=` after a label name", c.peek_token()));
            }
            c.skip_blanks();
            let value = c.quoted()?;
            if labels.iter().any(|(k, _)| *k == label) {
                return Err(("each label once", label.to_string()));
            }
            labels.push((label, value));
            c.skip_blanks();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(("`,` or `}` after a label value", c.peek_token()));
        }
        spaced = c.skip_blanks();
    }
    if !spaced {
        return Err(("a space before the value", c.peek_token()));
    }
    let value = c.token();
    if value.is_empty() {
        return Err(("a value", String::new()));
    }
    if value.parse::<f64>().is_err() {
        return Err(("a number", value.to_string()));
    }
    c.skip_blanks();
    if !c.rest.is_empty() && !c.rest.starts_with('#') {
        let timestamp = c.token();
        if timestamp.parse::<f64>().is_err() {
            return Err(("a timestamp or the end of the line", timestamp.to_string()));
        }
        c.skip_blanks();
    }
    // OpenMetrics exemplars (`# {trace_id="…"} 1.0`) are not used.
    if !c.rest.is_empty() && !c.rest.starts_with('#') {
        return Err(("the end of the line", c.peek_token()));
    }
    Ok(Series {
        name,
        labels,
        value,
    })
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, ch: char) -> bool {
        match self.rest.strip_prefix(ch) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Skips spaces and tabs; tells whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let trimmed = self.rest.trim_start_matches([' ', '\t']);
        let skipped = trimmed.len() != self.rest.len();
        self.rest = trimmed;
        skipped
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn name(&mut self) -> Option<&'a str> {
        let len = self
            .rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
            .count();
        if len == 0 || self.rest.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        let (name, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(name)
    }

    /// A double-quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, SyntaxError> {
        if !self.eat('"') {
            return Err(("`\"` opening a label value", self.peek_token()));
        }
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => {
                        return Err(("an escape `\\\\`, `\\\"` or `\\n`", format!("\\{other}")));
                    }
                    None => break,
                },
                other => out.push(other),
            }
        }
        Err(("`\"` closing a label value", "end of line".to_string()))
    }

    /// Up to the next blank.
    fn token(&mut self) -> &'a str {
        let end = self.rest.find([' ', '\t']).unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// The next few characters, for error messages.
    fn peek_token(&self) -> String {
        if self.rest.is_empty() {
            return "end of line".to_string();
        }
        self.rest.chars().take(20).collect()
    }
}

#[cfg(test)]
mod tests;
