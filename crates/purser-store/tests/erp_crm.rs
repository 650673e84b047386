//! The ERP export and the CRM import in storage, on SQLite and PostgreSQL alike: invoice
//! lines that tie to the rated hours, kept exports that never change, scoped reads,
//! and imports that are idempotent, audited, all-or-nothing and hold back what would
//! corrupt billing.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use purser_core::account::AccountDraft;
use purser_core::commercial::{BillingPeriod, CommitmentDraft, EntitlementDraft, Offer};
use purser_core::invoice::{FeeRates, LineKind};
use purser_core::{AccountScope, BoundaryRule, Marketplace, Role};
use purser_store::metering::{Granularity, MeteringSettings, UsageOf, hour_start};
use purser_store::{AuditFilter, PageRequest, Store, StoreError};
use purser_testkit::marketplace::{define, gib_meter, ingest, private_offer, written_event};
use purser_testkit::{TestDatabase, both_backends, scope};
use rust_decimal::Decimal;

fn dec(value: &str) -> Decimal {
    value.parse().unwrap()
}

fn system() -> AccountScope {
    AccountScope::system("test", &BoundaryRule::built_in())
}

fn uncleared() -> AccountScope {
    scope("ana", &[Role::Finance], &[], Some("US"))
}

fn egress_event(id: &str, subject: &str, time: Timestamp, bytes: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"//polaris/egress","type":"com.polaris.egress","subject":"{subject}","time":"{time}","data":{{"bytes_read":{bytes}}}}}"#
    )
}

async fn account(store: &Store, external_id: &str, boundary: &str) -> purser_core::Account {
    let known: Vec<_> = BoundaryRule::built_in()
        .into_iter()
        .map(|r| r.name)
        .collect();
    store
        .create_account(
            &system(),
            AccountDraft {
                name: format!("Customer {external_id}"),
                external_id: external_id.into(),
                marketplace: "gcp".into(),
                marketplace_account_id: Some(format!("procurement-{external_id}")),
                region: "us-east1".into(),
                boundary: Some(boundary.into()),
                status: Some("active".into()),
                ..Default::default()
            }
            .validate(&known)
            .unwrap(),
        )
        .await
        .unwrap()
}

/// An entitlement from `start` to `end` committing `committed` GiB a month of both
/// dimensions, overage at `price`, with a committed fee on written data.
async fn entitle(
    store: &Store,
    offer: &Offer,
    id: &str,
    account: &purser_core::Account,
    (start, end): (Timestamp, Timestamp),
    committed: &str,
    price: &str,
) {
    let commitment = |fee: Option<&str>| CommitmentDraft {
        committed_per_period: committed.into(),
        overage_threshold: Some("0.5".into()),
        overage_price: price.into(),
        overage_reporting: None,
        committed_fee: fee.map(str::to_owned),
    };
    let entitlement = EntitlementDraft {
        offer_id: offer.id.clone(),
        start: start.to_string(),
        end: end.to_string(),
        status: Some("active".into()),
        commitments: BTreeMap::from([
            ("data_written_gib".into(), commitment(Some("744"))),
            ("egress_gib".into(), commitment(None)),
        ]),
        marketplace_binding: None,
    }
    .validate(id.into(), account.id.0.clone(), offer)
    .unwrap();
    store
        .create_entitlement(&system(), entitlement)
        .await
        .unwrap();
}

const GIB: u64 = 1 << 30;

struct Month {
    period: BillingPeriod,
    accounts: Vec<purser_core::Account>,
}

/// Three standard accounts and a us-gov one, two dimensions, 48 hours of usage six
/// days ago (sometimes across a month's end), one entitlement starting mid-data and one
/// account whose entitlement is replaced mid-data at another price. Every hour is closed.
async fn a_month_of_usage(store: &Store) -> Month {
    let anchor = hour_start(Timestamp::now() - SignedDuration::from_hours(24 * 6)).unwrap();
    let hour = |n: i64| anchor + SignedDuration::from_hours(n);
    let offer = define(
        store,
        &[
            gib_meter(
                "storage.written",
                "com.polaris.io",
                "bytes_written",
                "data_written_gib",
            ),
            gib_meter(
                "storage.egress",
                "com.polaris.egress",
                "bytes_read",
                "egress_gib",
            ),
        ],
        private_offer(
            Marketplace::Gcp,
            &[("data_written_gib", "written"), ("egress_gib", "egress")],
        ),
    )
    .await;
    let long_ago = anchor - SignedDuration::from_hours(24 * 60);
    let far = anchor + SignedDuration::from_hours(24 * 400);
    let steady = account(store, "steady", "standard").await;
    let late = account(store, "late-start", "standard").await;
    let renewed = account(store, "renewed", "standard").await;
    let agency = account(store, "agency", "us-gov").await;
    entitle(
        store,
        &offer,
        "ent-steady",
        &steady,
        (long_ago, far),
        "10",
        "0.25",
    )
    .await;
    // Starts twelve hours into the data: its commitment is prorated.
    entitle(
        store,
        &offer,
        "ent-late",
        &late,
        (hour(12), far),
        "300",
        "0.5",
    )
    .await;
    entitle(
        store,
        &offer,
        "ent-renewed-1",
        &renewed,
        (long_ago, hour(24)),
        "5",
        "0.1",
    )
    .await;
    entitle(
        store,
        &offer,
        "ent-renewed-2",
        &renewed,
        (hour(24), far),
        "5",
        "0.3",
    )
    .await;
    entitle(
        store,
        &offer,
        "ent-agency",
        &agency,
        (long_ago, far),
        "1",
        "1.5",
    )
    .await;
    let mut lines = Vec::new();
    for n in 0..48 {
        for (i, subject) in ["steady", "late-start", "renewed", "agency"]
            .iter()
            .enumerate()
        {
            let bytes = GIB * (1 + ((n as u64 * 7 + i as u64 * 3) % 5)) / 2;
            lines.push(written_event(
                &format!("w-{subject}-{n}"),
                subject,
                hour(n) + SignedDuration::from_mins(5),
                bytes,
            ));
            if n % 3 != i as i64 % 3 {
                lines.push(egress_event(
                    &format!("e-{subject}-{n}"),
                    subject,
                    hour(n) + SignedDuration::from_mins(20),
                    bytes * 3,
                ));
            }
        }
    }
    assert_eq!(ingest(store, &lines).await, lines.len());
    store
        .close_due_hours(Timestamp::now(), &MeteringSettings::default(), 1_000)
        .await
        .unwrap();
    Month {
        period: BillingPeriod::containing(anchor),
        accounts: vec![steady, late, renewed, agency],
    }
}

both_backends!(
    invoice_lines_tie_to_the_rated_hours_and_a_kept_export_never_changes,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let month = a_month_of_usage(&store).await;
        let fees = FeeRates::parse(&BTreeMap::from([("gcp".into(), "0.2".into())])).unwrap();
        let lines = store
            .compute_invoice_lines(&system(), month.period, None, &fees)
            .await
            .unwrap();

        // The tie: per account × dimension, overage quantity and amount equal the sum of
        // the rated hours, read back through the usage query (another path).
        let mut n_compared = 0;
        for account in &month.accounts {
            let usage = store
                .usage(
                    &system(),
                    &account.id.0,
                    month.period.start,
                    month.period.end,
                    UsageOf::Dimensions,
                    Granularity::Hour,
                )
                .await
                .unwrap();
            for dimension in ["data_written_gib", "egress_gib"] {
                let (mut quantity, mut amount) = (Decimal::ZERO, Decimal::ZERO);
                for row in usage.iter().filter(|r| r.name == dimension) {
                    quantity += row.overage_quantity.as_deref().map_or(Decimal::ZERO, dec);
                    amount += row.overage_amount.as_deref().map_or(Decimal::ZERO, dec);
                }
                let billed = lines.iter().filter(|l| {
                    l.account_id == account.id.0
                        && l.kind == LineKind::Overage
                        && l.dimension.as_deref() == Some(dimension)
                });
                let (line_quantity, line_amount) = billed
                    .fold((Decimal::ZERO, Decimal::ZERO), |(q, a), l| {
                        (q + l.quantity, a + l.amount)
                    });
                assert_eq!(
                    line_quantity, quantity,
                    "{} {dimension}",
                    account.fields.external_id
                );
                assert_eq!(
                    line_amount, amount,
                    "{} {dimension}",
                    account.fields.external_id
                );
                if !quantity.is_zero() {
                    n_compared += 1;
                }
            }
        }
        assert!(
            n_compared >= 6,
            "overage to compare in most pairs: {n_compared}"
        );
        for line in &lines {
            assert_eq!(line.unit_price * line.quantity, line.amount, "{line:?}");
            assert_eq!(line.channel, Marketplace::Gcp);
        }

        // The account renewed mid-data is billed under both entitlements, each at its
        // own price.
        let renewed: Vec<_> = lines
            .iter()
            .filter(|l| l.account_external_id == "renewed" && l.kind == LineKind::Overage)
            .map(|l| (l.entitlement_id.as_str(), l.unit_price.to_string()))
            .collect();
        assert!(
            renewed.contains(&("ent-renewed-1", "0.1".into())),
            "{renewed:?}"
        );
        // The late start commits to its share of the month, and pays that share of the fee.
        let late = lines
            .iter()
            .find(|l| l.entitlement_id == "ent-late" && l.kind == LineKind::Committed)
            .unwrap();
        let start = lines
            .iter()
            .find(|l| l.entitlement_id == "ent-late")
            .unwrap()
            .service_start;
        let share = Decimal::from(month.period.end.duration_since(start).as_secs())
            / Decimal::from(
                month
                    .period
                    .end
                    .duration_since(month.period.start)
                    .as_secs(),
            );
        assert_eq!(late.quantity, share.round_dp(12).normalize());
        assert_eq!(late.amount, (dec("744") * late.quantity).normalize());
        // Fees: a fifth of each entitlement's charges.
        for fee in lines.iter().filter(|l| l.kind == LineKind::MarketplaceFee) {
            let charges: Decimal = lines
                .iter()
                .filter(|l| {
                    l.entitlement_id == fee.entitlement_id && l.kind != LineKind::MarketplaceFee
                })
                .map(|l| l.amount)
                .sum();
            assert_eq!(fee.quantity, charges);
            assert_eq!(fee.amount, charges * dec("0.2"));
        }

        // The uncleared never get the us-gov agency's lines; one account by external id.
        let visible = store
            .compute_invoice_lines(&uncleared(), month.period, None, &fees)
            .await
            .unwrap();
        assert!(visible.iter().all(|l| l.account_external_id != "agency"));
        assert!(lines.iter().any(|l| l.account_external_id == "agency"));
        assert_eq!(
            visible.len(),
            lines
                .iter()
                .filter(|l| l.account_external_id != "agency")
                .count()
        );
        let one = store
            .compute_invoice_lines(&system(), month.period, Some("steady"), &fees)
            .await
            .unwrap();
        assert!(!one.is_empty() && one.iter().all(|l| l.account_external_id == "steady"));

        // Kept once; kept again is the same export; the kept lines are the computed ones.
        let actor = purser_core::audit::Actor::new("system:erp.export", None);
        let kept = store
            .keep_erp_export(&actor, &BoundaryRule::built_in(), month.period, &fees)
            .await
            .unwrap();
        assert_eq!(
            kept.lines_digest,
            purser_core::invoice::lines_digest(&lines)
        );
        assert_eq!(kept.n_lines, lines.len() as i64);
        let other_fees = FeeRates::default();
        let again = store
            .keep_erp_export(&actor, &BoundaryRule::built_in(), month.period, &other_fees)
            .await
            .unwrap();
        assert_eq!(again, kept, "a kept export is not recomputed");
        let read = store
            .month_lines(&uncleared(), month.period, None, &other_fees)
            .await
            .unwrap();
        assert_eq!(read.kept, Some(kept.clone()));
        assert_eq!(
            read.lines, visible,
            "the kept lines, as the scope may see them"
        );
        let mut tx = store.db().begin().await.unwrap();
        let tampered = tx
            .execute(
                "UPDATE erp_export_lines SET line = '{}' WHERE month = $1",
                &[kept.month.as_str().into()],
            )
            .await;
        assert!(tampered.is_err(), "kept lines never change");
        drop(tx);
        assert_eq!(store.erp_exports().await.unwrap(), vec![kept]);
    }
);

const FILE: &str = r#"{"records": [
  {"attributes": {"type": "Account"}, "Id": "001Dn00000AbCdEfGH", "Name": "Acme Corp",
   "Purser_External_Id__c": "acme-prod", "Marketplace__c": "direct", "Region__c": "us-east-1"},
  {"attributes": {"type": "Account"}, "Name": "Federal Storage", "Purser_External_Id__c": "fed-storage",
   "Marketplace__c": "direct", "Region__c": "us-gov-west-1", "Data_Boundary__c": "standard"},
  {"attributes": {"type": "Opportunity"}, "Purser_Offer_Id__c": "direct-capacity", "Name": "Direct capacity",
   "Offer_Kind__c": "private", "Marketplace__c": "direct",
   "OpportunityLineItems": {"records": [{"Purser_Dimension__c": "capacity", "Unit__c": "TiB-hour"}]}},
  {"attributes": {"type": "ServiceContract"}, "Purser_Entitlement_Id__c": "ent-acme",
   "Account": {"Purser_External_Id__c": "acme-prod"}, "Offer__r": {"Purser_Offer_Id__c": "direct-capacity"},
   "StartDate": "2026-11-01", "EndDate": "2027-10-31", "Status": "Active",
   "ContractLineItems": {"records": [{"Purser_Dimension__c": "capacity", "Committed_Quantity__c": 100,
     "Overage_Price__c": 0.5}]}},
  {"attributes": {"type": "ServiceContract"}, "Purser_Entitlement_Id__c": "ent-fed",
   "Account": {"Purser_External_Id__c": "fed-storage"}, "Offer__r": {"Purser_Offer_Id__c": "direct-capacity"},
   "StartDate": "2026-11-01", "EndDate": "2027-10-31"}
]}"#;

async fn n_audited(store: &Store, action: &str) -> usize {
    store
        .audit_entries(
            &system(),
            &AuditFilter {
                action: Some(action.into()),
                ..Default::default()
            },
            &PageRequest {
                after: None,
                limit: Some(500),
            },
        )
        .await
        .unwrap()
        .items
        .len()
}

both_backends!(
    a_crm_import_is_idempotent_audited_and_holds_back_what_would_corrupt_billing,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let admin = scope("root", &[Role::Admin], &["us-gov"], Some("US"));
        let records = purser_core::crm::parse_records(FILE).unwrap();

        // A dry run decides and changes nothing.
        let dry = store.import_crm(&admin, &records, true).await.unwrap();
        assert!(dry.dry_run);
        assert_eq!((dry.accounts_created, dry.entitlements_created), (1, 1));
        assert_eq!(store.count_accounts().await.unwrap(), 0);
        assert!(
            store
                .crm_findings(&system(), true)
                .await
                .unwrap()
                .is_empty()
        );

        let report = store.import_crm(&admin, &records, false).await.unwrap();
        assert_eq!(
            (
                report.accounts_created,
                report.offers_created,
                report.entitlements_created,
                report.held_back.len()
            ),
            (1, 1, 1, 2),
            "{report:?}"
        );
        assert_eq!(store.count_accounts().await.unwrap(), 1);
        assert_eq!(n_audited(&store, "account.create").await, 1);
        assert_eq!(n_audited(&store, "entitlement.create").await, 1);
        assert_eq!(n_audited(&store, "offer.create").await, 1);

        // The GovCloud region outside us-gov, and the entitlement of that account: kept
        // as findings under us-gov, which the uncleared do not see.
        let findings = store.crm_findings(&admin, false).await.unwrap();
        assert_eq!(
            findings
                .iter()
                .map(|f| (f.kind.as_str(), f.boundary.as_str()))
                .collect::<Vec<_>>(),
            [
                ("account_held_back", "us-gov"),
                ("boundary_region_mismatch", "us-gov")
            ]
        );
        assert!(
            store
                .crm_findings(&uncleared(), false)
                .await
                .unwrap()
                .is_empty()
        );
        let as_uncleared = store
            .import_crm(
                &scope("eve", &[Role::Admin], &[], Some("US")),
                &records,
                true,
            )
            .await
            .unwrap();
        assert_eq!(
            (
                as_uncleared.held_back.len(),
                as_uncleared.held_back_elsewhere
            ),
            (0, 2)
        );

        // Importing again changes nothing and audits no change.
        let again = store.import_crm(&admin, &records, false).await.unwrap();
        assert_eq!(
            (
                again.accounts_created,
                again.offers_created,
                again.entitlements_created,
                again.unchanged
            ),
            (0, 0, 0, 3)
        );
        assert_eq!(n_audited(&store, "account.create").await, 1);
        assert_eq!(store.crm_findings(&admin, false).await.unwrap().len(), 2);

        // Fixed in the CRM: the finding resolves and the records come in.
        let fixed = FILE.replace(
            r#""Data_Boundary__c": "standard""#,
            r#""Data_Boundary__c": "us-gov""#,
        );
        let report = store
            .import_crm(
                &admin,
                &purser_core::crm::parse_records(&fixed).unwrap(),
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            (report.accounts_created, report.findings_resolved),
            (1, 2),
            "{report:?}"
        );
        assert!(store.crm_findings(&admin, false).await.unwrap().is_empty());
        assert_eq!(store.crm_findings(&admin, true).await.unwrap().len(), 2);

        // A bad record fails the whole import, naming it, and changes nothing.
        let before = store.count_accounts().await.unwrap();
        let n_entries = n_audited(&store, "*").await;
        let bad = FILE
            .replace("acme-prod", "acme-new")
            .replace(r#""Overage_Price__c": 0.5"#, r#""Overage_Price__c": -1"#);
        let error = store
            .import_crm(
                &admin,
                &purser_core::crm::parse_records(&bad).unwrap(),
                false,
            )
            .await
            .expect_err("a bad record");
        let StoreError::Invalid(errors) = error else {
            panic!("{error}");
        };
        assert_eq!(
            errors.errors[0].field,
            "records[3].ContractLineItems.records[0].Overage_Price__c"
        );
        assert_eq!(store.count_accounts().await.unwrap(), before);
        assert_eq!(n_audited(&store, "*").await, n_entries);

        // The export carries the usage and entitlement fields by external id.
        let period = BillingPeriod::containing(Timestamp::now());
        let export = store.crm_export(&uncleared(), period).await.unwrap();
        let types: Vec<&str> = export
            .iter()
            .map(|r| r["attributes"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Account", "ServiceContract", "ContractLineItem"]);
        assert_eq!(export[0]["Purser_External_Id__c"], "acme-prod");
        assert_eq!(export[1]["EndDate"], "2027-10-31");
        assert_eq!(
            export[2]["Purser_Committed_This_Period__c"],
            serde_json::json!(100)
        );
    }
);
