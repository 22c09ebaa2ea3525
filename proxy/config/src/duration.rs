//! Human-written durations (`250ms`, `30s`, `1m30s`), shared by the policy
//! files and the proxy's wire format so both read and print them alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time, written as one or more `<integer><unit>` pairs
/// with units `h`, `m`, `s` and `ms`, largest first: `250ms`, `30s`, `1m30s`.
///
/// Stored as whole milliseconds, which is the resolution every timer in the
/// mesh works at. It prints back in the same canonical form it parses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

/// Why a duration string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write it like `250ms`, `30s` or `1m30s`")]
    Empty,
    #[error("`{0}` is not a duration: write it like `250ms`, `30s` or `1m30s`")]
    Malformed(String),
    #[error("`{0}`: units must go from largest to smallest (h, m, s, ms), each at most once")]
    UnitOrder(String),
    #[error("`{0}` is too long a duration")]
    Overflow(String),
}

/// The units a duration may use, largest first, with their size in ms.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl Duration {
    pub const ZERO: Duration = Duration { millis: 0 };

    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1_000,
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.to_std()
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let malformed = || DurationError::Malformed(s.to_string());
        let mut rest = s;
        let mut total: u64 = 0;
        // Index into UNITS of the next unit allowed: units strictly decrease.
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(malformed());
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::Overflow(s.to_string()))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let position = UNITS
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(malformed)?;
            if position < next_unit {
                return Err(DurationError::UnitOrder(s.to_string()));
            }
            next_unit = position + 1;
            let millis = value
                .checked_mul(UNITS[position].1)
                .and_then(|m| total.checked_add(m))
                .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
            total = millis;
        }
        Ok(Duration { millis: total })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        for (name, size) in UNITS {
            let n = rest / size;
            if n > 0 {
                write!(f, "{n}{name}")?;
                rest -= n * size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pattern the JSON Schemas use for durations; kept beside the parser so
/// they cannot disagree (a test checks both on the same inputs).
pub const DURATION_PATTERN: &str = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$";

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "minLength": 2,
            "description": "A duration: integers with units h, m, s, ms, largest first, e.g. `250ms`, `30s`, `1m30s`.",
            "examples": ["250ms", "30s", "1m30s"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (text, millis) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1h1m1s1ms", 3_661_001),
            ("0s", 0),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), millis, "{text}");
            assert_eq!(d.to_string(), text);
        }
        // Non-canonical input is accepted and normalised.
        assert_eq!("90s".parse::<Duration>().unwrap().to_string(), "1m30s");
        assert_eq!("1500ms".parse::<Duration>().unwrap().to_string(), "1s500ms");
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!("".parse::<Duration>(), Err(DurationError::Empty));
        for bad in ["5", "s", "1.5s", "-1s", "10 s", "1d", "ms10", "30sec"] {
            assert!(
                matches!(bad.parse::<Duration>(), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "1s1m".parse::<Duration>(),
            Err(DurationError::UnitOrder(_))
        ));
        assert!(matches!(
            "1s1s".parse::<Duration>(),
            Err(DurationError::UnitOrder(_))
        ));
        assert!(matches!(
            "99999999999999999999h".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in [
            "250ms",
            "30s",
            "1m30s",
            "2h",
            "1h1m1s1ms",
            "0s",
            "5",
            "s",
            "1.5s",
            "1s1m",
            "1d",
            "10 s",
            "30sec",
        ] {
            let schema_ok = re.is_match(s) && s.len() >= 2;
            assert_eq!(schema_ok, s.parse::<Duration>().is_ok(), "{s}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let d: Duration = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m30s\"");
        assert!(serde_json::from_str::<Duration>("\"soon\"").is_err());
    }
}
