//! What was sold, and how usage becomes money: offers, entitlements, commitments,
//! overage, unit-based pricing, and whole-unit reporting with a carried remainder.
//!
//! The rules here are pure: given an hour's quantity and what the period consumed
//! before it, [`Commitment::rate`] says how much of the hour falls within the commit,
//! how much is overage and what the overage costs. Storage keeps the running position;
//! the hour-closing job feeds hours in order.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::account::Marketplace;
use crate::money::{Currency, Money, MoneyError};

/// A billable quantity's name within an offer (`capacity_tib_hours`, `data_written_gib`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DimensionKey(String);

impl DimensionKey {
    pub fn parse(value: &str) -> Result<Self, String> {
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "`{value}` is not a dimension key (lowercase letters, digits, `_`, `-`; at most 64)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DimensionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfferKind {
    /// Negotiated: fixed capacity with overage.
    Private,
    /// List price.
    Public,
}

/// How a dimension's quantities reach the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporting {
    /// Exact decimals (Azure and AWS take decimal quantities).
    Exact,
    /// Whole units only: each hour reports the whole part of what has accumulated and
    /// carries the fraction, so no hour over-reports; the period's last remainder is
    /// settled by `settle`.
    WholeUnits { settle: SettleRule },
}

/// How the fraction left at the end of a period is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleRule {
    /// Dropped: the customer is never billed for a part unit.
    Down,
    /// Half a unit or more is billed as one.
    HalfUp,
    /// Any part unit is billed as one.
    Up,
}

/// A dimension as an offer sells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferDimension {
    pub key: DimensionKey,
    /// The name the marketplace knows it by (its dimension or metric id).
    pub marketplace_name: String,
    /// What one unit is (`TiB-hour`, `GiB`).
    pub unit: String,
    pub reporting: Reporting,
}

/// How quantities become what the commitment counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Pricing {
    /// Each dimension has its own commitment and overage price.
    PerDimension,
    /// One billable unit: the sum over dimensions of quantity × multiplier (the SaaS
    /// offer). The commitment is on `unit`.
    Units {
        unit: DimensionKey,
        multipliers: BTreeMap<DimensionKey, Decimal>,
    },
}

impl Pricing {
    /// The quantities the commitments count, from one hour's metered quantities.
    /// Under unit pricing, a dimension without a multiplier counts zero units and is
    /// reported back so the caller can flag it rather than bill it silently.
    pub fn billable(
        &self,
        metered: &BTreeMap<DimensionKey, Decimal>,
    ) -> (BTreeMap<DimensionKey, Decimal>, Vec<DimensionKey>) {
        match self {
            Pricing::PerDimension => (metered.clone(), Vec::new()),
            Pricing::Units { unit, multipliers } => {
                let mut units = Decimal::ZERO;
                let mut unpriced = Vec::new();
                for (dimension, quantity) in metered {
                    match multipliers.get(dimension) {
                        Some(multiplier) => units += *quantity * *multiplier,
                        None => unpriced.push(dimension.clone()),
                    }
                }
                (BTreeMap::from([(unit.clone(), units)]), unpriced)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub kind: OfferKind,
    pub marketplace: Marketplace,
    pub currency: Currency,
    pub dimensions: Vec<OfferDimension>,
    pub pricing: Pricing,
}

/// Overage: usage beyond the commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OveragePolicy {
    /// How far above the commitment usage may go before overage starts (a tolerance).
    pub threshold: Decimal,
    pub price_per_unit: Money,
    pub reporting: OverageReporting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverageReporting {
    /// Each hour's overage is reported to the marketplace after the hour closes.
    Hourly,
    /// Overage is added up and reported once, at the end of the billing period.
    TrueUp,
}

/// A committed quantity per billing period and what happens beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub committed_per_period: Decimal,
    pub overage: OveragePolicy,
}

/// One hour, rated against a commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatedHour {
    pub quantity: Decimal,
    /// The period's consumption after this hour.
    pub consumed_after: Decimal,
    /// The part of this hour inside the commitment (and its tolerance).
    pub within_commit: Decimal,
    /// The part of this hour beyond the commitment and its tolerance.
    pub overage_quantity: Decimal,
    pub overage_amount: Money,
}

impl Commitment {
    /// Rates one hour. `consumed_before` is what the period consumed before this hour;
    /// `committed` is the commitment for this period (see [`Entitlement::commitment_in`]).
    pub fn rate(
        &self,
        committed: Decimal,
        consumed_before: Decimal,
        quantity: Decimal,
    ) -> Result<RatedHour, MoneyError> {
        let limit = committed + self.overage.threshold;
        let consumed_after = consumed_before + quantity;
        let over_before = (consumed_before - limit).max(Decimal::ZERO);
        let over_after = (consumed_after - limit).max(Decimal::ZERO);
        let overage_quantity = over_after - over_before;
        Ok(RatedHour {
            quantity,
            consumed_after,
            within_commit: quantity - overage_quantity,
            overage_quantity,
            overage_amount: self.overage.price_per_unit.times(overage_quantity)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementStatus {
    Pending,
    Active,
    Suspended,
    Cancelled,
    Expired,
}

/// An account's right under an offer, from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    pub id: String,
    pub account_id: String,
    pub offer_id: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub status: EntitlementStatus,
    pub commitments: BTreeMap<DimensionKey, Commitment>,
}

/// A billing period: a calendar month in UTC, as the marketplaces bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BillingPeriod {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl BillingPeriod {
    /// The calendar month (UTC) containing `at`.
    pub fn containing(at: Timestamp) -> BillingPeriod {
        let date = at.to_zoned(TimeZone::UTC).date();
        let first = Date::new(date.year(), date.month(), 1).unwrap_or(date);
        let next = first
            .checked_add(jiff::Span::new().months(1))
            .unwrap_or(first);
        let instant = |d: Date| {
            d.to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp())
                .unwrap_or(at)
        };
        BillingPeriod {
            start: instant(first),
            end: instant(next),
        }
    }

    pub fn hours(&self) -> i64 {
        self.end.duration_since(self.start).as_hours()
    }
}

impl Entitlement {
    pub fn is_in_force(&self, at: Timestamp) -> bool {
        self.status == EntitlementStatus::Active && self.start <= at && at < self.end
    }

    /// The commitment for `period`: the full commitment when the entitlement covers the
    /// whole period, prorated by the hours it covers otherwise (a term that starts or
    /// ends mid-month commits only to its share of that month).
    pub fn commitment_in(
        &self,
        dimension: &DimensionKey,
        period: BillingPeriod,
    ) -> Option<Decimal> {
        let commitment = self.commitments.get(dimension)?;
        let covered_start = self.start.max(period.start);
        let covered_end = self.end.min(period.end);
        if covered_end <= covered_start {
            return Some(Decimal::ZERO);
        }
        let covered: SignedDuration = covered_end.duration_since(covered_start);
        let whole: SignedDuration = period.end.duration_since(period.start);
        if covered >= whole {
            return Some(commitment.committed_per_period);
        }
        let share = Decimal::from(covered.as_secs()) / Decimal::from(whole.as_secs().max(1));
        Some(
            (commitment.committed_per_period * share)
                .round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero),
        )
    }
}

/// The running remainder of a whole-unit dimension within one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// What has been metered but not yet reported, always in `[0, 1)` between hours.
    pub remainder: Decimal,
}

impl Carry {
    /// The whole units to report for an hour of `quantity`; the fraction is carried.
    pub fn report(&mut self, quantity: Decimal) -> Decimal {
        let total = self.remainder + quantity;
        let whole = total.floor().max(Decimal::ZERO);
        self.remainder = total - whole;
        whole
    }

    /// The units to report for the fraction left at the period's end.
    pub fn settle(&mut self, rule: SettleRule) -> Decimal {
        let remainder = std::mem::take(&mut self.remainder);
        match rule {
            SettleRule::Down => Decimal::ZERO,
            SettleRule::HalfUp => {
                remainder.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            }
            SettleRule::Up => remainder.ceil(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(value: &str) -> Decimal {
        Decimal::from_str(value).expect("decimal")
    }

    fn usd(value: &str) -> Money {
        Money::new(dec(value), Currency::USD)
    }

    fn commitment(committed: &str, threshold: &str, price: &str) -> Commitment {
        Commitment {
            committed_per_period: dec(committed),
            overage: OveragePolicy {
                threshold: dec(threshold),
                price_per_unit: usd(price),
                reporting: OverageReporting::Hourly,
            },
        }
    }

    fn ts(value: &str) -> Timestamp {
        value.parse().expect("timestamp")
    }

    #[test]
    fn an_hour_that_crosses_the_commitment_is_split() {
        let c = commitment("100", "0", "0.25");
        let hour = c.rate(dec("100"), dec("95"), dec("10")).expect("rated");
        assert_eq!(hour.within_commit, dec("5"));
        assert_eq!(hour.overage_quantity, dec("5"));
        assert_eq!(hour.overage_amount, usd("1.25"));
        assert_eq!(hour.consumed_after, dec("105"));
        // Once beyond, the whole hour is overage.
        let next = c
            .rate(dec("100"), hour.consumed_after, dec("2"))
            .expect("rated");
        assert_eq!(
            (next.within_commit, next.overage_quantity),
            (dec("0"), dec("2"))
        );
    }

    #[test]
    fn the_threshold_is_a_tolerance_above_the_commitment() {
        let c = commitment("100", "10", "1");
        let hour = c.rate(dec("100"), dec("100"), dec("15")).expect("rated");
        assert_eq!(hour.overage_quantity, dec("5"));
        assert_eq!(hour.within_commit, dec("10"));
    }

    #[test]
    fn rating_hour_by_hour_equals_rating_the_period_at_once() {
        let c = commitment("1000", "50", "0.013");
        let quantities: Vec<Decimal> = (0..720)
            .map(|i| Decimal::new((i * 37 % 500) as i64, 2))
            .collect();
        let mut consumed = Decimal::ZERO;
        let mut overage = Decimal::ZERO;
        let mut amount = Money::zero(Currency::USD);
        for q in &quantities {
            let hour = c.rate(dec("1000"), consumed, *q).expect("rated");
            consumed = hour.consumed_after;
            overage += hour.overage_quantity;
            amount = amount
                .checked_add(hour.overage_amount)
                .expect("same currency");
        }
        let total: Decimal = quantities.iter().sum();
        let at_once = c.rate(dec("1000"), Decimal::ZERO, total).expect("rated");
        assert_eq!(overage, at_once.overage_quantity);
        assert_eq!(amount, at_once.overage_amount);
    }

    #[test]
    fn unit_pricing_sums_quantities_times_multipliers() {
        let key = |k: &str| DimensionKey::parse(k).expect("key");
        let pricing = Pricing::Units {
            unit: key("units"),
            multipliers: BTreeMap::from([(key("capacity"), dec("1.5")), (key("io"), dec("0.01"))]),
        };
        let metered = BTreeMap::from([
            (key("capacity"), dec("10")),
            (key("io"), dec("250")),
            (key("egress"), dec("3")),
        ]);
        let (billable, unpriced) = pricing.billable(&metered);
        assert_eq!(billable[&key("units")], dec("17.5"));
        assert_eq!(unpriced, vec![key("egress")]);
    }

    #[test]
    fn whole_units_carry_so_the_period_total_is_billed_once() {
        // A deterministic stream of fractional hourly quantities.
        let mut seed: u64 = 42;
        let mut metered = Decimal::ZERO;
        for rule in [SettleRule::Down, SettleRule::HalfUp, SettleRule::Up] {
            let mut carry = Carry::default();
            let mut reported = Decimal::ZERO;
            metered = Decimal::ZERO;
            for _ in 0..744 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let q = Decimal::new((seed >> 40) as i64 % 3000, 3);
                metered += q;
                let whole = carry.report(q);
                assert_eq!(whole.fract(), Decimal::ZERO, "whole units only");
                assert!(carry.remainder >= Decimal::ZERO && carry.remainder < Decimal::ONE);
                reported += whole;
                assert!(reported <= metered, "no hour over-reports");
            }
            reported += carry.settle(rule);
            let expected = match rule {
                SettleRule::Down => metered.floor(),
                SettleRule::HalfUp => {
                    metered.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                }
                SettleRule::Up => metered.ceil(),
            };
            assert_eq!(reported, expected, "{rule:?}");
            assert_eq!(carry.remainder, Decimal::ZERO);
        }
        assert!(metered > Decimal::ZERO);
    }

    #[test]
    fn billing_periods_are_calendar_months_in_utc() {
        let period = BillingPeriod::containing(ts("2026-02-14T10:00:00Z"));
        assert_eq!(period.start, ts("2026-02-01T00:00:00Z"));
        assert_eq!(period.end, ts("2026-03-01T00:00:00Z"));
        assert_eq!(period.hours(), 28 * 24);
        let december = BillingPeriod::containing(ts("2026-12-31T23:59:59Z"));
        assert_eq!(december.end, ts("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn a_partial_month_commits_to_its_share() {
        let key = DimensionKey::parse("capacity").expect("key");
        let entitlement = Entitlement {
            id: "e".into(),
            account_id: "a".into(),
            offer_id: "o".into(),
            start: ts("2026-04-16T00:00:00Z"),
            end: ts("2027-04-16T00:00:00Z"),
            status: EntitlementStatus::Active,
            commitments: BTreeMap::from([(key.clone(), commitment("3000", "0", "1"))]),
        };
        let april = BillingPeriod::containing(ts("2026-04-20T00:00:00Z"));
        assert_eq!(entitlement.commitment_in(&key, april), Some(dec("1500")));
        let may = BillingPeriod::containing(ts("2026-05-20T00:00:00Z"));
        assert_eq!(entitlement.commitment_in(&key, may), Some(dec("3000")));
        let before = BillingPeriod::containing(ts("2026-03-20T00:00:00Z"));
        assert_eq!(entitlement.commitment_in(&key, before), Some(Decimal::ZERO));
        assert!(entitlement.is_in_force(ts("2026-04-16T00:00:00Z")));
        assert!(!entitlement.is_in_force(ts("2027-04-16T00:00:00Z")));
    }
}
