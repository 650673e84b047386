//! Marketplace customers for tests: bound accounts, private offers and entitlements,
//! written once so that the storage, application and process suites (and the
//! benchmark) set up the same world the same way.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use purser_core::account::AccountDraft;
use purser_core::audit::Actor;
use purser_core::commercial::{
    CommitmentDraft, EntitlementDraft, Offer, OfferDimensionDraft, OfferDraft,
};
use purser_core::marketplace::Binding;
use purser_core::marketplace::{DeliveryState, Route};
use purser_core::meter::MeterDraft;
use purser_core::{AccountScope, BoundaryRule, Marketplace};
use purser_fakes::FakeMarketplaces;
use purser_store::Store;
use purser_store::marketplace::LedgerFilter;
use rust_decimal::Decimal;

/// The Service Control service the tests' Google customers are reported to.
pub const GCP_SERVICE: &str = "storage.endpoints.vendor-project.cloud.goog";

/// The `i`-th customer's identifiers on `marketplace`, valid by the published shapes,
/// distinct per marketplace and `i`.
pub fn binding(marketplace: Marketplace, i: usize) -> Binding {
    match marketplace {
        Marketplace::Gcp => Binding::Gcp {
            service_name: GCP_SERVICE.into(),
            usage_reporting_id: format!("project_number:{:012}", 100 + i),
        },
        Marketplace::Azure => Binding::Azure {
            resource_id: format!("6c7b9f52-5a7e-4b7e-9d3c-{i:012}"),
            plan_id: "private".into(),
        },
        _ => Binding::Aws {
            customer_aws_account_id: format!("{:012}", 200_000 + i),
            license_arn: format!(
                "arn:aws:license-manager::{:012}:license:l-{i:016x}",
                200_000 + i
            ),
        },
    }
}

/// The `i`-th customer of `cloud` routed through Tackle: Tackle's product and
/// customer ids, distinct per cloud and `i`.
pub fn tackle_binding(cloud: Marketplace, i: usize) -> Binding {
    Binding::Tackle {
        cloud,
        product_id: format!("tackle-prod-{cloud}"),
        customer_id: format!("tackle-cust-{cloud}-{i}"),
    }
}

/// What a binding bills, as the fakes record it (consumer, resource, AWS account or
/// Tackle customer).
pub fn billed_party(binding: &Binding) -> String {
    match binding {
        Binding::Gcp {
            usage_reporting_id, ..
        } => usage_reporting_id.clone(),
        Binding::Azure { resource_id, .. } => resource_id.clone(),
        Binding::Aws {
            customer_aws_account_id,
            ..
        } => customer_aws_account_id.clone(),
        Binding::AwsLegacy {
            customer_identifier,
            ..
        } => customer_identifier.clone(),
        Binding::Tackle { customer_id, .. } => customer_id.clone(),
    }
}

/// One record a marketplace took: (marketplace, the route it came by, billed party,
/// the marketplace's dimension or metric, hour, quantity).
pub type Billed = (Marketplace, Route, String, String, Timestamp, Decimal);

/// What each fake marketplace holds, by the route it came by, sorted: one entry per
/// record it took (directly, or forwarded by Tackle; Tackle's own zeros excluded).
pub fn billed_by_fakes(fakes: &FakeMarketplaces) -> Vec<Billed> {
    let mut billed = Vec::new();
    for r in fakes.tackle().records() {
        if r.zero_fill {
            continue;
        }
        let cloud = Marketplace::parse(&r.cloud).expect("the Tackle fake's cloud");
        billed.push((
            cloud,
            Route::Tackle,
            r.customer_id,
            r.dimension,
            r.hour,
            r.quantity.normalize(),
        ));
    }
    for u in fakes.gcp().usage() {
        let metric = u.metric.rsplit('/').next().unwrap_or_default().to_owned();
        billed.push((
            Marketplace::Gcp,
            Route::Direct,
            u.consumer_id,
            metric,
            u.start_time,
            u.value.normalize(),
        ));
    }
    for e in fakes.azure().events() {
        billed.push((
            Marketplace::Azure,
            Route::Direct,
            e.resource,
            e.dimension,
            e.hour,
            e.quantity.normalize(),
        ));
    }
    for r in fakes.aws().records() {
        let party = match r.customer {
            purser_fakes::AwsCustomer::Account { account_id, .. } => account_id,
            purser_fakes::AwsCustomer::Identifier {
                customer_identifier,
                ..
            } => customer_identifier,
        };
        billed.push((
            Marketplace::Aws,
            Route::Direct,
            party,
            r.dimension,
            r.hour,
            r.quantity.normalize(),
        ));
    }
    billed.sort();
    billed
}

/// What the ledger says the marketplaces accepted, in the shape of [`billed_by_fakes`].
pub async fn billed_by_ledger(store: &Store) -> Vec<Billed> {
    let accepted = store
        .marketplace_records(&LedgerFilter {
            state: Some(DeliveryState::Accepted),
            ..LedgerFilter::default()
        })
        .await
        .expect("the ledger's accepted records");
    let mut billed: Vec<Billed> = accepted
        .into_iter()
        .map(|r| {
            (
                r.marketplace,
                r.route,
                billed_party(&r.record.binding),
                r.record.marketplace_dimension,
                r.record.hour,
                r.record.quantity.normalize(),
            )
        })
        .collect();
    billed.sort();
    billed
}

/// A sum meter of `$.{field}` bytes on `event_type`, feeding `dimension` in GiB.
pub fn gib_meter(name: &str, event_type: &str, field: &str, dimension: &str) -> MeterDraft {
    MeterDraft {
        name: name.into(),
        event_type: event_type.into(),
        value_path: Some(format!("$.{field}")),
        aggregation: "sum".into(),
        unit: "bytes".into(),
        dimension: Some(dimension.into()),
        conversion: Some("bytes_to_gib".into()),
        ..MeterDraft::default()
    }
}

/// A private offer on `marketplace` selling `dimensions` (key, marketplace name).
pub fn private_offer(marketplace: Marketplace, dimensions: &[(&str, &str)]) -> Offer {
    OfferDraft {
        name: format!("Private {marketplace}"),
        kind: "private".into(),
        marketplace: marketplace.as_str().into(),
        currency: None,
        dimensions: dimensions
            .iter()
            .map(|(key, name)| OfferDimensionDraft {
                key: (*key).into(),
                marketplace_name: Some((*name).into()),
                unit: "GiB".into(),
                reporting: None,
                settle: None,
            })
            .collect(),
        pricing: None,
    }
    .validate(format!("offer-{marketplace}"))
    .expect("a valid offer")
}

/// One customer of an offer: who, where, and what the entitlement commits to.
#[derive(Debug, Clone)]
pub struct Customer<'a> {
    pub external_id: String,
    pub name: String,
    pub boundary: &'a str,
    /// Which of [`binding`]'s identifiers the customer gets.
    pub index: usize,
    /// The entitlement runs from 30 days before this to a year after.
    pub around: Timestamp,
    /// Committed per month of each of `committed_dimensions`, overage billed hourly.
    pub committed: &'a str,
    pub committed_dimensions: &'a [&'a str],
}

/// Creates an account of `marketplace` in `boundary`, without an entitlement (a buyer
/// whose subscription comes from the marketplace); returns its id.
pub async fn account(
    store: &Store,
    marketplace: Marketplace,
    external_id: &str,
    name: &str,
    boundary: &str,
    index: usize,
) -> String {
    let rules = BoundaryRule::built_in();
    let known: Vec<_> = rules.iter().map(|r| r.name.clone()).collect();
    let system = AccountScope::system("test", &rules);
    let binding = binding(marketplace, index);
    store
        .create_account(
            &system,
            AccountDraft {
                name: name.into(),
                external_id: external_id.into(),
                marketplace: marketplace.as_str().into(),
                marketplace_account_id: Some(match &binding {
                    Binding::Gcp { .. } => format!("procurement-{index}"),
                    other => billed_party(other),
                }),
                region: "us-east-1".into(),
                status: Some("active".into()),
                boundary: Some(boundary.into()),
                ..Default::default()
            }
            .validate(&known)
            .expect("a valid account"),
        )
        .await
        .expect("the account is created")
        .id
        .0
}

/// Creates the customer's account and its entitlement, bound to its marketplace;
/// returns the account's id.
pub async fn customer(store: &Store, offer: &Offer, customer: &Customer<'_>) -> String {
    let binding = binding(offer.marketplace, customer.index);
    customer_bound(store, offer, customer, binding).await
}

/// Like [`customer`], with the entitlement bound by `binding` (a Tackle binding, say).
pub async fn customer_bound(
    store: &Store,
    offer: &Offer,
    customer: &Customer<'_>,
    binding: Binding,
) -> String {
    let system = AccountScope::system("test", &BoundaryRule::built_in());
    let marketplace = offer.marketplace;
    let account_id = account(
        store,
        marketplace,
        &customer.external_id,
        &customer.name,
        customer.boundary,
        customer.index,
    )
    .await;
    let start = customer.around - SignedDuration::from_hours(24 * 30);
    let commitments = customer
        .committed_dimensions
        .iter()
        .map(|key| {
            (
                (*key).to_owned(),
                CommitmentDraft {
                    committed_per_period: customer.committed.into(),
                    overage_threshold: None,
                    overage_price: "0.02".into(),
                    overage_reporting: None,
                    committed_fee: None,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let entitlement = EntitlementDraft {
        offer_id: offer.id.clone(),
        start: start.to_string(),
        end: (start + SignedDuration::from_hours(24 * 400)).to_string(),
        status: Some("active".into()),
        commitments,
        marketplace_binding: Some(binding),
    }
    .validate(
        format!("ent-{}", customer.external_id),
        account_id.clone(),
        offer,
    )
    .expect("a valid entitlement");
    store
        .create_entitlement(&system, entitlement)
        .await
        .expect("the entitlement is recorded");
    account_id
}

/// Creates `n` customers of `offer`'s marketplace in the standard boundary (see
/// [`customer`]); returns their external ids (`{marketplace}-{i}`).
pub async fn customers(
    store: &Store,
    offer: &Offer,
    n: usize,
    around: Timestamp,
    committed: &str,
    committed_dimensions: &[&str],
) -> Vec<String> {
    let terms = (around, committed, committed_dimensions);
    customers_routed(store, offer, n, terms, false).await
}

/// Creates `n` customers of `offer`'s cloud routed through Tackle (see
/// [`tackle_binding`]) in the standard boundary; returns their external ids
/// (`{marketplace}-tackle-{i}`). Their accounts take indices from 500 on, so their
/// marketplace account ids differ from [`customers`]'.
pub async fn tackle_customers(
    store: &Store,
    offer: &Offer,
    n: usize,
    around: Timestamp,
    committed: &str,
    committed_dimensions: &[&str],
) -> Vec<String> {
    let terms = (around, committed, committed_dimensions);
    customers_routed(store, offer, n, terms, true).await
}

/// `n` customers, bound directly or through Tackle; `terms` is (around, committed,
/// committed dimensions) as [`Customer`] has them.
async fn customers_routed(
    store: &Store,
    offer: &Offer,
    n: usize,
    (around, committed, committed_dimensions): (Timestamp, &str, &[&str]),
    through_tackle: bool,
) -> Vec<String> {
    let mut externals = Vec::with_capacity(n);
    for i in 0..n {
        let (external_id, index, bound) = if through_tackle {
            let external_id = format!("{}-tackle-{i}", offer.marketplace);
            (external_id, 500 + i, tackle_binding(offer.marketplace, i))
        } else {
            let external_id = format!("{}-{i}", offer.marketplace);
            (external_id, i, binding(offer.marketplace, i))
        };
        let spec = Customer {
            name: format!("Customer {external_id}"),
            external_id: external_id.clone(),
            boundary: "standard",
            index,
            around,
            committed,
            committed_dimensions,
        };
        customer_bound(store, offer, &spec, bound).await;
        externals.push(external_id);
    }
    externals
}

/// Closes the hours due by 16 minutes past `hour_end` (the default grace is 15) and
/// plans them for their marketplaces, as the jobs would.
pub async fn close_and_plan(store: &Store, hour_end: Timestamp) {
    store
        .close_due_hours(
            hour_end + SignedDuration::from_mins(16),
            &purser_store::metering::MeteringSettings::default(),
            1000,
        )
        .await
        .expect("the hours close");
    store
        .plan_marketplace_hours(Timestamp::now(), 1000)
        .await
        .expect("the hours are planned");
}

/// Defines the meters and the offer, returning the offer as stored.
pub async fn define(store: &Store, meters: &[MeterDraft], offer: Offer) -> Offer {
    let actor = Actor::new("system:test", None);
    for meter in meters {
        let meter = meter.validate().expect("a valid meter");
        if store
            .meters()
            .await
            .expect("meters")
            .iter()
            .all(|m| m.name != meter.name)
        {
            store
                .create_meter(&actor, &meter)
                .await
                .expect("the meter is defined");
        }
    }
    store
        .create_offer(&actor, offer)
        .await
        .expect("the offer is defined")
}

/// Ingests NDJSON event lines as the API would, 5,000 a batch, with every boundary in
/// reach; returns how many were accepted.
pub async fn ingest(store: &Store, lines: &[String]) -> usize {
    use purser_store::metering::{MeteringSettings, prepare_batch};
    let system = AccountScope::system("test", &BoundaryRule::built_in());
    let meters = store.meters().await.expect("meters");
    let mut accepted = 0;
    for chunk in lines.chunks(5_000) {
        let batch = prepare_batch(
            chunk.join("\n").as_bytes(),
            purser_core::events::Framing::Ndjson,
            &meters,
            Timestamp::now(),
            &MeteringSettings::default(),
        )
        .expect("a valid batch");
        accepted += store
            .ingest(&system, "api", batch)
            .await
            .expect("the batch is stored")
            .accepted;
    }
    accepted
}

/// An exchange as a client records one (an answered AWS request carrying `keys`).
pub fn exchange(keys: Vec<uuid::Uuid>) -> purser_core::marketplace::exchange::Exchange {
    purser_core::marketplace::exchange::Exchange {
        started_at: Timestamp::now(),
        marketplace: Marketplace::Aws,
        operation: "BatchMeterUsage".into(),
        method: "POST".into(),
        url: "http://127.0.0.1:1/".into(),
        request_body: "{\"UsageRecords\":[]}".into(),
        status: Some(200),
        response_body: Some("{\"Results\":[]}".into()),
        error: None,
        elapsed_ms: 3,
        record_keys: keys,
    }
}

/// A usage event of `bytes` written, as the tests' `storage.written` meter reads it
/// (see [`gib_meter`] on `com.polaris.io`).
pub fn written_event(id: &str, subject: &str, time: Timestamp, bytes: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"//polaris/io","type":"com.polaris.io","subject":"{subject}","time":"{time}","data":{{"bytes_written":{bytes}}}}}"#
    )
}

/// Sells `plan` on `marketplace` under `offer_id`, committing `committed` GiB a month
/// (see [`plan_terms`]).
pub async fn sell_plan(
    store: &Store,
    marketplace: Marketplace,
    plan: &str,
    offer_id: &str,
    committed: i64,
) {
    store
        .set_marketplace_plan(
            &Actor::new("system:test", None),
            marketplace,
            plan,
            &plan_terms(offer_id, committed),
        )
        .await
        .expect("the plan is sold");
}

/// What a marketplace plan sells: `offer_id` committing `committed` of
/// `data_written_gib` a month, overage at 0.02 USD billed hourly.
pub fn plan_terms(
    offer_id: &str,
    committed: i64,
) -> purser_core::marketplace::subscription::PlanTerms {
    use purser_core::commercial::{Commitment, DimensionKey, OveragePolicy, OverageReporting};
    use purser_core::money::{Currency, Money};
    let commitment = Commitment {
        committed_per_period: rust_decimal::Decimal::from(committed),
        committed_fee: None,
        overage: OveragePolicy {
            threshold: rust_decimal::Decimal::ZERO,
            price_per_unit: Money::new(
                rust_decimal::Decimal::new(2, 2),
                Currency::parse("USD").expect("a currency"),
            ),
            reporting: OverageReporting::Hourly,
        },
    };
    purser_core::marketplace::subscription::PlanTerms {
        offer_id: offer_id.into(),
        commitments: [(
            DimensionKey::parse("data_written_gib").expect("a dimension"),
            commitment,
        )]
        .into(),
        per_quantity: false,
    }
}

/// Defines the `storage.written` meter (bytes written, in GiB) and a private offer of
/// `marketplace` selling `data_written_gib` as `written`; returns the offer as stored.
pub async fn written_offer(store: &Store, marketplace: Marketplace) -> Offer {
    let meter = gib_meter(
        "storage.written",
        "com.polaris.io",
        "bytes_written",
        "data_written_gib",
    );
    let offer = private_offer(marketplace, &[("data_written_gib", "written")]);
    define(store, &[meter], offer).await
}
