//! Closing an account's hour: from the samples behind it to metered quantities per
//! meter and group, quantities per offer dimension, and their rating against the
//! account's entitlement. No I/O: storage gathers the samples, this decides what they
//! come to, and the same function serves the closing job and `purser verify`, so a
//! recomputation can only differ when the stored input or result changed.
//!
//! Late adjustments: an event that arrives after its hour `H` closed is booked into a
//! later open hour `B`. Its effect is the difference it makes to `H`: the value of `H`
//! with every event booked up to and including `B`, minus its value with those booked
//! before `B`. For sums and counts that is the event's own value; for averages and
//! gauges it is the honest change of the hour's result. The closed hour's own record
//! never changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::commercial::{BillingPeriod, DimensionKey, Entitlement, Offer, RatedHour};
use crate::events::EventKey;
use crate::evidence::input_digest;
use crate::meter::{AggregateError, HourAggregate, Meter, Sample};
use crate::money::MoneyError;
use crate::time::Window;

/// One accepted event's contribution to one meter of one account.
///
/// Meter and group names are shared (`Arc<str>`): an hour holds tens of thousands of
/// contributions naming a handful of meters and groups, and copying each name would
/// cost more than the arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub meter: Arc<str>,
    pub group: Option<Arc<str>>,
    pub sample: Sample,
}

/// Where an aggregate lives inside an account's hour: meter and group.
pub type Series = (Arc<str>, Option<Arc<str>>);

/// The last value of each series in an hour, carried into the next for gauges.
pub type CarryOut = BTreeMap<Series, Decimal>;

/// The samples of one late hour `H` that change in booked hour `B`.
#[derive(Debug, Clone, Default)]
pub struct LateHour {
    pub hour: Timestamp,
    /// The carry-in `H` was closed with.
    pub carry_in: CarryOut,
    /// Events of `H` booked before `B` (on time, or late into earlier hours).
    pub before: Vec<Contribution>,
    /// Events of `H` booked into `B`.
    pub added: Vec<Contribution>,
}

/// Everything that decides an account's closed hour.
#[derive(Debug, Clone)]
pub struct AccountHourInput<'a> {
    pub account_id: &'a str,
    pub hour: Timestamp,
    pub meters: &'a BTreeMap<String, Meter>,
    /// Events of this hour booked into it.
    pub on_time: Vec<Contribution>,
    /// The previous hour's last values (gauges hold their value across hours).
    pub carry_in: CarryOut,
    pub late: Vec<LateHour>,
    /// The entitlement in force at the hour, with its offer.
    pub entitlement: Option<(&'a Entitlement, &'a Offer)>,
    /// What the billing period consumed before this hour, per committed dimension.
    pub consumed_before: BTreeMap<DimensionKey, Decimal>,
}

/// One meter × group of a closed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeterHour {
    pub meter: String,
    pub group: Option<String>,
    pub n_events: u64,
    /// The aggregate in the meter's unit; `None` when there is nothing to report.
    pub value: Option<Decimal>,
    /// The value in its dimension's unit, when the meter feeds one.
    pub quantity: Option<Decimal>,
    /// The value that holds into the next hour (gauges).
    pub carry_out: Option<Decimal>,
}

/// A late hour's change, booked into this hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    pub meter: String,
    pub group: Option<String>,
    /// The hour the late events belong to.
    pub hour: Timestamp,
    pub n_events: u64,
    /// The change of that hour's dimension quantity.
    pub quantity: Decimal,
}

/// A dimension's quantity for the hour and its rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DimensionHour {
    pub dimension: DimensionKey,
    /// Metered this hour, late adjustments included, in the dimension's unit.
    pub quantity: Decimal,
    /// How much of it is late adjustments.
    pub adjustment: Decimal,
}

/// A committed quantity's hour: what counted against the commitment and beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatedDimension {
    pub dimension: DimensionKey,
    pub entitlement_id: String,
    pub period_start: Timestamp,
    pub committed: Decimal,
    pub rated: RatedHour,
}

/// An account's closed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountHour {
    pub account_id: String,
    pub hour: Timestamp,
    pub meters: Vec<MeterHour>,
    pub adjustments: Vec<Adjustment>,
    pub dimensions: Vec<DimensionHour>,
    pub rating: Vec<RatedDimension>,
    /// Dimensions metered but not priced by the offer (flagged, not billed).
    pub unpriced: Vec<DimensionKey>,
    /// Whether no entitlement was in force: usage is recorded, nothing is rated.
    pub unentitled: bool,
}

/// Why an hour could not be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClosingError {
    #[error("meter `{0}` is not defined")]
    UnknownMeter(String),
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl AccountHour {
    /// The result as canonical JSON text: what the evidence record hashes.
    pub fn result_json(&self) -> String {
        // Serialising plain structs, maps with string keys and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The digest and count of the exact events behind an account's hour: on-time events
/// and the late events booked into it.
pub fn hour_input_digest(input: &AccountHourInput<'_>) -> (String, u64) {
    let keys = input
        .on_time
        .iter()
        .chain(input.late.iter().flat_map(|late| late.added.iter()))
        .map(|c| c.sample.key);
    let keys: Vec<EventKey> = keys.collect();
    input_digest(keys)
}

fn aggregates(
    meters: &BTreeMap<String, Meter>,
    hour: Timestamp,
    contributions: &[Contribution],
) -> Result<BTreeMap<Series, HourAggregate>, ClosingError> {
    let window = Window::hour(hour);
    // An account's hour has a handful of series: found by a linear look, so that a
    // series' shared names are cloned once, not for each of its thousands of samples
    // (each clone and drop is an atomic count that closing threads would contend on).
    let mut found: Vec<(&Contribution, HourAggregate)> = Vec::new();
    for c in contributions {
        let same = |(first, _): &&mut (&Contribution, HourAggregate)| {
            *first.meter == *c.meter && first.group.as_deref() == c.group.as_deref()
        };
        match found.iter_mut().find(same) {
            Some((_, aggregate)) => aggregate.add(c.sample)?,
            None => {
                let meter = meters
                    .get(&*c.meter)
                    .ok_or_else(|| ClosingError::UnknownMeter(c.meter.to_string()))?;
                let mut aggregate = HourAggregate::new(meter.aggregation, window);
                aggregate.add(c.sample)?;
                found.push((c, aggregate));
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(c, aggregate)| ((c.meter.clone(), c.group.clone()), aggregate))
        .collect())
}

/// A series' quantity in its dimension's unit (zero when the meter feeds none).
fn series_quantity(
    meter: &Meter,
    aggregate: &HourAggregate,
    carry_in: Option<Decimal>,
) -> Result<Option<Decimal>, ClosingError> {
    Ok(match &meter.dimension {
        Some(feed) => feed.quantity(aggregate, carry_in)?,
        None => None,
    })
}

/// Closes one account's hour.
pub fn close_account_hour(input: &AccountHourInput<'_>) -> Result<AccountHour, ClosingError> {
    let window = Window::hour(input.hour);
    let mut series = aggregates(input.meters, input.hour, &input.on_time)?;
    // A gauge that reported in the previous hour holds its value into this one even
    // if no sample arrived yet; its series exists with its carry-in alone.
    for (key, _) in input.carry_in.iter() {
        if let Some(meter) = input.meters.get(&*key.0)
            && meter.aggregation == crate::meter::Aggregation::TimeWeightedAvg
            && !series.contains_key(key)
        {
            series.insert(key.clone(), HourAggregate::new(meter.aggregation, window));
        }
    }

    let mut meters = Vec::with_capacity(series.len());
    let mut metered: BTreeMap<DimensionKey, Decimal> = BTreeMap::new();
    for ((name, group), aggregate) in &series {
        let meter = input
            .meters
            .get(&**name)
            .ok_or_else(|| ClosingError::UnknownMeter(name.to_string()))?;
        let carry_in = input.carry_in.get(&(name.clone(), group.clone())).copied();
        let value = aggregate.value(carry_in)?;
        let quantity = series_quantity(meter, aggregate, carry_in)?;
        if let (Some(feed), Some(q)) = (&meter.dimension, quantity) {
            *metered.entry(feed.dimension.clone()).or_default() += q;
        }
        let carry_out = aggregate.last_sample().map(|s| s.value).or(
            if meter.aggregation == crate::meter::Aggregation::TimeWeightedAvg {
                carry_in
            } else {
                None
            },
        );
        meters.push(MeterHour {
            meter: name.to_string(),
            group: group.as_deref().map(str::to_owned),
            n_events: aggregate.n_events(),
            value,
            quantity,
            carry_out,
        });
    }

    let mut adjustments = Vec::new();
    let mut adjusted: BTreeMap<DimensionKey, Decimal> = BTreeMap::new();
    for late in &input.late {
        let before = aggregates(input.meters, late.hour, &late.before)?;
        let added = aggregates(input.meters, late.hour, &late.added)?;
        for (key, addition) in &added {
            let meter = input
                .meters
                .get(&*key.0)
                .ok_or_else(|| ClosingError::UnknownMeter(key.0.to_string()))?;
            let carry_in = late.carry_in.get(key).copied();
            let old = before.get(key);
            let mut new = old
                .cloned()
                .unwrap_or_else(|| HourAggregate::new(meter.aggregation, Window::hour(late.hour)));
            new.merge(addition)?;
            let old_quantity = match old {
                Some(old) => series_quantity(meter, old, carry_in)?,
                None => None,
            }
            .unwrap_or_default();
            let new_quantity = series_quantity(meter, &new, carry_in)?.unwrap_or_default();
            let change = new_quantity - old_quantity;
            if let Some(feed) = &meter.dimension {
                *adjusted.entry(feed.dimension.clone()).or_default() += change;
                *metered.entry(feed.dimension.clone()).or_default() += change;
            }
            adjustments.push(Adjustment {
                meter: key.0.to_string(),
                group: key.1.as_deref().map(str::to_owned),
                hour: late.hour,
                n_events: addition.n_events(),
                quantity: change,
            });
        }
    }

    let dimensions = metered
        .iter()
        .map(|(dimension, quantity)| DimensionHour {
            dimension: dimension.clone(),
            quantity: quantity.normalize(),
            adjustment: adjusted
                .get(dimension)
                .copied()
                .unwrap_or_default()
                .normalize(),
        })
        .collect();

    let mut rating = Vec::new();
    let mut unpriced = Vec::new();
    let unentitled = input.entitlement.is_none();
    if let Some((entitlement, offer)) = input.entitlement {
        let period = BillingPeriod::containing(input.hour);
        let (billable, not_priced) = offer.pricing.billable(&metered);
        unpriced = not_priced;
        for (dimension, quantity) in billable {
            let (Some(commitment), Some(committed)) = (
                entitlement.commitments.get(&dimension),
                entitlement.commitment_in(&dimension, period),
            ) else {
                unpriced.push(dimension);
                continue;
            };
            let consumed_before = input
                .consumed_before
                .get(&dimension)
                .copied()
                .unwrap_or_default();
            let rated = commitment.rate(committed, consumed_before, quantity)?;
            rating.push(RatedDimension {
                dimension,
                entitlement_id: entitlement.id.clone(),
                period_start: period.start,
                committed,
                rated,
            });
        }
    }

    Ok(AccountHour {
        account_id: input.account_id.to_owned(),
        hour: input.hour,
        meters,
        adjustments,
        dimensions,
        rating,
        unpriced,
        unentitled,
    })
}
