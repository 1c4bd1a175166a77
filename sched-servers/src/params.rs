//! Open parameters: what a policy declares it can be told, per domain and per
//! pool, and the `key=value` text they travel in (the scheduler-server
//! protocol, xl.cfg files, the console's `sched-param`).
//!
//! A policy lists its parameters as [`ParamSpec`]s (name, kind with its
//! range or choices, default, one line of help). A driver parses the
//! `key=value` text against those specs with [`parse_values`] (unknown key,
//! malformed value, value out of range: one [`ParamError`] naming the key)
//! and hands the typed [`ParamValue`]s to the policy, which checks what only
//! it can check (a slice longer than its period, a cap above the pool's
//! CPUs) and either applies all of them or none.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// What values a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// An integer within `min..=max`.
    Int {
        /// Smallest value accepted.
        min: i64,
        /// Largest value accepted.
        max: i64,
    },
    /// A flag: `1`/`0` (also `true`/`false`, `yes`/`no`, `on`/`off`).
    Bool,
    /// One of these words.
    Enum(&'static [&'static str]),
}

/// A parameter's value, typed by its [`ParamKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// Of an [`ParamKind::Int`] parameter.
    Int(i64),
    /// Of a [`ParamKind::Bool`] parameter.
    Bool(bool),
    /// Of a [`ParamKind::Enum`] parameter: one of its words.
    Enum(&'static str),
}

impl ParamValue {
    /// The integer, if this is one.
    pub fn int(self) -> Option<i64> {
        match self {
            ParamValue::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The flag, if this is one.
    pub fn flag(self) -> Option<bool> {
        match self {
            ParamValue::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    /// As it is written in `key=value` text (flags as `1`/`0`, as xl does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => f.write_str(if *v { "1" } else { "0" }),
            ParamValue::Enum(word) => f.write_str(word),
        }
    }
}

/// One parameter a policy declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its key (lower case, digits, `_`; unique within its scope).
    pub name: &'static str,
    /// What values it takes.
    pub kind: ParamKind,
    /// What a new domain (or pool) has.
    pub default: ParamValue,
    /// One line for the console's listing.
    pub help: &'static str,
}

impl ParamSpec {
    /// Parses `text` as a value of this parameter.
    pub fn parse(&self, text: &str) -> Result<ParamValue, ParamError> {
        let refuse = |reason: String| ParamError::new(self.name, reason);
        match self.kind {
            ParamKind::Int { min, max } => {
                let value: i64 = text
                    .parse()
                    .map_err(|_| refuse(format!("'{text}' is not a number")))?;
                if value < min || value > max {
                    return Err(refuse(format!("{value} is outside {min}..={max}")));
                }
                Ok(ParamValue::Int(value))
            }
            ParamKind::Bool => match text {
                "1" | "true" | "yes" | "on" => Ok(ParamValue::Bool(true)),
                "0" | "false" | "no" | "off" => Ok(ParamValue::Bool(false)),
                _ => Err(refuse(format!("'{text}' is not 0 or 1"))),
            },
            ParamKind::Enum(words) => words
                .iter()
                .find(|word| **word == text)
                .map(|word| ParamValue::Enum(word))
                .ok_or_else(|| refuse(format!("'{text}' is not one of {}", words.join("|")))),
        }
    }

    /// The values it takes, as the console lists them (`1..=65535`, `0|1`,
    /// `fifo|lifo`).
    pub fn range(&self) -> String {
        match self.kind {
            ParamKind::Int { min, max } => format!("{min}..={max}"),
            ParamKind::Bool => String::from("0|1"),
            ParamKind::Enum(words) => words.join("|"),
        }
    }
}

/// A parameter request refused: the key it concerns and why. Nothing
/// changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The key (as the request spelled it); empty when the request as a
    /// whole is refused ([`ParamError::request`]).
    pub key: String,
    /// Why, in a few words.
    pub reason: String,
}

impl ParamError {
    /// A refusal of `key`.
    pub fn new(key: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// A refusal of the request as a whole, not of one key (admission
    /// control: every value is valid, together they do not fit); the
    /// reason names the values.
    pub fn request(reason: impl Into<String>) -> Self {
        Self {
            key: String::new(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            return f.write_str(&self.reason);
        }
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl core::error::Error for ParamError {}

/// Parsed parameters: each key (a declared spec's name) with its value, in
/// the order given.
pub type Values = Vec<(&'static str, ParamValue)>;

/// Parses `key=value key=value ...` (separated by spaces) against `specs`:
/// every key must be declared, given once, with a valid value. An empty
/// text is no parameters.
pub fn parse_values(specs: &[ParamSpec], text: &str) -> Result<Values, ParamError> {
    let mut values = Values::new();
    for pair in text.split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ParamError::new(pair, "expected key=value"));
        };
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            return Err(ParamError::new(key, unknown_reason(specs)));
        };
        if values.iter().any(|(name, _)| *name == spec.name) {
            return Err(ParamError::new(key, "given twice"));
        }
        values.push((spec.name, spec.parse(value)?));
    }
    Ok(values)
}

/// Why a key is unknown: it names the keys that exist.
pub fn unknown_reason(specs: &[ParamSpec]) -> String {
    if specs.is_empty() {
        return String::from("unknown parameter (this policy has none here)");
    }
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    format!("unknown parameter (known: {})", names.join(", "))
}

/// The default of every spec.
pub fn defaults(specs: &[ParamSpec]) -> Values {
    specs.iter().map(|s| (s.name, s.default)).collect()
}

/// `key=value key=value` text for `values`.
pub fn format_values(values: &[(&'static str, ParamValue)]) -> String {
    let mut out = String::new();
    for (key, value) in values {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{key}={value}"));
    }
    out
}

/// The value given for `key`, if any.
pub fn find(values: &[(&'static str, ParamValue)], key: &str) -> Option<ParamValue> {
    values
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, v)| *v)
}

/// An integer parameter narrowed to `u32` (its spec's range makes it fit);
/// `current` when not given.
pub fn u32_or(values: &[(&'static str, ParamValue)], key: &str, current: u32) -> u32 {
    find(values, key)
        .and_then(ParamValue::int)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "weight",
            kind: ParamKind::Int { min: 1, max: 65535 },
            default: ParamValue::Int(256),
            help: "share",
        },
        ParamSpec {
            name: "extra",
            kind: ParamKind::Bool,
            default: ParamValue::Bool(false),
            help: "idle time",
        },
        ParamSpec {
            name: "order",
            kind: ParamKind::Enum(&["fifo", "lifo"]),
            default: ParamValue::Enum("fifo"),
            help: "queue order",
        },
    ];

    #[test]
    fn parses_every_kind() {
        let values = parse_values(SPECS, "weight=512  extra=1 order=lifo").unwrap();
        assert_eq!(
            values,
            [
                ("weight", ParamValue::Int(512)),
                ("extra", ParamValue::Bool(true)),
                ("order", ParamValue::Enum("lifo")),
            ]
        );
        assert_eq!(format_values(&values), "weight=512 extra=1 order=lifo");
        assert_eq!(parse_values(SPECS, "").unwrap(), []);
        assert_eq!(
            format_values(&defaults(SPECS)),
            "weight=256 extra=0 order=fifo"
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            ("weight=0", "weight: 0 is outside 1..=65535"),
            ("weight=x", "weight: 'x' is not a number"),
            ("extra=2", "extra: '2' is not 0 or 1"),
            ("order=random", "order: 'random' is not one of fifo|lifo"),
            (
                "colour=blue",
                "colour: unknown parameter (known: weight, extra, order)",
            ),
            ("weight=5 weight=6", "weight: given twice"),
            ("weight", "weight: expected key=value"),
        ];
        for (text, error) in cases {
            assert_eq!(
                parse_values(SPECS, text).unwrap_err().to_string(),
                error,
                "{text}"
            );
        }
        assert_eq!(SPECS[0].range(), "1..=65535");
        assert_eq!(SPECS[2].range(), "fifo|lifo");
    }
}
