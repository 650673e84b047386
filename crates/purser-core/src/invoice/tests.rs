//! The invoice rules on small inline fixtures.

use super::*;
use crate::account::{AccountId, AccountStatus, NewAccount, Owners};
use crate::boundary::BoundaryName;
use crate::commercial::{
    Commitment, OfferDimension, OfferKind, OveragePolicy, OverageReporting, Pricing, Reporting,
};
use std::str::FromStr;

fn dec(value: &str) -> Decimal {
    Decimal::from_str(value).expect("decimal")
}

fn ts(value: &str) -> Timestamp {
    value.parse().expect("timestamp")
}

fn key(value: &str) -> DimensionKey {
    DimensionKey::parse(value).expect("key")
}

fn usd(value: &str) -> Money {
    Money::new(dec(value), Currency::USD)
}

fn account(id: &str) -> Account {
    Account {
        id: AccountId(id.into()),
        fields: NewAccount {
            name: format!("{id} Inc"),
            external_id: format!("{id}-prod"),
            marketplace: Marketplace::Gcp,
            marketplace_account_id: Some(format!("procurement-{id}")),
            crm_account_id: None,
            boundary: BoundaryName::standard(),
            region: "us-east1".into(),
            owners: Owners::default(),
            status: AccountStatus::Active,
        },
        created_at: ts("2026-01-01T00:00:00Z"),
        updated_at: ts("2026-01-01T00:00:00Z"),
    }
}

fn offer() -> Offer {
    Offer {
        id: "offer".into(),
        name: "Private capacity".into(),
        kind: OfferKind::Private,
        marketplace: Marketplace::Gcp,
        currency: Currency::USD,
        dimensions: vec![OfferDimension {
            key: key("capacity"),
            marketplace_name: "capacity".into(),
            unit: "TiB-hour".into(),
            reporting: Reporting::Exact,
        }],
        pricing: Pricing::PerDimension,
    }
}

fn entitlement(id: &str, account_id: &str, start: &str, fee: Option<&str>) -> Entitlement {
    Entitlement {
        id: id.into(),
        account_id: account_id.into(),
        offer_id: "offer".into(),
        start: ts(start),
        end: ts("2027-11-16T00:00:00Z"),
        status: EntitlementStatus::Active,
        commitments: BTreeMap::from([(
            key("capacity"),
            Commitment {
                committed_per_period: dec("3000"),
                overage: OveragePolicy {
                    threshold: Decimal::ZERO,
                    price_per_unit: usd("0.25"),
                    reporting: OverageReporting::Hourly,
                },
                committed_fee: fee.map(usd),
            },
        )]),
        marketplace_binding: None,
    }
}

fn rated(account_id: &str, entitlement_id: &str, hour: &str, quantity: &str) -> RatedRow {
    RatedRow {
        account_id: account_id.into(),
        dimension: key("capacity"),
        hour: ts(hour),
        entitlement_id: entitlement_id.into(),
        quantity: dec(quantity) + Decimal::TEN,
        overage_quantity: dec(quantity),
        overage_amount: usd("0.25").times(dec(quantity)).expect("fits"),
    }
}

fn november() -> BillingPeriod {
    BillingPeriod::parse_month("2026-11").expect("month")
}

#[test]
fn a_month_s_lines_are_its_rated_hours_summed_with_the_committed_fee_prorated() {
    let accounts = [account("a"), account("b")];
    // `a` started mid-month: half of November (15 of 30 days).
    let entitlements = [
        entitlement("ea", "a", "2026-11-16T00:00:00Z", Some("1000")),
        entitlement("eb", "b", "2026-01-01T00:00:00Z", None),
    ];
    let offers = [offer()];
    let rows = [
        rated("a", "ea", "2026-11-20T01:00:00Z", "2.5"),
        rated("a", "ea", "2026-11-20T02:00:00Z", "1.25"),
        rated("b", "eb", "2026-11-02T00:00:00Z", "0"),
    ];
    let fees = FeeRates::parse(&BTreeMap::from([("gcp".into(), "0.03".into())])).expect("rates");
    let lines = invoice_lines(&InvoiceInput {
        period: november(),
        accounts: &accounts,
        entitlements: &entitlements,
        offers: &offers,
        rated: &rows,
        fees: &fees,
    })
    .expect("lines");
    let summary: Vec<(&str, LineKind, String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l.account_id.as_str(),
                l.kind,
                l.quantity.to_string(),
                l.unit_price.to_string(),
                l.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "a",
                LineKind::Committed,
                "0.5".into(),
                "1000".into(),
                "500".into()
            ),
            (
                "a",
                LineKind::Overage,
                "3.75".into(),
                "0.25".into(),
                "0.9375".into()
            ),
            (
                "a",
                LineKind::MarketplaceFee,
                "500.9375".into(),
                "0.03".into(),
                "15.028125".into()
            ),
        ],
        "b had no overage and no committed fee: no line"
    );
    assert_eq!(lines[0].committed_quantity, Some(dec("1500")));
    assert_eq!(lines[0].service_start, ts("2026-11-16T00:00:00Z"));
    assert_eq!(lines[1].unit, "TiB-hour");
    assert_eq!(lines[1].month, "2026-11");
    for line in &lines {
        assert_eq!(line.unit_price * line.quantity, line.amount, "{line:?}");
    }
    let totals = account_totals(&lines);
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].net, dec("485.909375"));
    // The digest is over the JSON lines, newline-terminated.
    assert_eq!(lines_digest(&lines).len(), 64);
    assert_ne!(lines_digest(&lines), lines_digest(&lines[..2]));
}

#[test]
fn a_rated_hour_that_names_another_account_s_entitlement_is_refused() {
    let accounts = [account("a"), account("b")];
    let entitlements = [entitlement("ea", "a", "2026-01-01T00:00:00Z", None)];
    let offers = [offer()];
    let rows = [rated("b", "ea", "2026-11-20T01:00:00Z", "1")];
    let error = invoice_lines(&InvoiceInput {
        period: november(),
        accounts: &accounts,
        entitlements: &entitlements,
        offers: &offers,
        rated: &rows,
        fees: &FeeRates::default(),
    })
    .expect_err("a wrong join");
    assert!(
        matches!(error, InvoiceError::UnknownEntitlement { .. }),
        "{error}"
    );
    let rows = [rated("a", "ea", "2026-12-01T00:00:00Z", "1")];
    let error = invoice_lines(&InvoiceInput {
        period: november(),
        accounts: &accounts,
        entitlements: &entitlements,
        offers: &offers,
        rated: &rows,
        fees: &FeeRates::default(),
    })
    .expect_err("outside the month");
    assert!(
        matches!(error, InvoiceError::OutsideMonth { .. }),
        "{error}"
    );
}

#[test]
fn fee_rates_are_fractions_of_a_marketplace_s_charges() {
    let parse = |pairs: &[(&str, &str)]| {
        FeeRates::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let rates = parse(&[("aws", "0.03"), ("azure", "0")]).expect("valid");
    assert_eq!(rates.rate(Marketplace::Aws), Some(dec("0.03")));
    assert_eq!(rates.rate(Marketplace::Gcp), None);
    let fields: Vec<String> = parse(&[
        ("direct", "0.1"),
        ("ibm", "0.1"),
        ("gcp", "3"),
        ("aws", "x"),
    ])
    .expect_err("invalid")
    .errors
    .into_iter()
    .map(|e| e.field)
    .collect();
    assert_eq!(
        fields,
        [
            "marketplace_fee.aws",
            "marketplace_fee.direct",
            "marketplace_fee.gcp",
            "marketplace_fee.ibm"
        ]
    );
}

#[test]
fn months_are_named_year_dash_month() {
    let period = BillingPeriod::parse_month("2026-12").expect("month");
    assert_eq!(period.start, ts("2026-12-01T00:00:00Z"));
    assert_eq!(period.end, ts("2027-01-01T00:00:00Z"));
    assert_eq!(period.month_label(), "2026-12");
    for bad in ["2026-13", "2026-1", "26-11", "november", "2026-11-01", ""] {
        assert!(BillingPeriod::parse_month(bad).is_err(), "{bad}");
    }
}
