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

impl OfferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferKind::Private => "private",
            OfferKind::Public => "public",
        }
    }
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
    /// What the customer pays for the committed quantity each billing period, prorated
    /// like the commitment in a month the entitlement starts or ends in. None: the
    /// commitment is priced outside Purser (and invoiced by nobody here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_fee: Option<Money>,
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
    /// Whom the offer's marketplace bills, in its identifiers; none for direct sales
    /// and for a marketplace entitlement not yet linked to its subscription (its usage
    /// is rated but not reported until it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketplace_binding: Option<crate::marketplace::Binding>,
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

    /// The calendar month a person names as `2026-11`.
    pub fn parse_month(value: &str) -> Result<BillingPeriod, String> {
        let refuse = || format!("`{value}` is not a month (YYYY-MM, e.g. 2026-11)");
        let (year, month) = value.trim().split_once('-').ok_or_else(refuse)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(refuse());
        }
        let year: i16 = year.parse().map_err(|_| refuse())?;
        let month: i8 = month.parse().map_err(|_| refuse())?;
        let first = Date::new(year, month, 1).map_err(|_| refuse())?;
        let start = first
            .to_zoned(TimeZone::UTC)
            .map_err(|_| refuse())?
            .timestamp();
        Ok(BillingPeriod::containing(start))
    }

    /// `2026-11`: the month's name in exports and URLs.
    pub fn month_label(&self) -> String {
        let date = self.start.to_zoned(TimeZone::UTC).date();
        format!("{:04}-{:02}", date.year(), date.month())
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
        Some(match self.coverage(period) {
            Coverage::None => Decimal::ZERO,
            Coverage::Whole => commitment.committed_per_period,
            Coverage::Part { covered, whole } => (commitment.committed_per_period
                * (Decimal::from(covered.as_secs()) / Decimal::from(whole.as_secs().max(1))))
            .round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero),
        })
    }

    /// The share of `period` the entitlement's term covers, from 0 to 1, at 12 decimal
    /// places: what a committed fee is prorated by.
    pub fn share_of(&self, period: BillingPeriod) -> Decimal {
        match self.coverage(period) {
            Coverage::None => Decimal::ZERO,
            Coverage::Whole => Decimal::ONE,
            Coverage::Part { covered, whole } => (Decimal::from(covered.as_secs())
                / Decimal::from(whole.as_secs().max(1)))
            .round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero)
            .normalize(),
        }
    }

    /// The part of `period` within the entitlement's term, `[start, end)`; none when
    /// they do not overlap.
    pub fn covered_in(&self, period: BillingPeriod) -> Option<(Timestamp, Timestamp)> {
        let start = self.start.max(period.start);
        let end = self.end.min(period.end);
        (start < end).then_some((start, end))
    }

    fn coverage(&self, period: BillingPeriod) -> Coverage {
        let Some((start, end)) = self.covered_in(period) else {
            return Coverage::None;
        };
        let covered: SignedDuration = end.duration_since(start);
        let whole: SignedDuration = period.end.duration_since(period.start);
        if covered >= whole {
            Coverage::Whole
        } else {
            Coverage::Part { covered, whole }
        }
    }
}

enum Coverage {
    None,
    Whole,
    Part {
        covered: SignedDuration,
        whole: SignedDuration,
    },
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
            committed_fee: None,
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
            marketplace_binding: None,
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

/// An offer as it arrives (JSON, a form, the CLI), before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferDraft {
    pub name: String,
    /// `private` or `public`.
    pub kind: String,
    /// `gcp`, `azure`, `aws` or `direct`.
    pub marketplace: String,
    /// ISO 4217; `USD` when omitted.
    #[serde(default)]
    pub currency: Option<String>,
    pub dimensions: Vec<OfferDimensionDraft>,
    /// Per-dimension pricing when omitted.
    #[serde(default)]
    pub pricing: Option<PricingDraft>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferDimensionDraft {
    pub key: String,
    /// The marketplace's name for it; the key when omitted.
    #[serde(default)]
    pub marketplace_name: Option<String>,
    pub unit: String,
    /// `exact` (default) or `whole_units`.
    #[serde(default)]
    pub reporting: Option<String>,
    /// For whole units: `down`, `half_up` (default) or `up`.
    #[serde(default)]
    pub settle: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingDraft {
    /// `per_dimension` or `units`.
    pub kind: String,
    /// The unit's key, for `units`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Dimension key → multiplier (decimal string), for `units`.
    #[serde(default)]
    pub multipliers: BTreeMap<String, String>,
}

/// Parses an exact decimal, naming the field when it is not one.
pub fn parse_decimal(
    errors: &mut crate::ValidationErrors,
    field: &str,
    value: &str,
    allow_negative: bool,
) -> Option<Decimal> {
    match value.trim().parse::<Decimal>() {
        Ok(d) if allow_negative || d >= Decimal::ZERO => Some(d),
        Ok(_) => {
            errors.add(field, "may not be negative");
            None
        }
        Err(_) => {
            errors.add(field, format!("`{value}` is not a decimal number"));
            None
        }
    }
}

impl OfferDraft {
    /// Validates the draft into an offer with the given id.
    pub fn validate(&self, id: String) -> Result<Offer, crate::ValidationErrors> {
        let mut errors = crate::ValidationErrors::new();
        let name = crate::validation::text(&mut errors, "name", &self.name, true, 200);
        let kind = match self.kind.trim() {
            "private" => Some(OfferKind::Private),
            "public" => Some(OfferKind::Public),
            other => {
                errors.add(
                    "kind",
                    format!("`{other}` is not an offer kind (private or public)"),
                );
                None
            }
        };
        let marketplace = Marketplace::parse(&self.marketplace)
            .map_err(|r| errors.add("marketplace", r))
            .ok();
        let currency = Currency::parse(self.currency.as_deref().unwrap_or("USD").trim())
            .map_err(|r| errors.add("currency", r))
            .ok();
        if self.dimensions.is_empty() {
            errors.add("dimensions", "an offer sells at least one dimension");
        }
        let mut dimensions = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (index, d) in self.dimensions.iter().enumerate() {
            let field = |name: &str| format!("dimensions[{index}].{name}");
            let key = DimensionKey::parse(d.key.trim())
                .map_err(|r| errors.add(field("key"), r))
                .ok();
            if let Some(key) = &key
                && !seen.insert(key.clone())
            {
                errors.add(field("key"), format!("`{key}` appears twice"));
            }
            let unit = crate::validation::text(&mut errors, &field("unit"), &d.unit, true, 40);
            let settle = match d.settle.as_deref().map(str::trim) {
                None | Some("") | Some("half_up") => Some(SettleRule::HalfUp),
                Some("down") => Some(SettleRule::Down),
                Some("up") => Some(SettleRule::Up),
                Some(other) => {
                    errors.add(
                        field("settle"),
                        format!("`{other}` is not a settle rule (down, half_up, up)"),
                    );
                    None
                }
            };
            let reporting = match (d.reporting.as_deref().map(str::trim), settle) {
                (None | Some("") | Some("exact"), _) => Some(Reporting::Exact),
                (Some("whole_units"), Some(settle)) => Some(Reporting::WholeUnits { settle }),
                (Some("whole_units"), None) => None,
                (Some(other), _) => {
                    errors.add(
                        field("reporting"),
                        format!("`{other}` is not a reporting mode (exact, whole_units)"),
                    );
                    None
                }
            };
            let marketplace_name = d
                .marketplace_name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .or_else(|| key.as_ref().map(|k| k.to_string()));
            if let (Some(key), Some(unit), Some(reporting), Some(marketplace_name)) =
                (key, unit, reporting, marketplace_name)
            {
                dimensions.push(OfferDimension {
                    key,
                    marketplace_name,
                    unit,
                    reporting,
                });
            }
        }
        let pricing = match &self.pricing {
            None => Some(Pricing::PerDimension),
            Some(p) if p.kind.trim() == "per_dimension" => Some(Pricing::PerDimension),
            Some(p) if p.kind.trim() == "units" => {
                let unit = p.unit.as_deref().and_then(|u| {
                    DimensionKey::parse(u.trim())
                        .map_err(|r| errors.add("pricing.unit", r))
                        .ok()
                });
                if p.unit.is_none() {
                    errors.add("pricing.unit", "unit pricing names its unit");
                }
                let mut multipliers = BTreeMap::new();
                for (key, value) in &p.multipliers {
                    let field = format!("pricing.multipliers.{key}");
                    let Ok(dimension) = DimensionKey::parse(key) else {
                        errors.add(&field, "is not a dimension key");
                        continue;
                    };
                    if !self.dimensions.iter().any(|d| d.key.trim() == key) {
                        errors.add(&field, "is not one of the offer's dimensions");
                    }
                    if let Some(m) = parse_decimal(&mut errors, &field, value, false) {
                        multipliers.insert(dimension, m);
                    }
                }
                if multipliers.is_empty() {
                    errors.add(
                        "pricing.multipliers",
                        "unit pricing needs a multiplier per dimension",
                    );
                }
                unit.map(|unit| Pricing::Units { unit, multipliers })
            }
            Some(p) => {
                errors.add(
                    "pricing.kind",
                    format!("`{}` is not a pricing kind (per_dimension, units)", p.kind),
                );
                None
            }
        };
        match (name, kind, marketplace, currency, pricing) {
            (Some(name), Some(kind), Some(marketplace), Some(currency), Some(pricing))
                if errors.is_empty() =>
            {
                Ok(Offer {
                    id,
                    name,
                    kind,
                    marketplace,
                    currency,
                    dimensions,
                    pricing,
                })
            }
            _ => Err(errors),
        }
    }
}

impl Offer {
    /// What commitments may be made on: each dimension, or the unit under unit pricing.
    pub fn committable(&self) -> Vec<DimensionKey> {
        match &self.pricing {
            Pricing::PerDimension => self.dimensions.iter().map(|d| d.key.clone()).collect(),
            Pricing::Units { unit, .. } => vec![unit.clone()],
        }
    }
}

/// An entitlement as it arrives, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementDraft {
    pub offer_id: String,
    /// RFC 3339 instant.
    pub start: String,
    /// RFC 3339 instant, after `start`.
    pub end: String,
    /// `pending` (default), `active`, `suspended`, `cancelled` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
    /// Dimension (or unit) key → commitment.
    #[serde(default)]
    pub commitments: BTreeMap<String, CommitmentDraft>,
    /// Whom the marketplace bills (its identifiers for the subscription).
    #[serde(default)]
    pub marketplace_binding: Option<crate::marketplace::Binding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitmentDraft {
    /// Decimal string: the quantity committed per billing period (calendar month).
    pub committed_per_period: String,
    /// Decimal string: tolerance above the commitment before overage starts; 0 by default.
    #[serde(default)]
    pub overage_threshold: Option<String>,
    /// Decimal string, in the offer's currency.
    pub overage_price: String,
    /// `hourly` (default) or `true_up`.
    #[serde(default)]
    pub overage_reporting: Option<String>,
    /// Decimal string, in the offer's currency: what the committed quantity costs per
    /// billing period, prorated in a partial month. None when priced outside Purser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_fee: Option<String>,
}

impl EntitlementStatus {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "cancelled" => Ok(Self::Cancelled),
            "expired" => Ok(Self::Expired),
            other => Err(format!(
                "`{other}` is not an entitlement status (pending, active, suspended, cancelled, expired)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

impl EntitlementDraft {
    /// Validates the draft for `account_id` under `offer`.
    pub fn validate(
        &self,
        id: String,
        account_id: String,
        offer: &Offer,
    ) -> Result<Entitlement, crate::ValidationErrors> {
        let mut errors = crate::ValidationErrors::new();
        let instant = |errors: &mut crate::ValidationErrors, field: &str, value: &str| {
            value
                .trim()
                .parse::<Timestamp>()
                .map_err(|_| {
                    errors.add(
                        field,
                        format!("`{value}` is not an RFC 3339 instant (2026-12-01T00:00:00Z)"),
                    )
                })
                .ok()
        };
        let start = instant(&mut errors, "start", &self.start);
        let end = instant(&mut errors, "end", &self.end);
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            errors.add("end", "must be after start");
        }
        if self.offer_id != offer.id {
            errors.add("offer_id", "does not name the offer given");
        }
        let status = EntitlementStatus::parse(self.status.as_deref().unwrap_or("pending"))
            .map_err(|r| errors.add("status", r))
            .ok();
        let committable = offer.committable();
        let mut commitments = BTreeMap::new();
        for (key, draft) in &self.commitments {
            let field = |name: &str| format!("commitments.{key}.{name}");
            let Some(dimension) = DimensionKey::parse(key)
                .ok()
                .filter(|k| committable.contains(k))
            else {
                errors.add(
                    format!("commitments.{key}"),
                    format!(
                        "is not committable under this offer (one of {})",
                        committable
                            .iter()
                            .map(DimensionKey::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let committed = parse_decimal(
                &mut errors,
                &field("committed_per_period"),
                &draft.committed_per_period,
                false,
            );
            let threshold = parse_decimal(
                &mut errors,
                &field("overage_threshold"),
                draft.overage_threshold.as_deref().unwrap_or("0"),
                false,
            );
            let price = parse_decimal(
                &mut errors,
                &field("overage_price"),
                &draft.overage_price,
                false,
            );
            let committed_fee = match draft.committed_fee.as_deref().map(str::trim) {
                None | Some("") => Some(None),
                Some(fee) => parse_decimal(&mut errors, &field("committed_fee"), fee, false)
                    .map(|fee| Some(Money::new(fee, offer.currency))),
            };
            let reporting = match draft.overage_reporting.as_deref().map(str::trim) {
                None | Some("") | Some("hourly") => Some(OverageReporting::Hourly),
                Some("true_up") => Some(OverageReporting::TrueUp),
                Some(other) => {
                    errors.add(
                        field("overage_reporting"),
                        format!("`{other}` is not hourly or true_up"),
                    );
                    None
                }
            };
            if let (
                Some(committed),
                Some(threshold),
                Some(price),
                Some(reporting),
                Some(committed_fee),
            ) = (committed, threshold, price, reporting, committed_fee)
            {
                commitments.insert(
                    dimension,
                    Commitment {
                        committed_per_period: committed,
                        overage: OveragePolicy {
                            threshold,
                            price_per_unit: Money::new(price, offer.currency),
                            reporting,
                        },
                        committed_fee,
                    },
                );
            }
        }
        if let Some(binding) = &self.marketplace_binding {
            if binding.marketplace() != offer.marketplace {
                errors.add(
                    "marketplace_binding.kind",
                    format!(
                        "binds to {} but the offer is sold through {}",
                        binding.marketplace(),
                        offer.marketplace
                    ),
                );
            } else {
                binding.validate("marketplace_binding", &mut errors);
            }
        }
        match (start, end, status) {
            (Some(start), Some(end), Some(status)) if errors.is_empty() => Ok(Entitlement {
                id,
                account_id,
                offer_id: offer.id.clone(),
                start,
                end,
                status,
                commitments,
                marketplace_binding: self.marketplace_binding.clone(),
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod draft_tests {
    use super::*;

    fn offer_draft() -> OfferDraft {
        OfferDraft {
            name: "Private offer: 500 TiB".into(),
            kind: "private".into(),
            marketplace: "gcp".into(),
            currency: None,
            dimensions: vec![
                OfferDimensionDraft {
                    key: "capacity_tib_hours".into(),
                    marketplace_name: Some("capacity-overage".into()),
                    unit: "TiB-hour".into(),
                    reporting: None,
                    settle: None,
                },
                OfferDimensionDraft {
                    key: "data_written_gib".into(),
                    marketplace_name: None,
                    unit: "GiB".into(),
                    reporting: Some("whole_units".into()),
                    settle: Some("up".into()),
                },
            ],
            pricing: None,
        }
    }

    #[test]
    fn an_offer_validates_with_defaults() {
        let offer = offer_draft().validate("o1".into()).expect("valid");
        assert_eq!(offer.currency, Currency::USD);
        assert_eq!(offer.dimensions[1].marketplace_name, "data_written_gib");
        assert_eq!(
            offer.dimensions[1].reporting,
            Reporting::WholeUnits {
                settle: SettleRule::Up
            }
        );
        assert_eq!(offer.committable().len(), 2);
    }

    #[test]
    fn offer_errors_name_their_fields() {
        let mut draft = offer_draft();
        draft.kind = "secret".into();
        draft.dimensions[1].key = "capacity_tib_hours".into();
        draft.dimensions[0].reporting = Some("rounded".into());
        draft.pricing = Some(PricingDraft {
            kind: "units".into(),
            unit: None,
            multipliers: BTreeMap::from([("io".into(), "x".into())]),
        });
        let fields: Vec<String> = draft
            .validate("o".into())
            .expect_err("invalid")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        for expected in [
            "kind",
            "dimensions[0].reporting",
            "dimensions[1].key",
            "pricing.unit",
            "pricing.multipliers.io",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} in {fields:?}"
            );
        }
    }

    #[test]
    fn an_entitlement_commits_only_to_what_the_offer_sells() {
        let offer = offer_draft().validate("o1".into()).expect("valid");
        let draft = EntitlementDraft {
            offer_id: "o1".into(),
            start: "2026-12-01T00:00:00Z".into(),
            end: "2027-12-01T00:00:00Z".into(),
            status: Some("active".into()),
            commitments: BTreeMap::from([(
                "capacity_tib_hours".into(),
                CommitmentDraft {
                    committed_per_period: "360000".into(),
                    overage_threshold: None,
                    overage_price: "0.0125".into(),
                    overage_reporting: None,
                    committed_fee: None,
                },
            )]),
            marketplace_binding: None,
        };
        let entitlement = draft
            .validate("e1".into(), "a1".into(), &offer)
            .expect("valid");
        let commitment =
            &entitlement.commitments[&DimensionKey::parse("capacity_tib_hours").expect("key")];
        assert_eq!(commitment.overage.price_per_unit.to_string(), "0.0125 USD");

        let mut bad = draft.clone();
        bad.end = "2026-11-01T00:00:00Z".into();
        bad.commitments.insert(
            "egress".into(),
            CommitmentDraft {
                committed_per_period: "-1".into(),
                overage_price: "1".into(),
                ..Default::default()
            },
        );
        bad.commitments
            .get_mut("capacity_tib_hours")
            .expect("present")
            .overage_price = "cheap".into();
        let fields: Vec<String> = bad
            .validate("e".into(), "a".into(), &offer)
            .expect_err("invalid")
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "end",
                "commitments.capacity_tib_hours.overage_price",
                "commitments.egress"
            ]
        );
    }
}
