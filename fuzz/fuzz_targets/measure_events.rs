//! Fuzzes the meters (`purser_core::meter`): reading values from events' `data` and
//! aggregating them per hour.
//!
//! The input is a list of records separated by 0xFF bytes (never part of UTF-8 text).
//! A record is 4 header bytes (type, subject, id, hour, minute, second, microsecond)
//! then the event's `data`, the text the fuzzer mostly works on; each record becomes a
//! CloudEvent read by `parse_batch`, and the events kept are measured by fixed meters
//! (sum, avg, min, max, latest over `$.v`; time-weighted average over `$.v` and count,
//! both grouped by `$.g`; a sum over `$.u.v` grouped by `$.u.g`).
//!
//! Properties, beyond "never panics":
//! - events read by the scanner of the common shape (whose `data` members are indexed
//!   at parsing) measure exactly as the same events read by the general reader alone;
//! - a measurement places the event in its account, meter, hour and group, with its
//!   time and key; meters reading the same path read the same value; a count reads 1;
//!   an event of another type is refused as such;
//! - a value read is the number written: it equals `rust_decimal`'s exact reading of
//!   the JSON number, and a JSON number `rust_decimal` holds exactly is never refused;
//! - per hour and group, after deduplication by event key, adding the samples in
//!   different orders, or merging two parts either way round, gives the same result,
//!   count and carried sample; the result is what the aggregation names (count, exact
//!   sum, min, max, latest by (time, key)), and averages lie between min and max (to
//!   the rounding); a sample outside the hour is refused and not counted.

#![no_main]

use std::collections::{BTreeMap, HashSet};

use libfuzzer_sys::fuzz_target;
use purser_core::events::{Framing, UsageEvent, parse_batch, parse_batch_general};
use purser_core::meter::{
    AggregateError, Aggregation, HourAggregate, HourKey, Measurement, Meter, MeterDraft, Sample,
    ValueError,
};
use purser_core::time::Window;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// The meters: (aggregation, value path, group by).
const METERS: [(&str, Option<&str>, Option<&str>); 8] = [
    ("sum", Some("$.v"), None),
    ("avg", Some("$.v"), None),
    ("min", Some("$.v"), None),
    ("max", Some("$.v"), None),
    ("latest", Some("v"), None),
    ("time_weighted_avg", Some("$.v"), Some("$.g")),
    ("count", None, Some("g")),
    ("sum", Some("$.u.v"), Some("$.u.g")),
];

fn meters() -> Vec<Meter> {
    METERS
        .iter()
        .enumerate()
        .map(|(i, (aggregation, path, group))| {
            MeterDraft {
                name: format!("m{i}.{aggregation}"),
                event_type: "t".into(),
                value_path: path.map(str::to_owned),
                aggregation: (*aggregation).into(),
                unit: "bytes".into(),
                group_by: group.map(str::to_owned),
                ..MeterDraft::default()
            }
            .validate()
            .expect("the fuzz meters are valid")
        })
        .collect()
}

/// One record as a CloudEvent (`None` when the record is too short or not UTF-8).
fn event_body(record: &[u8]) -> Option<String> {
    let (&[h0, h1, h2, h3], data) = record.split_first_chunk::<4>()?;
    let data = std::str::from_utf8(data).ok()?;
    let event_type = if h0 & 1 == 0 { "t" } else { "other" };
    let subject = if h0 & 2 == 0 { "acme" } else { "globex" };
    let id = h0 >> 4;
    let hour = 10 + ((h0 >> 2) & 3);
    let (minute, second) = (h1 % 60, h2 % 60);
    // Many samples share an instant: ties are broken by key.
    let micros = match h3 {
        0..=127 => 0,
        _ => u32::from(h3) * 7_777 % 1_000_000,
    };
    Some(format!(
        r#"{{"specversion":"1.0","id":"e{id}","source":"polaris://fuzz","type":"{event_type}","subject":"{subject}","time":"2026-11-16T{hour}:{minute:02}:{second:02}.{micros:06}Z","data":{data}}}"#
    ))
}

fuzz_target!(|input: &[u8]| {
    let meters = meters();
    let mut events: Vec<UsageEvent> = Vec::new();
    for record in input.split(|&b| b == 0xFF) {
        let Some(body) = event_body(record) else {
            continue;
        };
        let general = parse_batch_general(body.as_bytes(), Framing::Single);
        if let Ok(parsed) = parse_batch(body.as_bytes(), Framing::Single) {
            for ((_, fast), (_, slow)) in parsed
                .events
                .iter()
                .zip(general.iter().flat_map(|g| &g.events))
            {
                for meter in &meters {
                    assert_eq!(
                        meter.measure(fast),
                        meter.measure(slow),
                        "{}: the index of data reads as data does ({})",
                        meter.name,
                        fast.data()
                    );
                }
            }
            events.extend(parsed.events.into_iter().map(|(_, e)| e));
        }
    }
    // Deduplication by key comes before aggregation (first seen kept).
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.key()));

    let mut measured: Vec<Vec<Measurement>> = vec![Vec::new(); meters.len()];
    for event in &events {
        let results: Vec<Result<Measurement, ValueError>> =
            meters.iter().map(|m| m.measure(event)).collect();
        check_measurements(&meters, event, &results);
        for (i, result) in results.into_iter().enumerate() {
            if let Ok(m) = result {
                measured[i].push(m);
            }
        }
    }

    for (meter, measurements) in meters.iter().zip(measured) {
        let mut groups: BTreeMap<HourKey, Vec<Sample>> = BTreeMap::new();
        for m in measurements {
            groups.entry(m.key).or_default().push(m.sample);
        }
        for (key, samples) in &groups {
            check_aggregation(meter.aggregation, Window::hour(key.hour), samples);
        }
    }
});

/// One event through every meter.
fn check_measurements(
    meters: &[Meter],
    event: &UsageEvent,
    results: &[Result<Measurement, ValueError>],
) {
    for (meter, result) in meters.iter().zip(results) {
        if event.event_type() != "t" {
            assert!(
                matches!(result, Err(ValueError::OtherType { .. })),
                "{}: read an event of another type: {result:?}",
                meter.name
            );
            continue;
        }
        assert_eq!(
            meter
                .value(event)
                .and_then(|value| Ok((value, meter.group(event)?))),
            result
                .clone()
                .map(|m| (m.sample.value, m.key.group.clone())),
            "{}: measure is value and group",
            meter.name
        );
        let Ok(m) = result else {
            continue;
        };
        assert_eq!(m.key.account, event.subject());
        assert_eq!(m.key.meter, meter.name);
        assert_eq!(m.key.hour, Window::hour(event.time()).start);
        assert!(Window::hour(m.key.hour).contains(event.time()));
        assert_eq!(m.sample.time, event.time());
        assert_eq!(m.sample.key, event.key());
        if meter.aggregation == Aggregation::Count {
            assert_eq!(m.sample.value, Decimal::ONE, "a count reads 1");
        }
    }
    if event.event_type() != "t" {
        return;
    }
    // The five ungrouped meters over `$.v` read the same.
    let over_v = &results[..5];
    for other in &over_v[1..] {
        assert_eq!(
            other.as_ref().map(|m| m.sample.value).ok(),
            over_v[0].as_ref().map(|m| m.sample.value).ok(),
            "meters over $.v disagree on {}",
            event.data()
        );
    }
    // The grouped ones read the same value and the same group.
    if let (Ok(twa), Ok(sum)) = (&results[5], &over_v[0]) {
        assert_eq!(twa.sample.value, sum.sample.value);
    }
    if let (Ok(twa), Ok(count)) = (&results[5], &results[6]) {
        assert_eq!(twa.key.group, count.key.group);
    }
    match &over_v[0] {
        Ok(sum) => {
            assert_eq!(
                results[5].is_ok(),
                results[6].is_ok(),
                "a readable value: grouped meters agree on the group of {}",
                event.data()
            );
            check_number(event.data(), Some(sum.sample.value));
        }
        Err(
            ValueError::NotANumber { .. }
            | ValueError::TooLarge { .. }
            | ValueError::TooPrecise { .. },
        ) => check_number(event.data(), None),
        Err(_) => {}
    }
}

/// `$.v` read by the meter (`read`, `None` when refused as a number) against
/// `rust_decimal`'s exact reading of the same JSON text.
fn check_number(data: &str, read: Option<Decimal>) {
    let Ok(object) = serde_json::from_str::<BTreeMap<String, &RawValue>>(data) else {
        return;
    };
    let Some(raw) = object.get("v") else {
        return;
    };
    let text = raw.get();
    let is_json_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let (text, is_json_number) = if is_json_number {
        (text.to_owned(), true)
    } else if let Ok(inner) = serde_json::from_str::<String>(text) {
        (inner, false)
    } else {
        return;
    };
    let exact = if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text).ok()
    } else {
        Decimal::from_str_exact(&text).ok()
    };
    match (read, exact) {
        (Some(read), Some(exact)) => {
            assert_eq!(read, exact, "`{text}` read as {read}");
            assert_eq!(
                read.scale(),
                read.normalize().scale(),
                "`{text}` read as {read}, with trailing zeros"
            );
        }
        // A JSON number a Decimal holds exactly is never refused (a string is read
        // by JSON's grammar, stricter than rust_decimal's).
        (None, Some(exact)) if is_json_number && !text.contains(['e', 'E']) => {
            panic!("`{text}` refused, though it is exactly {exact}")
        }
        _ => {}
    }
}

fn aggregate(
    aggregation: Aggregation,
    hour: Window,
    samples: impl IntoIterator<Item = Sample>,
) -> Result<HourAggregate, AggregateError> {
    let mut aggregate = HourAggregate::new(aggregation, hour);
    for sample in samples {
        aggregate.add(sample)?;
    }
    Ok(aggregate)
}

/// What an aggregate reports, for comparisons; results as text, since the same
/// result must always have the same text.
type Outcome = (
    u64,
    Option<Sample>,
    Result<Option<String>, AggregateError>,
    Result<Option<String>, AggregateError>,
);

fn outcome(aggregate: &HourAggregate) -> Outcome {
    let text =
        |value: Result<Option<Decimal>, AggregateError>| value.map(|v| v.map(|v| v.to_string()));
    (
        aggregate.n_events(),
        aggregate.last_sample().copied(),
        text(aggregate.value(None)),
        text(aggregate.value(Some(Decimal::new(-25, 1)))),
    )
}

/// One hour × group of one meter: the same samples in several orders.
fn check_aggregation(aggregation: Aggregation, hour: Window, samples: &[Sample]) {
    let forward = aggregate(aggregation, hour, samples.iter().copied());
    let backward = aggregate(aggregation, hour, samples.iter().rev().copied());
    let mut by_value = samples.to_vec();
    by_value.sort_by(|a, b| a.value.cmp(&b.value).then(b.key.cmp(&a.key)));
    let sorted = aggregate(aggregation, hour, by_value.iter().copied());
    let half = samples.len() / 2;
    let (left, right) = samples.split_at(half);
    let merged = |first: &[Sample], second: &[Sample]| {
        let mut a = aggregate(aggregation, hour, first.iter().copied())?;
        a.merge(&aggregate(aggregation, hour, second.iter().copied())?)?;
        Ok::<_, AggregateError>(a)
    };
    let orders = [
        ("backward", backward),
        ("by value", sorted),
        ("merged", merged(left, right)),
        ("merged the other way", merged(right, left)),
    ];
    // Known gap (meter.rs, reported, not fixed here): a running sum refuses a sample
    // whose addition overflows the exact decimal, so whether a sum or average hour
    // overflows depends on the order: 5e28 + 5e28 overflows before -5e28 comes, but
    // not after it. Until that is fixed, an overflow in any order skips the order
    // comparison; it must still be a sum overflow, and only for sum and avg.
    let refused: Vec<&AggregateError> = std::iter::once(&forward)
        .chain(orders.iter().map(|(_, o)| o))
        .filter_map(|o| o.as_ref().err())
        .collect();
    if !refused.is_empty() {
        for e in refused {
            assert!(
                matches!(aggregation, Aggregation::Sum | Aggregation::Avg)
                    && *e == AggregateError::Overflow { what: "sum" },
                "{aggregation}: adding refused ({e}): {samples:?}"
            );
        }
        return;
    }
    let Ok(forward) = forward else {
        return;
    };
    let expected = outcome(&forward);
    for (name, other) in &orders {
        if let Ok(other) = other {
            assert_eq!(
                outcome(other),
                expected,
                "{aggregation}: {name} differs from forward: {samples:?}"
            );
        }
    }
    check_result(aggregation, &forward, samples);

    // A sample outside the hour is refused and not counted.
    let mut outside = forward.clone();
    let late = Sample {
        time: hour.end(),
        ..samples[0]
    };
    assert!(matches!(
        outside.add(late),
        Err(AggregateError::OutsideHour { .. })
    ));
    assert_eq!(outside, forward);
}

/// The result is what the aggregation names.
fn check_result(aggregation: Aggregation, aggregate: &HourAggregate, samples: &[Sample]) {
    let n = samples.len();
    assert_eq!(aggregate.n_events(), n as u64);
    let min = samples.iter().map(|s| s.value).min();
    let max = samples.iter().map(|s| s.value).max();
    let latest = samples.iter().max_by_key(|s| (s.time, s.key)).copied();
    // Rounding to 12 places moves an average by at most half a unit of the last.
    let slack = Decimal::new(1, 12);
    let between = |value: Decimal, low: Decimal, high: Decimal| {
        value >= low.saturating_sub(slack) && value <= high.saturating_add(slack)
    };
    let Ok(value) = aggregate.value(None) else {
        return;
    };
    match aggregation {
        Aggregation::Count => assert_eq!(value, Some(Decimal::from(n))),
        Aggregation::Sum => {
            let total = samples
                .iter()
                .try_fold(Decimal::ZERO, |t, s| t.checked_add(s.value));
            if let Some(total) = total {
                assert_eq!(value, Some(total.normalize()), "sum of {samples:?}");
            }
        }
        Aggregation::Min => assert_eq!(value, min.map(|v| v.normalize())),
        Aggregation::Max => assert_eq!(value, max.map(|v| v.normalize())),
        Aggregation::Latest => {
            assert_eq!(value, latest.map(|s| s.value.normalize()));
            assert_eq!(aggregate.last_sample().copied(), latest);
        }
        Aggregation::Avg | Aggregation::TimeWeightedAvg => {
            let (Some(value), Some(min), Some(max)) = (value, min, max) else {
                panic!("{aggregation} of {n} samples is {value:?}");
            };
            assert!(
                between(value, min, max),
                "{aggregation} {value} outside [{min}, {max}]: {samples:?}"
            );
            if aggregation == Aggregation::TimeWeightedAvg {
                let carry = Decimal::new(-25, 1);
                if let Ok(Some(with_carry)) = aggregate.value(Some(carry)) {
                    assert!(
                        between(with_carry, min.min(carry), max.max(carry)),
                        "{aggregation} {with_carry} (carry {carry}) outside [{min}, {max}]"
                    );
                }
                assert_eq!(aggregate.last_sample().copied(), latest);
            }
        }
    }
}
