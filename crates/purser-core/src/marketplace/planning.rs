//! From an account's rated hour to what its marketplace is owed for it.
//!
//! Per dimension the offer sells (the billable unit, under unit pricing):
//! - a dimension with a commitment owes its overage: each hour's, or the period's
//!   total in its last hour when the overage is trued up at the period's end
//!   (marketplaces bill the commitment itself through the private offer, and want only
//!   what lies beyond it: AWS "meter only usage beyond the contract's entitlements",
//!   Azure "only usage above the base fee");
//! - a dimension without one (a public offer's list-priced dimension) owes all of it;
//! - what the marketplace cannot take this hour is carried, never dropped: the digits
//!   it does not accept, the fraction of a whole-unit dimension (settled as the offer
//!   says in the period's last hour), and usage that missed an earlier hour's window;
//! - an hour without an entitlement in force owes nothing (a suspended or cancelled
//!   subscription is not billed); an hour with nothing owed is still reported as zero
//!   where the marketplace asks for it (AWS) or where reports must adjoin (Google).
//!
//! The running position per account × dimension is what storage keeps between hours;
//! planning the same hours from the same position always gives the same records.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{Binding, UsageRecord, record_key};
use crate::closing::AccountHour;
use crate::commercial::{
    BillingPeriod, DimensionKey, Entitlement, Offer, OverageReporting, Reporting,
};

/// What an account × dimension carries from hour to hour toward its marketplace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The billing period the remainder and true-up belong to.
    pub period_start: Option<Timestamp>,
    /// Owed but not yet sent: digits the marketplace does not take, or a whole-unit
    /// dimension's fraction.
    pub remainder: Decimal,
    /// Overage added up for the period's end.
    pub true_up: Decimal,
    /// Usage whose record missed its window, to add to the next record.
    pub missed: Decimal,
}

/// One dimension's plan for one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedDimension {
    pub dimension: DimensionKey,
    /// What this hour itself owes (overage, or all usage without a commitment).
    pub owed: Decimal,
    /// What earlier hours carried into this record.
    pub carried_in: Decimal,
    /// The record to send, if any (none when nothing is owed and the marketplace
    /// does not take zeros).
    pub record: Option<UsageRecord>,
    /// The position after this hour.
    pub position: Position,
}

/// The marketplace's view of one of the offer's reportable dimensions.
struct Reportable {
    key: DimensionKey,
    /// Its name on the marketplace; the billable unit of unit pricing is known there
    /// by its key.
    marketplace_name: String,
    reporting: Reporting,
}

fn reportable(offer: &Offer) -> Vec<Reportable> {
    offer
        .committable()
        .into_iter()
        .map(|key| {
            let sold = offer.dimensions.iter().find(|d| d.key == key);
            Reportable {
                marketplace_name: sold
                    .map(|d| d.marketplace_name.clone())
                    .unwrap_or_else(|| key.to_string()),
                reporting: sold.map(|d| d.reporting).unwrap_or(Reporting::Exact),
                key,
            }
        })
        .collect()
}

/// Plans an account's closed hour for its marketplace. `positions` holds the
/// position of each dimension before the hour (missing means fresh) and is updated.
pub fn plan_account_hour(
    rules: &Rules,
    hour: &AccountHour,
    entitlement: &Entitlement,
    binding: &Binding,
    offer: &Offer,
    positions: &mut std::collections::BTreeMap<DimensionKey, Position>,
) -> Vec<PlannedDimension> {
    // Rated only when the entitlement was in force for the hour.
    if hour.unentitled
        || !entitlement.is_in_force(hour.hour)
        || binding.marketplace() != rules.marketplace
    {
        return Vec::new();
    }
    let period = BillingPeriod::containing(hour.hour);
    let next_hour = hour
        .hour
        .checked_add(SignedDuration::from_hours(1))
        .unwrap_or(Timestamp::MAX);
    // The last hour this entitlement is billed in this period: settle then.
    let last_hour = next_hour >= period.end || next_hour >= entitlement.end;

    let metered = hour
        .dimensions
        .iter()
        .map(|d| (d.dimension.clone(), d.quantity))
        .collect();
    let (billable, _) = offer.pricing.billable(&metered);

    let mut planned = Vec::new();
    for dimension in reportable(offer) {
        let mut position = positions.remove(&dimension.key).unwrap_or_default();
        if position.period_start != Some(period.start) {
            // A new period: a true-up left unsettled (an entitlement that ended before
            // its period's last hour was reached) is owed now, not dropped.
            position.remainder += std::mem::take(&mut position.true_up);
            position.period_start = Some(period.start);
        }
        let rated = hour.rating.iter().find(|r| r.dimension == dimension.key);
        let owed = match (rated, entitlement.commitments.get(&dimension.key)) {
            (Some(rated), Some(commitment)) => match commitment.overage.reporting {
                OverageReporting::Hourly => rated.rated.overage_quantity,
                OverageReporting::TrueUp => {
                    position.true_up += rated.rated.overage_quantity;
                    if last_hour {
                        std::mem::take(&mut position.true_up)
                    } else {
                        Decimal::ZERO
                    }
                }
            },
            _ => billable.get(&dimension.key).copied().unwrap_or_default(),
        }
        .max(Decimal::ZERO);

        let carried_in = position.remainder + position.missed;
        let total = carried_in + owed;
        position.missed = Decimal::ZERO;
        let sent = match dimension.reporting {
            Reporting::WholeUnits { settle } => {
                let mut carry = crate::commercial::Carry {
                    remainder: Decimal::ZERO,
                };
                let mut whole = carry.report(total);
                if last_hour {
                    whole += carry.settle(settle);
                }
                position.remainder = carry.remainder;
                whole
            }
            Reporting::Exact => {
                let (sent, rest) = rules.quantize(total);
                position.remainder = rest;
                sent
            }
        };
        let record = (sent > Decimal::ZERO || (rules.report_zero_hours && !rules.refuses_zero))
            .then(|| UsageRecord {
                key: record_key(
                    rules.marketplace,
                    &hour.account_id,
                    dimension.key.as_str(),
                    hour.hour,
                ),
                account_id: hour.account_id.clone(),
                dimension: dimension.key.to_string(),
                marketplace_dimension: dimension.marketplace_name.clone(),
                hour: hour.hour,
                quantity: sent.normalize(),
                whole_units: matches!(dimension.reporting, Reporting::WholeUnits { .. }),
                binding: binding.clone(),
            });
        planned.push(PlannedDimension {
            dimension: dimension.key.clone(),
            owed: owed.normalize(),
            carried_in: carried_in.normalize(),
            record,
            position: Position {
                remainder: position.remainder.normalize(),
                true_up: position.true_up.normalize(),
                missed: position.missed,
                period_start: position.period_start,
            },
        });
        positions.insert(dimension.key, position);
    }
    planned
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use super::*;
    use crate::account::Marketplace;
    use crate::closing::{DimensionHour, RatedDimension};
    use crate::commercial::{
        Commitment, EntitlementStatus, OfferDimension, OfferKind, OveragePolicy, Pricing,
        SettleRule,
    };
    use crate::money::{Currency, Money};

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn key(s: &str) -> DimensionKey {
        DimensionKey::parse(s).expect("key")
    }

    fn offer(reporting: Reporting) -> Offer {
        Offer {
            id: "off".into(),
            name: "Private".into(),
            kind: OfferKind::Private,
            marketplace: Marketplace::Aws,
            currency: Currency::USD,
            dimensions: vec![
                OfferDimension {
                    key: key("capacity"),
                    marketplace_name: "CapacityTiBHours".into(),
                    unit: "TiB-hour".into(),
                    reporting,
                },
                OfferDimension {
                    key: key("written"),
                    marketplace_name: "DataWrittenGiB".into(),
                    unit: "GiB".into(),
                    reporting: Reporting::Exact,
                },
            ],
            pricing: Pricing::PerDimension,
        }
    }

    fn entitlement(overage: OverageReporting) -> Entitlement {
        Entitlement {
            id: "ent".into(),
            account_id: "acc".into(),
            offer_id: "off".into(),
            start: ts("2026-01-01T00:00:00Z"),
            end: ts("2027-01-01T00:00:00Z"),
            status: EntitlementStatus::Active,
            commitments: BTreeMap::from([(
                key("capacity"),
                Commitment {
                    committed_per_period: dec("100"),
                    overage: OveragePolicy {
                        threshold: Decimal::ZERO,
                        price_per_unit: Money {
                            amount: dec("0.5"),
                            currency: Currency::USD,
                        },
                        reporting: overage,
                    },
                    committed_fee: None,
                },
            )]),
            marketplace_binding: None,
        }
    }

    fn binding() -> Binding {
        Binding::Aws {
            customer_aws_account_id: "123456789012".into(),
            license_arn: "arn:aws:license-manager::123456789012:license:l-1".into(),
        }
    }

    /// An hour with `capacity` and `written` metered, capacity rated from `consumed`.
    fn hour(
        at: &str,
        capacity: &str,
        written: &str,
        consumed_before: &str,
        e: &Entitlement,
    ) -> AccountHour {
        let rating = e
            .commitments
            .get(&key("capacity"))
            .map(|commitment| RatedDimension {
                dimension: key("capacity"),
                entitlement_id: "ent".into(),
                period_start: ts("2026-11-01T00:00:00Z"),
                committed: dec("100"),
                rated: commitment
                    .rate(dec("100"), dec(consumed_before), dec(capacity))
                    .expect("rate"),
            })
            .into_iter()
            .collect();
        AccountHour {
            account_id: "acc".into(),
            hour: ts(at),
            meters: vec![],
            adjustments: vec![],
            dimensions: vec![
                DimensionHour {
                    dimension: key("capacity"),
                    quantity: dec(capacity),
                    adjustment: Decimal::ZERO,
                },
                DimensionHour {
                    dimension: key("written"),
                    quantity: dec(written),
                    adjustment: Decimal::ZERO,
                },
            ],
            rating,
            unpriced: vec![],
            unentitled: false,
        }
    }

    fn quantities(planned: &[PlannedDimension]) -> Vec<(String, Option<String>)> {
        planned
            .iter()
            .map(|p| {
                (
                    p.dimension.to_string(),
                    p.record.as_ref().map(|r| r.quantity.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn through_tackle_quiet_hours_send_nothing_and_keys_are_the_clouds() {
        let e = entitlement(OverageReporting::Hourly);
        let o = offer(Reporting::Exact);
        let tackle_binding = Binding::Tackle {
            cloud: Marketplace::Aws,
            product_id: "prod-1".into(),
            customer_id: "cust-1".into(),
        };
        let rules = Rules::for_binding(o.marketplace, &tackle_binding).expect("tackle rules");
        // Within the commitment AWS would get a zero; through Tackle nothing is sent
        // (Tackle errors on 0 and fills the hour with its own zero).
        let h = hour("2026-11-10T10:00:00Z", "40", "2.5", "0", &e);
        let p = plan_account_hour(&rules, &h, &e, &tackle_binding, &o, &mut BTreeMap::new());
        assert_eq!(
            quantities(&p),
            vec![
                ("capacity".into(), None),
                ("written".into(), Some("2.5".into()))
            ]
        );
        let direct = plan_account_hour(
            &Rules::of(Marketplace::Aws).expect("aws"),
            &h,
            &e,
            &binding(),
            &o,
            &mut BTreeMap::new(),
        );
        // The same hour has the same key whichever route it takes.
        assert_eq!(
            p[1].record.as_ref().map(|r| r.key),
            direct[1].record.as_ref().map(|r| r.key)
        );
        assert_eq!(
            p[1].record.as_ref().map(|r| r.binding.route()),
            Some(super::super::Route::Tackle)
        );
    }

    #[test]
    fn only_overage_beyond_the_commit_is_owed_and_uncommitted_dimensions_owe_everything() {
        let aws = Rules::of(Marketplace::Aws).expect("aws");
        let e = entitlement(OverageReporting::Hourly);
        let o = offer(Reporting::Exact);
        let mut positions = BTreeMap::new();
        // Within the commitment: capacity owes zero, reported as zero (AWS asks for it).
        let h = hour("2026-11-10T10:00:00Z", "40", "2.5", "0", &e);
        let p = plan_account_hour(&aws, &h, &e, &binding(), &o, &mut positions);
        assert_eq!(
            quantities(&p),
            vec![
                ("capacity".into(), Some("0".into())),
                ("written".into(), Some("2.5".into()))
            ]
        );
        // Crossing the commitment: 90 + 30 = 120, 20 beyond.
        let h = hour("2026-11-10T11:00:00Z", "30", "0", "90", &e);
        let p = plan_account_hour(&aws, &h, &e, &binding(), &o, &mut positions);
        assert_eq!(p[0].record.as_ref().map(|r| r.quantity), Some(dec("20")));
        assert_eq!(
            p[0].record
                .as_ref()
                .map(|r| r.marketplace_dimension.as_str()),
            Some("CapacityTiBHours")
        );
        // Azure takes no zeros: the within-commit hour sends nothing.
        let azure = Rules::of(Marketplace::Azure).expect("azure");
        let azure_binding = Binding::Azure {
            resource_id: "00000000-0000-0000-0000-000000000001".into(),
            plan_id: "gold".into(),
        };
        let h = hour("2026-11-10T10:00:00Z", "40", "0", "0", &e);
        let p = plan_account_hour(&azure, &h, &e, &azure_binding, &o, &mut BTreeMap::new());
        assert_eq!(
            quantities(&p),
            vec![("capacity".into(), None), ("written".into(), None)]
        );
    }

    #[test]
    fn digits_the_marketplace_does_not_take_are_carried_so_the_total_is_billed_exactly() {
        let aws = Rules::of(Marketplace::Aws).expect("aws");
        let e = entitlement(OverageReporting::Hourly);
        let o = offer(Reporting::Exact);
        let mut positions = BTreeMap::new();
        let mut sent = Decimal::ZERO;
        for h in 0..10 {
            let at = format!("2026-11-10T{h:02}:00:00Z");
            let p = plan_account_hour(
                &aws,
                &hour(&at, "0", "0.3333333", "0", &e),
                &e,
                &binding(),
                &o,
                &mut positions,
            );
            let record = p[1].record.as_ref().expect("a record");
            assert!(record.quantity.scale() <= 6, "{}", record.quantity);
            sent += record.quantity;
        }
        let left = positions[&key("written")].remainder;
        assert_eq!(sent + left, dec("3.333333"));
        assert!(left < dec("0.000001"));
    }

    #[test]
    fn whole_units_carry_the_fraction_and_settle_it_in_the_periods_last_hour() {
        let aws = Rules::of(Marketplace::Aws).expect("aws");
        let mut e = entitlement(OverageReporting::Hourly);
        e.commitments.clear();
        let o = offer(Reporting::WholeUnits {
            settle: SettleRule::HalfUp,
        });
        let mut positions = BTreeMap::new();
        let mut sent = Vec::new();
        for at in [
            "2026-11-30T21:00:00Z",
            "2026-11-30T22:00:00Z",
            "2026-11-30T23:00:00Z",
        ] {
            let p = plan_account_hour(
                &aws,
                &hour(at, "0.4", "0", "0", &e),
                &e,
                &binding(),
                &o,
                &mut positions,
            );
            sent.push(p[0].record.as_ref().map(|r| r.quantity.to_string()));
        }
        // 0.4, 0.8 carried; 1.2 → 1 sent and 0.2 left, which half-up settles to 0.
        assert_eq!(
            sent,
            vec![Some("0".into()), Some("0".into()), Some("1".into())]
        );
        assert_eq!(positions[&key("capacity")].remainder, Decimal::ZERO);
    }

    #[test]
    fn trued_up_overage_is_owed_once_in_the_periods_last_hour() {
        let aws = Rules::of(Marketplace::Aws).expect("aws");
        let e = entitlement(OverageReporting::TrueUp);
        let o = offer(Reporting::Exact);
        let mut positions = BTreeMap::new();
        let p = plan_account_hour(
            &aws,
            &hour("2026-11-30T22:00:00Z", "30", "0", "90", &e),
            &e,
            &binding(),
            &o,
            &mut positions,
        );
        assert_eq!(
            p[0].record.as_ref().map(|r| r.quantity),
            Some(Decimal::ZERO)
        );
        assert_eq!(p[0].position.true_up, dec("20"));
        let p = plan_account_hour(
            &aws,
            &hour("2026-11-30T23:00:00Z", "5", "0", "120", &e),
            &e,
            &binding(),
            &o,
            &mut positions,
        );
        assert_eq!(p[0].record.as_ref().map(|r| r.quantity), Some(dec("25")));
        assert_eq!(positions[&key("capacity")].true_up, Decimal::ZERO);
    }

    #[test]
    fn missed_usage_rides_on_the_next_record_and_unentitled_hours_owe_nothing() {
        let aws = Rules::of(Marketplace::Aws).expect("aws");
        let mut e = entitlement(OverageReporting::Hourly);
        let o = offer(Reporting::Exact);
        let mut positions = BTreeMap::from([(
            key("written"),
            Position {
                missed: dec("7"),
                ..Position::default()
            },
        )]);
        let p = plan_account_hour(
            &aws,
            &hour("2026-11-10T10:00:00Z", "0", "1", "0", &e),
            &e,
            &binding(),
            &o,
            &mut positions,
        );
        assert_eq!(p[1].record.as_ref().map(|r| r.quantity), Some(dec("8")));
        assert_eq!(p[1].carried_in, dec("7"));
        e.status = EntitlementStatus::Suspended;
        assert!(
            plan_account_hour(
                &aws,
                &hour("2026-11-10T11:00:00Z", "0", "1", "0", &e),
                &e,
                &binding(),
                &o,
                &mut positions
            )
            .is_empty()
        );
    }
}
