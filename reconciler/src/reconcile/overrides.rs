//! Per-change rollout settings, written as trailers of the source commit:
//!
//! ```text
//! Gitmesh-Waves: 1, 50%, 100%
//! Gitmesh-Min-Healthy-Time: 30s
//! Gitmesh-Progress-Deadline: 10m
//! ```
//!
//! They override the Mesh's `rollout` defaults for that commit only (a
//! risky change goes slower; a revert of a bad change can go at once with
//! `Gitmesh-Waves: 100%`). Pure: parsing and applying.

use gitmesh_proxy_config::Duration;

use crate::policy::{RolloutDefaults, Wave};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("trailer {key}: {reason}")]
pub struct BadOverride {
    pub key: String,
    pub reason: String,
}

/// The trailers of a commit message: `Key: value` lines of its last
/// paragraph (git's rule, simplified: every line must be a trailer).
fn trailers(message: &str) -> Vec<(String, String)> {
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or("");
    let parsed: Option<Vec<(String, String)>> = last
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (!k.is_empty() && !k.contains(' ')).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect();
    if message.trim_end().contains("\n\n") {
        parsed.unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// `defaults` with the commit's overrides applied.
pub fn apply(message: &str, defaults: &RolloutDefaults) -> Result<RolloutDefaults, BadOverride> {
    let mut out = defaults.clone();
    for (key, value) in trailers(message) {
        let bad = |reason: String| BadOverride {
            key: key.clone(),
            reason,
        };
        match key.to_ascii_lowercase().as_str() {
            "gitmesh-waves" => out.waves = waves(&value).map_err(bad)?,
            "gitmesh-min-healthy-time" => {
                out.min_healthy_time = value.parse::<Duration>().map_err(|e| bad(e.to_string()))?
            }
            "gitmesh-progress-deadline" => {
                out.progress_deadline = value.parse::<Duration>().map_err(|e| bad(e.to_string()))?
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `1, 25%, 100%`: a number of proxies, or a percentage of them.
fn waves(value: &str) -> Result<Vec<Wave>, String> {
    let waves: Vec<Wave> = value
        .split(',')
        .map(str::trim)
        .map(|w| match w.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Wave {
                    proxies: None,
                    percent: Some(p),
                }),
                _ => Err(format!("`{w}` is not a percentage between 0 and 100")),
            },
            None => match w.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Wave {
                    proxies: Some(n),
                    percent: None,
                }),
                _ => Err(format!(
                    "`{w}` is neither a number of proxies nor a percentage"
                )),
            },
        })
        .collect::<Result<_, _>>()?;
    if waves.is_empty() {
        return Err("no waves".into());
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_override_the_mesh_defaults() {
        let msg = "ratings: risky change\n\nWhy it is risky.\n\nGitmesh-Waves: 1, 50%, 100%\nGitmesh-Min-Healthy-Time: 30s\n";
        let r = apply(msg, &RolloutDefaults::default()).unwrap();
        assert_eq!(r.waves.len(), 3);
        assert_eq!(r.waves[0].proxies, Some(1));
        assert_eq!(r.waves[1].percent, Some(50.0));
        assert_eq!(r.min_healthy_time, Duration::from_secs(30));
        assert_eq!(
            r.progress_deadline,
            RolloutDefaults::default().progress_deadline
        );
    }

    #[test]
    fn no_trailers_no_change_and_prose_is_not_a_trailer() {
        let d = RolloutDefaults::default();
        assert_eq!(apply("just a summary", &d).unwrap(), d);
        assert_eq!(
            apply("summary\n\nNote: this is prose with spaces in it", &d).unwrap(),
            d
        );
        assert_eq!(
            apply("Gitmesh-Waves: 100%", &d).unwrap(),
            d,
            "a summary line is no trailer"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let d = RolloutDefaults::default();
        let e = apply("s\n\nGitmesh-Waves: 1, lots", &d).unwrap_err();
        assert_eq!(e.key, "Gitmesh-Waves");
        assert!(e.reason.contains("`lots`"), "{e}");
        assert!(apply("s\n\nGitmesh-Waves: 150%", &d).is_err());
        assert!(apply("s\n\nGitmesh-Min-Healthy-Time: soon", &d).is_err());
    }
}
