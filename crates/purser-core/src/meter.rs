//! Meters: how usage events become quantities.
//!
//! A [`Meter`] reads the events of one CloudEvents `type`, takes a number from each
//! event's `data` ([`ValuePath`]), optionally splits them by another value of `data`
//! (`group_by`, e.g. the cluster), and aggregates them per account × hour × group
//! ([`HourAggregate`]). A meter may feed an offer's dimension ([`DimensionFeed`]),
//! converting its unit on the way (bytes → TiB).
//!
//! Rules this module keeps:
//! - Numbers are exact: a JSON number (or a numeric string) is read from its text into
//!   a `Decimal`, never through floating point; a number no `Decimal` holds exactly is
//!   an error, not a rounding.
//! - An hour's result depends on the set of events, never on their arrival order
//!   (events arrive late and out of order). `Latest` picks the event with the greatest
//!   time, then the greatest [`EventKey`], so it is deterministic too.
//! - Results that need a division (average, time-weighted average, unit conversions
//!   that divide) are rounded once, at the end, to [`QUANTITY_SCALE`] places, half away
//!   from zero. Sums, counts, extremes and latest values are never rounded.
//! - Each event is added once: deduplication by [`EventKey`] happens before
//!   aggregation (a resent event would count twice in a sum).

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::commercial::DimensionKey;
use crate::events::{EventKey, MemberLookup, UsageEvent, json_kind};
use crate::time::Window;
use crate::validation::{self, ValidationErrors};

/// Decimal places of a result computed by division (averages, conversions that
/// divide). 12 places of a TiB is about one byte.
pub const QUANTITY_SCALE: u32 = 12;

/// Bytes in a GiB (2^30).
pub const BYTES_PER_GIB: u64 = 1_073_741_824;
/// Bytes in a TiB (2^40).
pub const BYTES_PER_TIB: u64 = 1_099_511_627_776;

const MAX_PATH_SEGMENTS: usize = 16;

/// Where a value sits in an event's `data`: `$` (the whole object) or object keys,
/// written `$.usage.bytes_stored` or `usage.bytes_stored`. Keys are letters, digits,
/// `_` and `-`; arrays and other JSONPath forms are not supported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValuePath {
    segments: Vec<String>,
}

impl ValuePath {
    /// `$`: the whole `data` object.
    pub fn root() -> ValuePath {
        ValuePath {
            segments: Vec::new(),
        }
    }

    pub fn parse(value: &str) -> Result<ValuePath, String> {
        if value == "$" {
            return Ok(ValuePath::root());
        }
        let keys = value.strip_prefix("$.").unwrap_or(value);
        if keys.is_empty() || keys.starts_with('$') {
            return Err(format!(
                "`{value}` is not a path into the event's data (e.g. `$.bytes_stored` or `usage.bytes_stored`)"
            ));
        }
        let segments: Vec<String> = keys.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!("`{value}` is deeper than {MAX_PATH_SEGMENTS} keys"));
        }
        for segment in &segments {
            if segment.is_empty() {
                return Err(format!(
                    "`{value}` has an empty key (two dots, or a dot at an end)"
                ));
            }
            if !segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                return Err(format!(
                    "`{value}`: the key `{segment}` may hold only letters, digits, `_` and `-`"
                ));
            }
        }
        Ok(ValuePath { segments })
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The value at this path in the event's `data`, as JSON text: a top-level key
    /// from the index built at parsing when there is one, otherwise from the text.
    fn find_in<'e>(&self, event: &'e UsageEvent) -> Result<&'e str, ValueError> {
        if let [key] = self.segments.as_slice() {
            match event.data_member(key) {
                MemberLookup::Found(value) => return Ok(value),
                MemberLookup::Missing => {
                    return Err(ValueError::Missing {
                        path: self.to_string(),
                    });
                }
                MemberLookup::Repeated => {
                    return Err(ValueError::Repeated {
                        path: self.to_string(),
                    });
                }
                MemberLookup::Unindexed => {}
            }
        }
        self.find(event.data())
    }

    /// The value at this path in `data` (a JSON object's text), as JSON text.
    fn find<'a>(&self, data: &'a str) -> Result<&'a str, ValueError> {
        if self.is_root() {
            return Ok(data);
        }
        let mut deserializer = serde_json::Deserializer::from_str(data);
        let lookup = PathSeed {
            segments: &self.segments,
            depth: 0,
        }
        .deserialize(&mut deserializer)
        .map_err(|e| ValueError::Malformed(e.to_string()))?;
        match lookup {
            Lookup::Found(raw) => Ok(raw.get()),
            Lookup::Missing => Err(ValueError::Missing {
                path: self.to_string(),
            }),
            Lookup::NotAnObject { depth, kind } => Err(ValueError::NotAnObject {
                path: self.to_string(),
                at: self.prefix(depth),
                found: kind,
            }),
            Lookup::Repeated { depth } => Err(ValueError::Repeated {
                path: self.prefix(depth + 1),
            }),
        }
    }

    /// The path of the first `depth` keys.
    fn prefix(&self, depth: usize) -> String {
        ValuePath {
            segments: self.segments[..depth.min(self.segments.len())].to_vec(),
        }
        .to_string()
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for segment in &self.segments {
            write!(f, ".{segment}")?;
        }
        Ok(())
    }
}

impl Serialize for ValuePath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How an hour's values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Counters (bytes written in an interval).
    Sum,
    /// Events, whatever their data.
    Count,
    Min,
    Max,
    /// The mean of the values, each event weighing the same.
    Avg,
    /// The value of the latest event (greatest time, then greatest key).
    Latest,
    /// Gauges sampled over time (bytes stored): each sample holds until the next.
    TimeWeightedAvg,
}

impl Aggregation {
    pub const ALL: [Aggregation; 7] = [
        Aggregation::Sum,
        Aggregation::Count,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Avg,
        Aggregation::Latest,
        Aggregation::TimeWeightedAvg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Avg => "avg",
            Aggregation::Latest => "latest",
            Aggregation::TimeWeightedAvg => "time_weighted_avg",
        }
    }

    pub fn parse(value: &str) -> Result<Aggregation, String> {
        let value = value.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "`{value}` is not an aggregation (one of sum, count, min, max, avg, latest, time_weighted_avg)"
                )
            })
    }

    /// Whether the meter reads a number from each event (all but `count`).
    pub fn reads_value(self) -> bool {
        self != Aggregation::Count
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a meter's unit becomes a dimension's unit. Binary units: a GiB is 2^30 bytes,
/// a TiB 2^40, as storage is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    Identity,
    BytesToGiB,
    BytesToTiB,
    SecondsToHours,
    /// Multiply by an exact factor (positive).
    Factor(#[serde(with = "rust_decimal::serde::str")] Decimal),
}

impl Conversion {
    /// The name a draft uses (`factor` for [`Conversion::Factor`], whose value is given
    /// apart).
    pub fn as_str(&self) -> &'static str {
        match self {
            Conversion::Identity => "identity",
            Conversion::BytesToGiB => "bytes_to_gib",
            Conversion::BytesToTiB => "bytes_to_tib",
            Conversion::SecondsToHours => "seconds_to_hours",
            Conversion::Factor(_) => "factor",
        }
    }

    /// Converts one value, exactly when the result is a finite decimal of at most
    /// 28 digits, otherwise rounded to [`QUANTITY_SCALE`] places, half away from zero.
    pub fn apply(&self, value: Decimal) -> Result<Decimal, AggregateError> {
        self.apply_exact(Exact::whole(value))?.finish()
    }

    fn apply_exact(&self, exact: Exact) -> Result<Exact, AggregateError> {
        let divide = |by: u64| {
            exact
                .denominator
                .checked_mul(u128::from(by))
                .map(|denominator| Exact {
                    numerator: exact.numerator,
                    denominator,
                })
                .ok_or(AggregateError::Overflow {
                    what: "unit conversion",
                })
        };
        match self {
            Conversion::Identity => Ok(exact),
            Conversion::BytesToGiB => divide(BYTES_PER_GIB),
            Conversion::BytesToTiB => divide(BYTES_PER_TIB),
            Conversion::SecondsToHours => divide(3_600),
            Conversion::Factor(factor) => Ok(Exact {
                numerator: exact_mul(exact.numerator, *factor).ok_or(AggregateError::Overflow {
                    what: "unit conversion",
                })?,
                denominator: exact.denominator,
            }),
        }
    }
}

/// A meter feeding an offer's dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DimensionFeed {
    pub dimension: DimensionKey,
    pub conversion: Conversion,
}

impl DimensionFeed {
    /// The dimension's quantity for an hour: the aggregate converted, rounded once.
    /// `carry_in` as for [`HourAggregate::value`].
    pub fn quantity(
        &self,
        aggregate: &HourAggregate,
        carry_in: Option<Decimal>,
    ) -> Result<Option<Decimal>, AggregateError> {
        aggregate.quantity(&self.conversion, carry_in)
    }
}

/// A validated meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meter {
    /// Lowercase letters, digits, `_`, `-`, `.` (`storage.capacity`).
    pub name: String,
    /// The CloudEvents `type` of the events it reads.
    pub event_type: String,
    /// Where the number is; `$` for a count.
    pub value_path: ValuePath,
    pub aggregation: Aggregation,
    /// The unit of the values as events carry them (`bytes`, `seconds`).
    pub unit: String,
    /// Splits an account's hour by this value of `data` (e.g. `$.cluster_id`).
    pub group_by: Option<ValuePath>,
    pub dimension: Option<DimensionFeed>,
}

/// Where an event's usage is aggregated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HourKey {
    /// The account as events name it (its external id, the event's `subject`).
    pub account: String,
    pub meter: String,
    /// The start of the hour (UTC).
    pub hour: Timestamp,
    pub group: Option<String>,
}

/// One event's contribution to a meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub key: HourKey,
    pub sample: Sample,
}

/// One value at one instant, from one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub time: Timestamp,
    /// The event's identity: orders samples of the same instant.
    pub key: EventKey,
    pub value: Decimal,
}

impl Sample {
    /// Samples are ordered by time, then key: a total order independent of arrival.
    fn order(&self) -> (Timestamp, EventKey) {
        (self.time, self.key)
    }
}

/// Why a value could not be read from an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the meter `{meter}` reads `{expected}` events, not `{found}`")]
    OtherType {
        meter: String,
        expected: String,
        found: String,
    },
    #[error("`{path}` is missing from the event's data")]
    Missing { path: String },
    #[error("`{path}` cannot be read: `{at}` is {found}, not an object")]
    NotAnObject {
        path: String,
        at: String,
        found: &'static str,
    },
    #[error("`{path}` appears more than once in the event's data")]
    Repeated { path: String },
    #[error("`{path}` is {found}, not a number")]
    NotANumber { path: String, found: String },
    #[error("`{path}` is {value}, which has more decimal places than an exact decimal holds (28)")]
    TooPrecise { path: String, value: String },
    #[error("`{path}` is {value}, which is larger than an exact decimal holds")]
    TooLarge { path: String, value: String },
    #[error("`{path}` is {found}; a group is a string or a number")]
    NotAGroup { path: String, found: &'static str },
    #[error("the event's data is not valid JSON: {0}")]
    Malformed(String),
}

impl Meter {
    /// Whether the meter reads this event.
    pub fn applies_to(&self, event: &UsageEvent) -> bool {
        event.event_type() == self.event_type
    }

    /// The event's value: the number at `value_path`, exactly; 1 for a count, which
    /// reads nothing.
    pub fn value(&self, event: &UsageEvent) -> Result<Decimal, ValueError> {
        if !self.aggregation.reads_value() {
            return Ok(Decimal::ONE);
        }
        let text = self.value_path.find_in(event)?;
        number_at(text, &self.value_path)
    }

    /// The event's group: the string (or the number's text) at `group_by`.
    pub fn group(&self, event: &UsageEvent) -> Result<Option<String>, ValueError> {
        Ok(self.group_text(event)?.map(Cow::into_owned))
    }

    /// [`Meter::group`], borrowed from the event when it can be (no escapes), for
    /// callers that only look the group up.
    pub fn group_text<'e>(
        &self,
        event: &'e UsageEvent,
    ) -> Result<Option<Cow<'e, str>>, ValueError> {
        let Some(path) = &self.group_by else {
            return Ok(None);
        };
        let text = path.find_in(event)?;
        match text.as_bytes().first() {
            Some(b'"') => Ok(Some(string_of(text)?)),
            Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(text))),
            _ => Err(ValueError::NotAGroup {
                path: path.to_string(),
                found: json_kind(text),
            }),
        }
    }

    /// Where the event counts and what it contributes.
    pub fn measure(&self, event: &UsageEvent) -> Result<Measurement, ValueError> {
        if !self.applies_to(event) {
            return Err(ValueError::OtherType {
                meter: self.name.clone(),
                expected: self.event_type.clone(),
                found: event.event_type().to_owned(),
            });
        }
        let value = self.value(event)?;
        let group = self.group(event)?;
        Ok(Measurement {
            key: HourKey {
                account: event.subject().to_owned(),
                meter: self.name.clone(),
                hour: Window::hour(event.time()).start,
                group,
            },
            sample: Sample {
                time: event.time(),
                key: event.key(),
                value,
            },
        })
    }
}

/// A meter as it arrives (JSON, a form, the CLI), before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterDraft {
    pub name: String,
    /// The CloudEvents `type` the meter reads.
    pub event_type: String,
    /// The path of the number in `data`; omitted (or `$`) for `count`.
    #[serde(default)]
    pub value_path: Option<String>,
    /// `sum`, `count`, `min`, `max`, `avg`, `latest` or `time_weighted_avg`.
    pub aggregation: String,
    pub unit: String,
    #[serde(default)]
    pub group_by: Option<String>,
    /// The offer dimension the meter feeds, if any.
    #[serde(default)]
    pub dimension: Option<String>,
    /// `identity` (default), `bytes_to_gib`, `bytes_to_tib`, `seconds_to_hours` or
    /// `factor`.
    #[serde(default)]
    pub conversion: Option<String>,
    /// The multiplier, for `factor` (a positive decimal).
    #[serde(default)]
    pub factor: Option<String>,
}

impl MeterDraft {
    /// Validates the draft, naming every wrong field.
    pub fn validate(&self) -> Result<Meter, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = validation::text(&mut errors, "name", &self.name, true, 64).and_then(|name| {
            if name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            }) {
                Some(name)
            } else {
                errors.add(
                    "name",
                    "may hold only lowercase letters, digits, `_`, `-` and `.`",
                );
                None
            }
        });
        let event_type = validation::text(&mut errors, "event_type", &self.event_type, true, 200)
            .and_then(|event_type| {
                if event_type.contains(char::is_whitespace) {
                    errors.add("event_type", "may not contain spaces");
                    None
                } else {
                    Some(event_type)
                }
            });
        let aggregation = Aggregation::parse(&self.aggregation)
            .map_err(|reason| errors.add("aggregation", reason))
            .ok();
        let value_path = match (blank_to_none(&self.value_path), aggregation) {
            (None, Some(Aggregation::Count)) => Some(ValuePath::root()),
            (None, Some(aggregation)) => {
                errors.add(
                    "value_path",
                    format!(
                        "is required for a {aggregation} meter: the path of the number in the event's data (e.g. `$.bytes_stored`)"
                    ),
                );
                None
            }
            (None, None) => None,
            (Some(text), aggregation) => match ValuePath::parse(text) {
                Ok(path) if path.is_root() && aggregation != Some(Aggregation::Count) => {
                    errors.add(
                        "value_path",
                        "`$` is the whole data object, not a number: name the key holding the value (e.g. `$.bytes_stored`)",
                    );
                    None
                }
                Ok(path) if !path.is_root() && aggregation == Some(Aggregation::Count) => {
                    errors.add(
                        "value_path",
                        "a count meter counts events and reads no value: omit it or give `$`",
                    );
                    None
                }
                Ok(path) => Some(path),
                Err(reason) => {
                    errors.add("value_path", reason);
                    None
                }
            },
        };
        let unit = validation::text(&mut errors, "unit", &self.unit, true, 32);
        let group_by = match blank_to_none(&self.group_by).map(ValuePath::parse) {
            None => None,
            Some(Ok(path)) if path.is_root() => {
                errors.add(
                    "group_by",
                    "`$` is the whole data object: name the key to group by (e.g. `$.cluster_id`)",
                );
                None
            }
            Some(Ok(path)) => Some(path),
            Some(Err(reason)) => {
                errors.add("group_by", reason);
                None
            }
        };
        let dimension = self.validate_feed(&mut errors);
        match (name, event_type, value_path, aggregation, unit) {
            (Some(name), Some(event_type), Some(value_path), Some(aggregation), Some(unit))
                if errors.is_empty() =>
            {
                Ok(Meter {
                    name,
                    event_type,
                    value_path,
                    aggregation,
                    unit,
                    group_by,
                    dimension,
                })
            }
            _ => Err(errors),
        }
    }

    fn validate_feed(&self, errors: &mut ValidationErrors) -> Option<DimensionFeed> {
        let dimension = blank_to_none(&self.dimension);
        let conversion = blank_to_none(&self.conversion);
        let factor = blank_to_none(&self.factor);
        let Some(dimension) = dimension else {
            if conversion.is_some() {
                errors.add(
                    "conversion",
                    "applies only to a meter that feeds a dimension",
                );
            }
            if factor.is_some() {
                errors.add("factor", "applies only to a meter that feeds a dimension");
            }
            return None;
        };
        let key = DimensionKey::parse(dimension)
            .map_err(|reason| errors.add("dimension", reason))
            .ok();
        let conversion = match conversion.unwrap_or("identity") {
            "factor" => match factor {
                None => {
                    errors.add("factor", "is required for the `factor` conversion");
                    None
                }
                Some(text) => match text.parse::<Decimal>() {
                    Ok(f) if f > Decimal::ZERO => Some(Conversion::Factor(f.normalize())),
                    Ok(_) => {
                        errors.add("factor", "must be greater than zero");
                        None
                    }
                    Err(_) => {
                        errors.add("factor", format!("`{text}` is not a decimal number"));
                        None
                    }
                },
            },
            other => {
                if factor.is_some() {
                    errors.add("factor", "applies only to the `factor` conversion");
                }
                match other {
                    "identity" => Some(Conversion::Identity),
                    "bytes_to_gib" => Some(Conversion::BytesToGiB),
                    "bytes_to_tib" => Some(Conversion::BytesToTiB),
                    "seconds_to_hours" => Some(Conversion::SecondsToHours),
                    _ => {
                        errors.add(
                            "conversion",
                            format!(
                                "`{other}` is not a conversion (one of identity, bytes_to_gib, bytes_to_tib, seconds_to_hours, factor)"
                            ),
                        );
                        None
                    }
                }
            }
        };
        Some(DimensionFeed {
            dimension: key?,
            conversion: conversion?,
        })
    }
}

fn blank_to_none(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl From<&Meter> for MeterDraft {
    fn from(meter: &Meter) -> Self {
        let (dimension, conversion, factor) = match &meter.dimension {
            None => (None, None, None),
            Some(feed) => (
                Some(feed.dimension.as_str().to_owned()),
                Some(feed.conversion.as_str().to_owned()),
                match feed.conversion {
                    Conversion::Factor(f) => Some(f.to_string()),
                    _ => None,
                },
            ),
        };
        MeterDraft {
            name: meter.name.clone(),
            event_type: meter.event_type.clone(),
            value_path: Some(meter.value_path.to_string()),
            aggregation: meter.aggregation.as_str().to_owned(),
            unit: meter.unit.clone(),
            group_by: meter.group_by.as_ref().map(ValuePath::to_string),
            dimension,
            conversion,
            factor,
        }
    }
}

/// Why an aggregate refused a sample or could not produce its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("the sample at {time} is outside the hour starting {hour}")]
    OutsideHour { time: Timestamp, hour: Timestamp },
    #[error(
        "cannot merge a {theirs} aggregate of the hour starting {their_hour} into a {ours} aggregate of the hour starting {our_hour}"
    )]
    Mismatch {
        ours: Aggregation,
        our_hour: Timestamp,
        theirs: Aggregation,
        their_hour: Timestamp,
    },
    #[error("the {what} needs more digits than an exact decimal holds")]
    Overflow { what: &'static str },
}

/// The running aggregate of one account × meter × hour × group.
///
/// Adding samples in any order, or merging aggregates of disjoint sets of events in
/// any order, gives the same result. Memory is constant except for the time-weighted
/// average, which keeps its samples sorted by (time, key): about 12 per group and hour
/// for a gauge sampled every five minutes, some 50 bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourAggregate {
    aggregation: Aggregation,
    hour: Window,
    n_events: u64,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Sum and Avg: the running total.
    Total(Decimal),
    Count,
    Extreme(Option<Decimal>),
    Latest(Option<Sample>),
    Samples(Vec<Sample>),
}

impl HourAggregate {
    /// An empty aggregate of `hour` (use [`Window::hour`]).
    pub fn new(aggregation: Aggregation, hour: Window) -> HourAggregate {
        let state = match aggregation {
            Aggregation::Sum | Aggregation::Avg => State::Total(Decimal::ZERO),
            Aggregation::Count => State::Count,
            Aggregation::Min | Aggregation::Max => State::Extreme(None),
            Aggregation::Latest => State::Latest(None),
            Aggregation::TimeWeightedAvg => State::Samples(Vec::new()),
        };
        HourAggregate {
            aggregation,
            hour,
            n_events: 0,
            state,
        }
    }

    pub fn aggregation(&self) -> Aggregation {
        self.aggregation
    }

    pub fn hour(&self) -> Window {
        self.hour
    }

    /// How many samples (events) were added.
    pub fn n_events(&self) -> u64 {
        self.n_events
    }

    /// Adds one event's sample. A sample outside the hour is refused.
    pub fn add(&mut self, sample: Sample) -> Result<(), AggregateError> {
        if !self.hour.contains(sample.time) {
            return Err(AggregateError::OutsideHour {
                time: sample.time,
                hour: self.hour.start,
            });
        }
        match &mut self.state {
            State::Total(total) => {
                *total = exact_add(*total, sample.value)
                    .ok_or(AggregateError::Overflow { what: "sum" })?;
            }
            State::Count => {}
            State::Extreme(extreme) => keep_extreme(self.aggregation, extreme, sample.value),
            State::Latest(latest) => keep_latest(latest, sample),
            State::Samples(samples) => {
                // Samples mostly arrive in order: appending is the common case.
                if samples
                    .last()
                    .is_none_or(|last| last.order() <= sample.order())
                {
                    if samples.capacity() == 0 {
                        // A gauge sampled every five minutes: one allocation for its
                        // hour rather than one per doubling.
                        samples.reserve(12);
                    }
                    samples.push(sample);
                } else {
                    let at = samples.partition_point(|s| s.order() <= sample.order());
                    samples.insert(at, sample);
                }
            }
        }
        self.n_events = self.n_events.saturating_add(1);
        Ok(())
    }

    /// Folds in the aggregate of another set of events of the same meter and hour.
    pub fn merge(&mut self, other: &HourAggregate) -> Result<(), AggregateError> {
        if self.aggregation != other.aggregation || self.hour != other.hour {
            return Err(AggregateError::Mismatch {
                ours: self.aggregation,
                our_hour: self.hour.start,
                theirs: other.aggregation,
                their_hour: other.hour.start,
            });
        }
        match (&mut self.state, &other.state) {
            (State::Total(total), State::Total(theirs)) => {
                *total =
                    exact_add(*total, *theirs).ok_or(AggregateError::Overflow { what: "sum" })?;
            }
            (State::Extreme(extreme), State::Extreme(Some(theirs))) => {
                keep_extreme(self.aggregation, extreme, *theirs);
            }
            (State::Latest(latest), State::Latest(Some(theirs))) => keep_latest(latest, *theirs),
            (State::Samples(samples), State::Samples(theirs)) => {
                samples.extend_from_slice(theirs);
                samples.sort_by_key(Sample::order);
            }
            _ => {}
        }
        self.n_events = self.n_events.saturating_add(other.n_events);
        Ok(())
    }

    /// The sample that carries into the next hour, for `Latest` and the time-weighted
    /// average: the one with the greatest (time, key).
    pub fn last_sample(&self) -> Option<&Sample> {
        match &self.state {
            State::Latest(latest) => latest.as_ref(),
            State::Samples(samples) => samples.last(),
            _ => None,
        }
    }

    /// The hour's result in the meter's unit; `None` when there is nothing to report
    /// (no events for min, max, avg and latest; no samples and no `carry_in` for the
    /// time-weighted average). Sum and count of no events are 0.
    ///
    /// `carry_in` is the last value before the hour (see [`HourAggregate::last_sample`]
    /// of the previous hour) and is read only by the time-weighted average: with it,
    /// the value holds from the start of the hour until the first sample; without it,
    /// the average covers only the time from the first sample to the end of the hour
    /// (the hour is not assumed empty before its first sample).
    ///
    /// Results are normalised (no trailing zeros), so the same result always has the
    /// same text.
    pub fn value(&self, carry_in: Option<Decimal>) -> Result<Option<Decimal>, AggregateError> {
        self.quantity(&Conversion::Identity, carry_in)
    }

    /// The hour's result converted, rounded once (see [`Conversion::apply`]).
    pub fn quantity(
        &self,
        conversion: &Conversion,
        carry_in: Option<Decimal>,
    ) -> Result<Option<Decimal>, AggregateError> {
        match self.exact(carry_in)? {
            None => Ok(None),
            Some(exact) => conversion.apply_exact(exact)?.finish().map(Some),
        }
    }

    fn exact(&self, carry_in: Option<Decimal>) -> Result<Option<Exact>, AggregateError> {
        Ok(match &self.state {
            State::Total(total) if self.aggregation == Aggregation::Avg => (self.n_events > 0)
                .then(|| Exact {
                    numerator: *total,
                    denominator: u128::from(self.n_events),
                }),
            State::Total(total) => Some(Exact::whole(*total)),
            State::Count => Some(Exact::whole(Decimal::from(self.n_events))),
            State::Extreme(value) => value.map(Exact::whole),
            State::Latest(latest) => latest.map(|s| Exact::whole(s.value)),
            State::Samples(samples) => self.time_weighted(samples, carry_in)?,
        })
    }

    /// Σ value × time held / Σ time held, in microseconds. Each sample holds from its
    /// time until the next sample's (or the end of the hour); of samples at the same
    /// instant, the one with the greatest key holds (the others for no time).
    fn time_weighted(
        &self,
        samples: &[Sample],
        carry_in: Option<Decimal>,
    ) -> Result<Option<Exact>, AggregateError> {
        let end = self.hour.end().as_microsecond();
        let mut weighted = Decimal::ZERO;
        let mut held: i64 = 0;
        let mut hold = |value: Decimal, from: i64, until: i64| -> Result<(), AggregateError> {
            let micros = until - from;
            if micros > 0 {
                let overflow = AggregateError::Overflow {
                    what: "time-weighted sum",
                };
                let term = exact_mul(value, Decimal::from(micros)).ok_or(overflow.clone())?;
                weighted = exact_add(weighted, term).ok_or(overflow)?;
                held += micros;
            }
            Ok(())
        };
        match (carry_in, samples.first()) {
            (None, None) => return Ok(None),
            (Some(value), first) => hold(
                value,
                self.hour.start.as_microsecond(),
                first.map_or(end, |s| s.time.as_microsecond()),
            )?,
            (None, Some(_)) => {}
        }
        for (i, sample) in samples.iter().enumerate() {
            let until = samples
                .get(i + 1)
                .map_or(end, |next| next.time.as_microsecond());
            hold(sample.value, sample.time.as_microsecond(), until)?;
        }
        Ok(Some(Exact {
            numerator: weighted,
            denominator: u128::try_from(held).unwrap_or(1).max(1),
        }))
    }
}

/// Keeps the smaller (for `Min`) or greater value.
fn keep_extreme(aggregation: Aggregation, extreme: &mut Option<Decimal>, value: Decimal) {
    *extreme = Some(match *extreme {
        None => value,
        Some(current) if aggregation == Aggregation::Min => current.min(value),
        Some(current) => current.max(value),
    });
}

/// Keeps the sample with the greatest (time, key).
fn keep_latest(latest: &mut Option<Sample>, candidate: Sample) {
    if latest.is_none_or(|l| candidate.order() > l.order()) {
        *latest = Some(candidate);
    }
}

/// An exact result before its final rounding: `numerator / denominator`.
#[derive(Debug, Clone, Copy)]
struct Exact {
    numerator: Decimal,
    denominator: u128,
}

impl Exact {
    fn whole(value: Decimal) -> Exact {
        Exact {
            numerator: value,
            denominator: 1,
        }
    }

    fn finish(self) -> Result<Decimal, AggregateError> {
        if self.denominator == 1 {
            return Ok(self.numerator.normalize());
        }
        divide_half_up(self.numerator, self.denominator, QUANTITY_SCALE)
            .map(|d| d.normalize())
            .ok_or(AggregateError::Overflow { what: "result" })
    }
}

/// `numerator / denominator` rounded half away from zero to `places` decimal places,
/// computed exactly by long division on the mantissa (a `Decimal` division would
/// round at 28 digits first, and round again here). Fewer places are used only when
/// the integer part leaves no room for all of them in a `Decimal`.
fn divide_half_up(numerator: Decimal, denominator: u128, places: u32) -> Option<Decimal> {
    let magnitude = numerator.mantissa().unsigned_abs();
    let scale = numerator.scale();
    for places in (0..=places).rev() {
        // numerator / denominator × 10^places = magnitude × 10^(places - scale) / denominator
        let (divisor, extra_digits) = if places >= scale {
            (denominator, places - scale)
        } else {
            (
                denominator.checked_mul(10u128.checked_pow(scale - places)?)?,
                0,
            )
        };
        let Some(quotient) = long_division(magnitude, divisor, extra_digits) else {
            continue;
        };
        let Ok(signed) = i128::try_from(quotient) else {
            continue;
        };
        let signed = if numerator.is_sign_negative() {
            -signed
        } else {
            signed
        };
        if let Ok(result) = Decimal::try_from_i128_with_scale(signed, places) {
            return Some(result);
        }
    }
    None
}

/// round_half_up(value × 10^extra_digits / divisor), or `None` on overflow.
fn long_division(value: u128, divisor: u128, extra_digits: u32) -> Option<u128> {
    if divisor == 0 {
        return None;
    }
    let mut quotient = value / divisor;
    let mut remainder = value % divisor;
    for _ in 0..extra_digits {
        let shifted = remainder.checked_mul(10)?;
        quotient = quotient.checked_mul(10)?.checked_add(shifted / divisor)?;
        remainder = shifted % divisor;
    }
    if remainder.checked_mul(2)? >= divisor {
        quotient = quotient.checked_add(1)?;
    }
    Some(quotient)
}

/// `a + b`, or `None` when the exact sum does not fit (a `Decimal` would silently
/// round away low digits rather than overflow).
#[inline]
fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    // Low digits are dropped only by lowering the scale (a zero result may come back
    // with scale 0, and is exact).
    (sum.is_zero() || sum.scale() >= a.scale().max(b.scale())).then_some(sum)
}

/// `a × b`, or `None` when the exact product does not fit.
fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let product = a.checked_mul(b)?;
    (product.is_zero()
        || (a.scale() + b.scale() <= Decimal::MAX_SCALE
            && product.scale() >= a.scale() + b.scale()))
    .then_some(product)
}

/// The number in a value: a JSON number, or a string holding one.
fn number_at(text: &str, path: &ValuePath) -> Result<Decimal, ValueError> {
    let (number, shown) = match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => (Cow::Borrowed(text), Cow::Borrowed(text)),
        Some(b'"') => {
            let inner = string_of(text)?;
            let shown = Cow::Owned(format!("the string \"{}\"", shorten(&inner)));
            (inner, shown)
        }
        _ => {
            return Err(ValueError::NotANumber {
                path: path.to_string(),
                found: json_kind(text).to_owned(),
            });
        }
    };
    parse_json_number(&number).map_err(|problem| {
        let path = path.to_string();
        let value = shown.into_owned();
        match problem {
            NumberProblem::NotANumber => ValueError::NotANumber { path, found: value },
            NumberProblem::TooPrecise => ValueError::TooPrecise { path, value },
            NumberProblem::TooLarge => ValueError::TooLarge { path, value },
        }
    })
}

fn shorten(text: &str) -> Cow<'_, str> {
    if text.chars().count() <= 40 {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{}…", text.chars().take(40).collect::<String>()))
    }
}

/// A JSON string's content (borrowed unless it holds escapes).
fn string_of(raw: &str) -> Result<Cow<'_, str>, ValueError> {
    // Without escapes or control characters the content is the text between the
    // quotes, as the JSON reader would borrow it.
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'))
        && !inner.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        return Ok(Cow::Borrowed(inner));
    }
    match serde_json::from_str::<&str>(raw) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw)
            .map(Cow::Owned)
            .map_err(|e| ValueError::Malformed(e.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberProblem {
    NotANumber,
    TooPrecise,
    TooLarge,
}

/// Reads a number written in JSON's grammar (`-12`, `0.5`, `1.5E+3`) exactly, without
/// trailing zeros. A `Decimal` holds up to 28 decimal places and a mantissa below 2^96.
fn parse_json_number(text: &str) -> Result<Decimal, NumberProblem> {
    let bytes = text.as_bytes();
    // The common case, a whole number of at most 19 digits without a leading zero:
    // the same value, at scale 0, as the general reading below gives.
    if let Some((&first, rest)) = bytes.split_first()
        && (b'1'..=b'9').contains(&first)
        && rest.len() < 19
        && rest.iter().all(u8::is_ascii_digit)
    {
        let value = bytes.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        return Ok(Decimal::from(value));
    }
    parse_json_number_general(text)
}

/// [`parse_json_number`] for every form.
fn parse_json_number_general(text: &str) -> Result<Decimal, NumberProblem> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &bytes[int_start..i];
    if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
        return Err(NumberProblem::NotANumber);
    }
    let mut frac_digits: &[u8] = &[];
    if bytes.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &bytes[start..i];
        if frac_digits.is_empty() {
            return Err(NumberProblem::NotANumber);
        }
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exponent_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            // Saturates far beyond any representable exponent.
            exponent = (exponent * 10 + i64::from(bytes[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return Err(NumberProblem::NotANumber);
        }
        if exponent_negative {
            exponent = -exponent;
        }
    }
    if i != bytes.len() {
        return Err(NumberProblem::NotANumber);
    }
    // The significant digits, without leading or trailing zeros.
    let all = || int_digits.iter().chain(frac_digits.iter()).copied();
    let leading = all().take_while(|&d| d == b'0').count();
    let total = int_digits.len() + frac_digits.len();
    if leading == total {
        return Ok(Decimal::ZERO);
    }
    let trailing = all().rev().take_while(|&d| d == b'0').count();
    let n_significant = total - leading - trailing;
    // value = significant × 10^-scale
    let scale = frac_digits.len() as i64 - exponent - trailing as i64;
    let integer_digits = n_significant as i64 - scale;
    if integer_digits > 29 {
        return Err(NumberProblem::TooLarge);
    }
    if scale > i64::from(Decimal::MAX_SCALE) || n_significant > 29 {
        return Err(NumberProblem::TooPrecise);
    }
    let mut mantissa: i128 = 0;
    for digit in all().skip(leading).take(n_significant) {
        mantissa = mantissa * 10 + i128::from(digit - b'0');
    }
    let (mantissa, scale) = if scale < 0 {
        let factor = 10i128
            .checked_pow(u32::try_from(-scale).map_err(|_| NumberProblem::TooLarge)?)
            .ok_or(NumberProblem::TooLarge)?;
        (
            mantissa
                .checked_mul(factor)
                .ok_or(NumberProblem::TooLarge)?,
            0,
        )
    } else {
        (mantissa, scale as u32)
    };
    let mantissa = if negative { -mantissa } else { mantissa };
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| {
        if scale > 0 {
            NumberProblem::TooPrecise
        } else {
            NumberProblem::TooLarge
        }
    })
}

/// What a walk down a path found.
enum Lookup<'de> {
    Found(&'de RawValue),
    Missing,
    NotAnObject { depth: usize, kind: &'static str },
    Repeated { depth: usize },
}

/// Walks `data` along a path in one pass, skipping everything off the path without
/// building it.
struct PathSeed<'p> {
    segments: &'p [String],
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Lookup<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Lookup<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((head, rest)) = self.segments.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Lookup::Missing);
        };
        let mut found = None;
        while let Some(is_head) = map.next_key_seed(KeyIs(head))? {
            if !is_head {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let lookup = if rest.is_empty() {
                Lookup::Found(map.next_value::<&'de RawValue>()?)
            } else {
                map.next_value_seed(PathSeed {
                    segments: rest,
                    depth: self.depth + 1,
                })?
            };
            found = Some(match found {
                None => lookup,
                Some(_) => Lookup::Repeated { depth: self.depth },
            });
        }
        Ok(found.unwrap_or(Lookup::Missing))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.not_an_object("an array"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.not_an_object("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.not_an_object("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.not_an_object("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.not_an_object("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.not_an_object("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.not_an_object("null"))
    }
}

impl PathSeed<'_> {
    fn not_an_object<'de>(&self, kind: &'static str) -> Lookup<'de> {
        Lookup::NotAnObject {
            depth: self.depth,
            kind,
        }
    }
}

/// Compares an object key with the wanted one without allocating (escaped keys
/// included).
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Framing, parse_batch};
    use std::str::FromStr;

    fn dec(value: &str) -> Decimal {
        Decimal::from_str(value).expect("decimal")
    }

    fn ts(value: &str) -> Timestamp {
        value.parse().expect("timestamp")
    }

    fn event(event_type: &str, time: &str, data: &str) -> UsageEvent {
        let body = format!(
            r#"{{"specversion":"1.0","id":"{time}","source":"polaris://test","type":"{event_type}","subject":"acme-prod","time":"{time}","data":{data}}}"#
        );
        let mut batch = parse_batch(body.as_bytes(), Framing::Single).expect("readable");
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        batch.events.remove(0).1
    }

    fn draft() -> MeterDraft {
        MeterDraft {
            name: "storage.capacity".into(),
            event_type: "storage.capacity.sampled".into(),
            value_path: Some("$.bytes_stored".into()),
            aggregation: "time_weighted_avg".into(),
            unit: "bytes".into(),
            group_by: Some("cluster_id".into()),
            dimension: Some("capacity_tib_hours".into()),
            conversion: Some("bytes_to_tib".into()),
            factor: None,
        }
    }

    fn meter(aggregation: &str, value_path: Option<&str>) -> Meter {
        MeterDraft {
            aggregation: aggregation.into(),
            value_path: value_path.map(str::to_owned),
            ..draft()
        }
        .validate()
        .expect("valid")
    }

    fn fields(result: Result<Meter, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("invalid")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    fn sample(time: &str, id: &str, value: &str) -> Sample {
        Sample {
            time: ts(time),
            key: EventKey::of("polaris://test", id),
            value: dec(value),
        }
    }

    fn hour() -> Window {
        Window::hour(ts("2026-11-16T10:00:00Z"))
    }

    fn aggregate(aggregation: Aggregation, samples: &[Sample]) -> HourAggregate {
        let mut aggregate = HourAggregate::new(aggregation, hour());
        for s in samples {
            aggregate.add(*s).expect("in the hour");
        }
        aggregate
    }

    /// A deterministic Fisher–Yates shuffle (xorshift), so no dependency is needed.
    fn shuffle<T>(items: &mut [T], seed: u64) {
        let mut state = seed | 1;
        for i in (1..items.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            items.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn paths_are_parsed_once_and_checked() {
        assert_eq!(
            ValuePath::parse("$.usage.bytes_stored").expect("path"),
            ValuePath::parse("usage.bytes_stored").expect("path")
        );
        assert_eq!(
            ValuePath::parse("usage.bytes_stored")
                .expect("path")
                .to_string(),
            "$.usage.bytes_stored"
        );
        assert!(ValuePath::parse("$").expect("root").is_root());
        for bad in ["", "$.", "a..b", "a.", ".a", "$a", "a b", "a[0]", "$.$"] {
            assert!(ValuePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_complete_draft_validates_and_reads_back() {
        let meter = draft().validate().expect("valid");
        assert_eq!(meter.aggregation, Aggregation::TimeWeightedAvg);
        assert_eq!(meter.value_path.to_string(), "$.bytes_stored");
        assert_eq!(
            meter.dimension,
            Some(DimensionFeed {
                dimension: DimensionKey::parse("capacity_tib_hours").expect("key"),
                conversion: Conversion::BytesToTiB,
            })
        );
        assert_eq!(MeterDraft::from(&meter).validate(), Ok(meter));

        let count = MeterDraft {
            aggregation: "count".into(),
            value_path: None,
            dimension: Some("requests".into()),
            conversion: Some("factor".into()),
            factor: Some("0.001".into()),
            ..draft()
        }
        .validate()
        .expect("valid");
        assert!(count.value_path.is_root());
        assert_eq!(MeterDraft::from(&count).validate(), Ok(count));
    }

    #[test]
    fn every_wrong_field_of_a_meter_is_named() {
        let bad = MeterDraft {
            name: "Storage Capacity".into(),
            event_type: "has space".into(),
            value_path: Some("a..b".into()),
            aggregation: "median".into(),
            unit: " ".into(),
            group_by: Some("$".into()),
            dimension: Some("Capacity TiB".into()),
            conversion: Some("bytes_to_pb".into()),
            factor: Some("2".into()),
        };
        assert_eq!(
            fields(bad.validate()),
            [
                "name",
                "event_type",
                "aggregation",
                "value_path",
                "unit",
                "group_by",
                "dimension",
                "factor",
                "conversion"
            ]
        );
        let sum_without_path = MeterDraft {
            aggregation: "sum".into(),
            value_path: None,
            ..draft()
        };
        assert_eq!(fields(sum_without_path.validate()), ["value_path"]);
        let sum_of_everything = MeterDraft {
            aggregation: "sum".into(),
            value_path: Some("$".into()),
            ..draft()
        };
        assert_eq!(fields(sum_of_everything.validate()), ["value_path"]);
        let count_with_path = MeterDraft {
            aggregation: "count".into(),
            ..draft()
        };
        assert_eq!(fields(count_with_path.validate()), ["value_path"]);
        let bad_factor = MeterDraft {
            conversion: Some("factor".into()),
            factor: Some("-1".into()),
            ..draft()
        };
        assert_eq!(fields(bad_factor.validate()), ["factor"]);
        let no_factor = MeterDraft {
            conversion: Some("factor".into()),
            ..draft()
        };
        assert_eq!(fields(no_factor.validate()), ["factor"]);
        let conversion_without_dimension = MeterDraft {
            dimension: None,
            ..draft()
        };
        assert_eq!(
            fields(conversion_without_dimension.validate()),
            ["conversion"]
        );
    }

    #[test]
    fn whole_numbers_read_directly_are_those_of_the_general_reading() {
        let mut texts: Vec<String> = ["0", "1", "9", "10", "1000", "9999999999999999999"]
            .map(str::to_owned)
            .to_vec();
        let mut n = 1u64;
        while let Some(next) = n.checked_mul(7) {
            texts.push(n.to_string());
            texts.push((n - 1).to_string());
            n = next + 3;
        }
        texts.extend(["10000000000000000000", "01", "-5", "1.0", "1e3"].map(str::to_owned));
        for text in texts {
            let (direct, general) = (parse_json_number(&text), parse_json_number_general(&text));
            assert_eq!(direct, general, "{text}");
            if let (Ok(a), Ok(b)) = (direct, general) {
                assert_eq!(
                    (a.mantissa(), a.scale()),
                    (b.mantissa(), b.scale()),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn values_are_read_exactly_from_integers_decimals_and_numeric_strings() {
        let m = meter("sum", Some("$.usage.bytes"));
        let value = |data: &str| {
            m.value(&event(
                "storage.capacity.sampled",
                "2026-11-16T10:00:00Z",
                data,
            ))
        };
        assert_eq!(
            value(r#"{"usage":{"bytes":1099511627776}}"#),
            Ok(dec("1099511627776"))
        );
        assert_eq!(
            value(r#"{"usage":{"bytes":18446744073709551616123}}"#),
            Ok(dec("18446744073709551616123")),
            "beyond u64, still exact"
        );
        assert_eq!(value(r#"{"usage":{"bytes":0.1}}"#), Ok(dec("0.1")));
        assert_eq!(value(r#"{"usage":{"bytes":-12.500}}"#), Ok(dec("-12.5")));
        assert_eq!(value(r#"{"usage":{"bytes":"42.25"}}"#), Ok(dec("42.25")));
        assert_eq!(value(r#"{"usage":{"bytes":1.5E+3}}"#), Ok(dec("1500")));
        assert_eq!(value(r#"{"usage":{"bytes":25e-2}}"#), Ok(dec("0.25")));
        assert_eq!(value(r#"{"usage":{"bytes":"1e3"}}"#), Ok(dec("1000")));
        assert_eq!(
            value(r#"{"other":[{"bytes":1}],"usage":{"note":"x","bytes":7},"z":null}"#),
            Ok(dec("7")),
            "the walk skips what is off the path"
        );
        assert_eq!(
            value(r#"{"usage":{"byt\u0065s":3}}"#),
            Ok(dec("3")),
            "escaped keys match"
        );
        assert_eq!(
            value(r#"{"usage":{"bytes":0.0000000000000000000000000001}}"#),
            Ok(dec("0.0000000000000000000000000001"))
        );
    }

    #[test]
    fn unreadable_values_name_the_path() {
        let m = meter("sum", Some("$.usage.bytes"));
        let value = |data: &str| {
            m.value(&event(
                "storage.capacity.sampled",
                "2026-11-16T10:00:00Z",
                data,
            ))
        };
        assert_eq!(
            value(r#"{"usage":{}}"#),
            Err(ValueError::Missing {
                path: "$.usage.bytes".into()
            })
        );
        assert_eq!(
            value(r#"{"usage":7}"#),
            Err(ValueError::NotAnObject {
                path: "$.usage.bytes".into(),
                at: "$.usage".into(),
                found: "a number",
            })
        );
        assert_eq!(
            value(r#"{"usage":{"bytes":true}}"#),
            Err(ValueError::NotANumber {
                path: "$.usage.bytes".into(),
                found: "a boolean".into(),
            })
        );
        let error = value(r#"{"usage":{"bytes":"12 GB"}}"#).expect_err("not a number");
        assert_eq!(
            error.to_string(),
            "`$.usage.bytes` is the string \"12 GB\", not a number"
        );
        for not_numbers in [
            r#"" 12""#,
            r#""0x10""#,
            r#""+5""#,
            r#""1_000""#,
            r#""01""#,
            r#""""#,
            "null",
            "[1]",
            "{}",
        ] {
            let data = format!(r#"{{"usage":{{"bytes":{not_numbers}}}}}"#);
            assert!(
                matches!(value(&data), Err(ValueError::NotANumber { .. })),
                "{not_numbers}"
            );
        }
        assert_eq!(
            value(r#"{"usage":{"bytes":1,"bytes":2}}"#),
            Err(ValueError::Repeated {
                path: "$.usage.bytes".into()
            })
        );
        assert!(matches!(
            value(r#"{"usage":{"bytes":0.00000000000000000000000000001}}"#),
            Err(ValueError::TooPrecise { .. })
        ));
        assert!(matches!(
            value(r#"{"usage":{"bytes":1e40}}"#),
            Err(ValueError::TooLarge { .. })
        ));
        assert!(matches!(
            value(r#"{"usage":{"bytes":99999999999999999999999999999}}"#),
            Err(ValueError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_count_reads_no_value_and_groups_are_strings_or_numbers() {
        let count = meter("count", None);
        let e = event(
            "storage.capacity.sampled",
            "2026-11-16T10:00:00Z",
            r#"{"cluster_id":"c-1"}"#,
        );
        assert_eq!(count.value(&e), Ok(Decimal::ONE));
        assert_eq!(count.group(&e), Ok(Some("c-1".into())));
        let numbered = event(
            "storage.capacity.sampled",
            "2026-11-16T10:00:00Z",
            r#"{"cluster_id":17}"#,
        );
        assert_eq!(count.group(&numbered), Ok(Some("17".into())));
        let listed = event(
            "storage.capacity.sampled",
            "2026-11-16T10:00:00Z",
            r#"{"cluster_id":[1]}"#,
        );
        assert!(matches!(
            count.group(&listed),
            Err(ValueError::NotAGroup { .. })
        ));
        let nameless = event("storage.capacity.sampled", "2026-11-16T10:00:00Z", r#"{}"#);
        assert!(matches!(
            count.group(&nameless),
            Err(ValueError::Missing { .. })
        ));
    }

    #[test]
    fn a_measurement_places_the_event_in_its_hour_and_group() {
        let m = meter("time_weighted_avg", Some("$.bytes_stored"));
        let e = event(
            "storage.capacity.sampled",
            "2026-11-16T10:59:59.5Z",
            r#"{"cluster_id":"c-1","bytes_stored":5}"#,
        );
        let measurement = m.measure(&e).expect("measurable");
        assert_eq!(
            measurement.key,
            HourKey {
                account: "acme-prod".into(),
                meter: "storage.capacity".into(),
                hour: ts("2026-11-16T10:00:00Z"),
                group: Some("c-1".into()),
            }
        );
        assert_eq!(measurement.sample.value, dec("5"));
        assert_eq!(measurement.sample.key, e.key());
        let other = event("storage.io.counted", "2026-11-16T10:00:00Z", r#"{}"#);
        assert!(!m.applies_to(&other));
        assert!(matches!(
            m.measure(&other),
            Err(ValueError::OtherType { .. })
        ));
    }

    fn samples() -> Vec<Sample> {
        vec![
            sample("2026-11-16T10:00:00Z", "a", "4"),
            sample("2026-11-16T10:15:00Z", "b", "1.5"),
            sample("2026-11-16T10:30:00Z", "c", "10"),
            sample("2026-11-16T10:30:00Z", "d", "-2"),
            sample("2026-11-16T10:45:00Z", "e", "0.25"),
        ]
    }

    #[test]
    fn each_aggregation_combines_as_named() {
        let s = samples();
        let value = |aggregation| aggregate(aggregation, &s).value(None).expect("fits");
        assert_eq!(value(Aggregation::Sum), Some(dec("13.75")));
        assert_eq!(value(Aggregation::Count), Some(dec("5")));
        assert_eq!(value(Aggregation::Min), Some(dec("-2")));
        assert_eq!(value(Aggregation::Max), Some(dec("10")));
        assert_eq!(value(Aggregation::Avg), Some(dec("2.75")));
        assert_eq!(value(Aggregation::Latest), Some(dec("0.25")));
        // 10:30 holds two samples; the one with the greater key holds from then on.
        let held_at_half_past =
            if EventKey::of("polaris://test", "c") > EventKey::of("polaris://test", "d") {
                dec("10")
            } else {
                dec("-2")
            };
        // 4 for 15 min, 1.5 for 15, the 10:30 winner for 15, 0.25 for 15.
        let twa = (dec("4") + dec("1.5") + held_at_half_past + dec("0.25")) / dec("4");
        assert_eq!(value(Aggregation::TimeWeightedAvg), Some(twa.normalize()));
        // Latest breaks ties on time by the greater key too.
        let tied = aggregate(Aggregation::Latest, &s[..4]);
        assert_eq!(tied.value(None).expect("fits"), Some(held_at_half_past));
        assert_eq!(aggregate(Aggregation::Sum, &s).n_events(), 5);
    }

    #[test]
    fn an_empty_hour_reports_zero_sums_and_nothing_else() {
        for aggregation in Aggregation::ALL {
            let value = aggregate(aggregation, &[]).value(None).expect("fits");
            match aggregation {
                Aggregation::Sum | Aggregation::Count => assert_eq!(value, Some(Decimal::ZERO)),
                _ => assert_eq!(value, None, "{aggregation}"),
            }
        }
    }

    #[test]
    fn the_result_does_not_depend_on_arrival_order() {
        let mut all: Vec<Sample> = (0..60)
            .map(|i| {
                let time = format!("2026-11-16T10:{:02}:{:02}Z", (i * 7) % 60, i % 3);
                let value = format!("{}.{}", (i * 37) % 101, i % 10);
                sample(&time, &format!("e-{i}"), &value)
            })
            .collect();
        // A few exact ties on time, so the key decides.
        all.push(sample("2026-11-16T10:59:00Z", "tie-1", "1"));
        all.push(sample("2026-11-16T10:59:00Z", "tie-2", "2"));
        for aggregation in Aggregation::ALL {
            let expected = aggregate(aggregation, &all);
            let expected_value = expected.value(Some(dec("3"))).expect("fits");
            for seed in 1..20u64 {
                let mut shuffled = all.clone();
                shuffle(&mut shuffled, seed);
                let got = aggregate(aggregation, &shuffled);
                assert_eq!(
                    got.value(Some(dec("3"))).expect("fits"),
                    expected_value,
                    "{aggregation}"
                );
                assert_eq!(got.last_sample(), expected.last_sample(), "{aggregation}");
                // Split into two arbitrary parts and merge either way round.
                let cut = (seed as usize * 7) % shuffled.len();
                let (left, right) = shuffled.split_at(cut);
                let mut merged = aggregate(aggregation, right);
                merged
                    .merge(&aggregate(aggregation, left))
                    .expect("same hour");
                assert_eq!(
                    merged.value(Some(dec("3"))).expect("fits"),
                    expected_value,
                    "{aggregation}"
                );
                assert_eq!(merged.n_events(), all.len() as u64);
            }
        }
    }

    #[test]
    fn the_time_weighted_average_of_a_gauge() {
        let tib = BYTES_PER_TIB;
        let ten = format!("{}", 10 * tib);
        let twenty = format!("{}", 20 * tib);
        let half_and_half = aggregate(
            Aggregation::TimeWeightedAvg,
            &[
                sample("2026-11-16T10:30:00Z", "2", &twenty),
                sample("2026-11-16T10:00:00Z", "1", &ten),
            ],
        );
        assert_eq!(
            half_and_half.value(None).expect("fits"),
            Some(Decimal::from(15 * tib))
        );
        assert_eq!(
            half_and_half
                .quantity(&Conversion::BytesToTiB, None)
                .expect("fits"),
            Some(dec("15"))
        );

        // The first sample at 10:15: without a carry-in the average starts there;
        // with one, the previous hour's last value holds until 10:15.
        let late_start = aggregate(
            Aggregation::TimeWeightedAvg,
            &[sample("2026-11-16T10:15:00Z", "1", "20")],
        );
        assert_eq!(late_start.value(None).expect("fits"), Some(dec("20")));
        assert_eq!(
            late_start.value(Some(dec("10"))).expect("fits"),
            Some(dec("17.5"))
        );
        // No sample this hour: the carried value holds all hour.
        let silent = aggregate(Aggregation::TimeWeightedAvg, &[]);
        assert_eq!(
            silent.value(Some(dec("10"))).expect("fits"),
            Some(dec("10"))
        );
        assert_eq!(silent.value(None).expect("fits"), None);
        // A carry-in only concerns the time-weighted average.
        let sum = aggregate(
            Aggregation::Sum,
            &[sample("2026-11-16T10:15:00Z", "1", "20")],
        );
        assert_eq!(sum.value(Some(dec("10"))).expect("fits"), Some(dec("20")));

        // Sub-second times count to the microsecond: 1 for 0.5 s, then 3 until the end.
        let fine = aggregate(
            Aggregation::TimeWeightedAvg,
            &[
                sample("2026-11-16T10:59:59Z", "1", "1"),
                sample("2026-11-16T10:59:59.5Z", "2", "3"),
            ],
        );
        assert_eq!(fine.value(None).expect("fits"), Some(dec("2")));
        assert_eq!(
            fine.last_sample().map(|s| s.value),
            Some(dec("3")),
            "the value carried into the next hour"
        );
    }

    #[test]
    fn averages_are_rounded_once_half_away_from_zero() {
        let thirds = aggregate(
            Aggregation::Avg,
            &[
                sample("2026-11-16T10:00:00Z", "1", "1"),
                sample("2026-11-16T10:01:00Z", "2", "1"),
                sample("2026-11-16T10:02:00Z", "3", "0"),
            ],
        );
        assert_eq!(
            thirds.value(None).expect("fits"),
            Some(dec("0.666666666667"))
        );
        // Exactly half a unit of the last place: half-up gives 1e-12 where banker's
        // rounding would give 0; negative values round away from zero.
        let midpoint = aggregate(
            Aggregation::Avg,
            &[
                sample("2026-11-16T10:00:00Z", "1", "0.000000000001"),
                sample("2026-11-16T10:01:00Z", "2", "0"),
            ],
        );
        assert_eq!(
            midpoint.value(None).expect("fits"),
            Some(dec("0.000000000001"))
        );
        let negative = aggregate(
            Aggregation::Avg,
            &[
                sample("2026-11-16T10:00:00Z", "1", "-0.000000000003"),
                sample("2026-11-16T10:01:00Z", "2", "0"),
            ],
        );
        assert_eq!(
            negative.value(None).expect("fits"),
            Some(dec("-0.000000000002"))
        );
        // A large gauge (2 PiB) keeps its 12 places where a Decimal division would
        // have rounded at 28 digits first.
        let big = aggregate(
            Aggregation::Avg,
            &[
                sample("2026-11-16T10:00:00Z", "1", "2251799813685248"),
                sample("2026-11-16T10:01:00Z", "2", "2251799813685249"),
            ],
        );
        assert_eq!(
            big.value(None).expect("fits"),
            Some(dec("2251799813685248.5"))
        );
    }

    #[test]
    fn conversions_are_exact() {
        let three_tib = Decimal::from(3 * BYTES_PER_TIB);
        assert_eq!(Conversion::BytesToTiB.apply(three_tib), Ok(dec("3")));
        assert_eq!(
            Conversion::BytesToGiB.apply(Decimal::from(3 * BYTES_PER_GIB / 2)),
            Ok(dec("1.5"))
        );
        assert_eq!(
            Conversion::SecondsToHours.apply(dec("5400")),
            Ok(dec("1.5"))
        );
        assert_eq!(
            Conversion::SecondsToHours.apply(dec("1")),
            Ok(dec("0.000277777778"))
        );
        assert_eq!(
            Conversion::Factor(dec("0.001")).apply(dec("1234")),
            Ok(dec("1.234"))
        );
        assert_eq!(Conversion::Identity.apply(dec("1.50")), Ok(dec("1.5")));
        // One byte is 2^-40 TiB = 0.000000000000909…: rounded to 12 places.
        assert_eq!(
            Conversion::BytesToTiB.apply(Decimal::ONE),
            Ok(dec("0.000000000001"))
        );
        // A feed converts the hour's aggregate with a single rounding.
        let feed = draft().validate().expect("valid").dimension.expect("feeds");
        let gauge = aggregate(
            Aggregation::TimeWeightedAvg,
            &[sample(
                "2026-11-16T10:00:00Z",
                "1",
                &(5 * BYTES_PER_TIB).to_string(),
            )],
        );
        assert_eq!(feed.quantity(&gauge, None), Ok(Some(dec("5"))));
    }

    #[test]
    fn samples_outside_the_hour_and_mismatched_merges_are_refused() {
        let mut aggregate = HourAggregate::new(Aggregation::Sum, hour());
        assert!(matches!(
            aggregate.add(sample("2026-11-16T11:00:00Z", "1", "1")),
            Err(AggregateError::OutsideHour { .. })
        ));
        assert!(matches!(
            aggregate.add(sample("2026-11-16T09:59:59.999Z", "1", "1")),
            Err(AggregateError::OutsideHour { .. })
        ));
        assert_eq!(aggregate.n_events(), 0);
        let other_hour = HourAggregate::new(Aggregation::Sum, hour().next());
        assert!(matches!(
            aggregate.merge(&other_hour),
            Err(AggregateError::Mismatch { .. })
        ));
        let other_kind = HourAggregate::new(Aggregation::Max, hour());
        assert!(matches!(
            aggregate.merge(&other_kind),
            Err(AggregateError::Mismatch { .. })
        ));
    }

    #[test]
    fn sums_that_would_lose_digits_are_errors_not_roundings() {
        let mut aggregate = aggregate(
            Aggregation::Sum,
            &[sample(
                "2026-11-16T10:00:00Z",
                "1",
                "50000000000000000000000000000",
            )],
        );
        assert_eq!(
            aggregate.add(sample("2026-11-16T10:01:00Z", "2", "0.1")),
            Err(AggregateError::Overflow { what: "sum" })
        );
        assert_eq!(aggregate.n_events(), 1, "a refused sample is not counted");
        assert_eq!(
            exact_add(dec("1.5"), dec("1.5")),
            Some(dec("3.0")),
            "ordinary sums are exact"
        );
        assert_eq!(exact_mul(dec("0.1"), dec("0.1")), Some(dec("0.01")));
        assert_eq!(exact_mul(dec("0.0"), dec("3600")), Some(Decimal::ZERO));
        assert_eq!(exact_add(dec("0.5"), dec("-0.5")), Some(Decimal::ZERO));
    }
}
