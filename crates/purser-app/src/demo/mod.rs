//! The demo data set: a few dozen accounts across the marketplaces and boundaries,
//! and a user for every role, with and without clearances. Seeded once into an empty
//! database, through the same store calls as real work, so it is audited like them.
//!
//! With [`DemoMarketplaces`], the accounts sold through a marketplace are bound to it
//! and their history is reported to the fakes hour by hour as it is played
//! ([`marketplaces`]): the demo then holds weeks of real submissions that reconcile.

mod marketplaces;

pub use marketplaces::{DemoMarketplaces, GCP_SAAS_SERVICE, GCP_SERVICE, TACKLE_ROUTED};

use purser_core::account::{AccountDraft, Owners};
use purser_core::audit::Actor;
use purser_core::identity::NewUser;
use purser_core::{AccountScope, BoundaryRule};
use purser_store::{Store, StoreError};

use crate::AppError;

/// How much history the demo holds and where it is reported.
pub struct SeedOptions<'a> {
    /// Days of telemetry before `now`.
    pub days: i64,
    /// When the demo is seeded as of: the history ends here.
    pub now: jiff::Timestamp,
    /// The marketplaces the history is reported to; without them no entitlement is
    /// bound and nothing is reported.
    pub marketplaces: Option<&'a DemoMarketplaces>,
    /// Told (days played, days) as each day of history is in.
    pub on_day: Option<&'a (dyn Fn(i64, i64) + Send + Sync)>,
}

impl SeedOptions<'_> {
    /// A week of telemetry, reported nowhere.
    pub fn offline() -> SeedOptions<'static> {
        SeedOptions {
            days: 7,
            now: jiff::Timestamp::now(),
            marketplaces: None,
            on_day: None,
        }
    }
}

/// A demo sign-in, printed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoUser {
    pub username: &'static str,
    pub password: String,
    pub roles: &'static [&'static str],
    pub clearances: &'static [&'static str],
    pub residency: &'static str,
}

/// (username, roles, clearances, residency)
const USERS: [(&str, &[&str], &[&str], &str); 11] = [
    ("admin", &["admin"], &["us-gov"], "US"),
    ("finance", &["finance"], &[], "US"),
    ("support", &["support"], &[], "GB"),
    ("support-usgov", &["support"], &["us-gov"], "US"),
    ("support-eu", &["support"], &["eu-sovereign"], "DE"),
    ("support-sg", &["support"], &["sg-gov"], "SG"),
    ("sre", &["sre"], &[], "US"),
    ("csm", &["csm"], &[], "US"),
    ("auditor", &["auditor"], &[], "US"),
    ("auditor-usgov", &["auditor"], &["us-gov"], "US"),
    ("viewer", &["viewer"], &[], "IE"),
];

pub fn users() -> Vec<DemoUser> {
    USERS
        .iter()
        .map(|(username, roles, clearances, residency)| DemoUser {
            username,
            password: format!("{username}-demo-pass"),
            roles,
            clearances,
            residency,
        })
        .collect()
}

/// (name, marketplace, boundary, region, status)
const ACCOUNTS: [(&str, &str, &str, &str, &str); 36] = [
    (
        "Northwind Genomics",
        "gcp",
        "standard",
        "us-central1",
        "active",
    ),
    (
        "Bluefin Analytics",
        "gcp",
        "standard",
        "europe-west4",
        "active",
    ),
    (
        "Cobalt Media Group",
        "gcp",
        "standard",
        "us-east4",
        "active",
    ),
    (
        "Halcyon Health",
        "gcp",
        "standard",
        "us-west1",
        "onboarding",
    ),
    (
        "Juniper Robotics",
        "gcp",
        "standard",
        "asia-northeast1",
        "active",
    ),
    (
        "Lumen Freight",
        "gcp",
        "standard",
        "us-central1",
        "suspended",
    ),
    ("Meridian Bank", "gcp", "standard", "europe-west2", "active"),
    ("Orchid Biotech", "gcp", "standard", "us-east1", "churned"),
    ("Pioneer Energy", "gcp", "standard", "us-south1", "active"),
    (
        "Quarry Labs",
        "gcp",
        "standard",
        "australia-southeast1",
        "onboarding",
    ),
    (
        "Defense Logistics Office",
        "gcp",
        "us-gov",
        "us-east4",
        "active",
    ),
    (
        "Bundesamt Datenarchiv",
        "gcp",
        "eu-sovereign",
        "europe-west3",
        "active",
    ),
    ("Redwood Insurance", "azure", "standard", "eastus", "active"),
    ("Sable Retail", "azure", "standard", "westeurope", "active"),
    (
        "Tamarack Studios",
        "azure",
        "standard",
        "westus2",
        "onboarding",
    ),
    (
        "Umber Mining",
        "azure",
        "standard",
        "australiaeast",
        "active",
    ),
    ("Vantage Telecom", "azure", "standard", "uksouth", "active"),
    (
        "Willow Education",
        "azure",
        "standard",
        "centralus",
        "suspended",
    ),
    (
        "Xylem Water Works",
        "azure",
        "standard",
        "northeurope",
        "active",
    ),
    (
        "Federal Health Records",
        "azure",
        "us-gov",
        "usgovvirginia",
        "active",
    ),
    (
        "Direction Numerique",
        "azure",
        "eu-sovereign",
        "francecentral",
        "onboarding",
    ),
    (
        "GovTech Data Platform",
        "azure",
        "sg-gov",
        "southeastasia",
        "active",
    ),
    ("Yarrow Pharma", "aws", "standard", "us-east-1", "active"),
    ("Zephyr Airlines", "aws", "standard", "eu-west-1", "active"),
    ("Acorn Payments", "aws", "standard", "us-west-2", "active"),
    (
        "Basalt Semiconductors",
        "aws",
        "standard",
        "ap-northeast-2",
        "onboarding",
    ),
    (
        "Cedar Logistics",
        "aws",
        "standard",
        "ca-central-1",
        "active",
    ),
    ("Driftwood Games", "aws", "standard", "us-east-2", "churned"),
    (
        "Emberline Security",
        "aws",
        "standard",
        "eu-central-1",
        "active",
    ),
    (
        "Treasury Analytics Bureau",
        "aws",
        "us-gov",
        "us-gov-west-1",
        "active",
    ),
    (
        "Census Modernisation Unit",
        "aws",
        "us-gov",
        "us-gov-east-1",
        "onboarding",
    ),
    (
        "Smart Nation Records",
        "aws",
        "sg-gov",
        "ap-southeast-1",
        "active",
    ),
    (
        "Fjord Maritime",
        "direct",
        "standard",
        "eu-north-1",
        "active",
    ),
    (
        "Granite Capital",
        "direct",
        "standard",
        "us-east-1",
        "active",
    ),
    (
        "Helios Research Council",
        "direct",
        "eu-sovereign",
        "eu-central-1",
        "active",
    ),
    (
        "Iris Clinics",
        "direct",
        "standard",
        "us-west-2",
        "onboarding",
    ),
];

const CSMS: [&str; 4] = ["maya.chen", "luis.ortega", "ana.lima", "tom.berg"];

/// Seeds an empty database; does nothing when users already exist. Returns whether
/// it seeded.
pub async fn seed(store: &Store, options: &SeedOptions<'_>) -> Result<bool, AppError> {
    if !store.users().await?.is_empty() {
        return Ok(false);
    }
    let actor = Actor::new("system:demo-seed", None);
    for user in users() {
        let new_user = NewUser::validate(
            user.username,
            &demo_display_name(user.username),
            &user.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            &user
                .clearances
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            Some(user.residency),
        )
        .map_err(StoreError::from)?;
        let hash = purser_http::auth::hash_password(user.password.clone())
            .await
            .map_err(|e| StoreError::Backend(e.message))?;
        store.create_user(&actor, new_user, Some(hash)).await?;
    }
    let rules = store.boundary_rules().await?;
    let scope = AccountScope::system("demo-seed", &rules);
    let known: Vec<_> = rules
        .iter()
        .map(|r: &BoundaryRule| r.name.clone())
        .collect();
    let mut accounts = Vec::new();
    for (index, (name, marketplace, boundary, region, status)) in ACCOUNTS.iter().enumerate() {
        let external_id = name.to_lowercase().replace(' ', "-");
        let csm = CSMS[index % CSMS.len()];
        let draft = AccountDraft {
            name: (*name).into(),
            external_id,
            marketplace: (*marketplace).into(),
            marketplace_account_id: buyer_id(marketplace, index),
            crm_account_id: Some(format!("001Dn00000{:08X}", 0x5EED_0000 + index as u32)),
            boundary: Some((*boundary).into()),
            region: (*region).into(),
            owners: Owners {
                account_executive: Some(format!("ae{}@vendor.example", index % 5 + 1)),
                csm: Some(format!("{csm}@vendor.example")),
                tam: (index % 3 == 0).then(|| "tam.desk@vendor.example".to_owned()),
            },
            status: Some((*status).into()),
        };
        accounts.push(
            store
                .create_account(&scope, draft.validate(&known).map_err(StoreError::from)?)
                .await?,
        );
    }
    let now = options.now;
    let bound = options.marketplaces.is_some();
    seed_commercial(store, &actor, &scope, &accounts, bound).await?;
    let mut player = None;
    if let Some(marketplaces) = options.marketplaces {
        marketplaces.register(store).await?;
        player = Some(marketplaces.player(marketplaces::first_hour(now, options.days)?)?);
    }
    seed_usage(store, &actor, &scope, &accounts, options, player.as_mut()).await?;
    seed_subscriptions(store, &actor, &scope, &accounts, now, bound).await?;
    if let Some(marketplaces) = options.marketplaces {
        marketplaces.register(store).await?;
    }
    seed_crm_findings(store, &scope).await?;
    Ok(true)
}

/// Subscriptions as the marketplaces would have sent them over the last weeks: plans
/// Purser sells, buyers linked at registration (one still waiting), a plan change, a
/// plan not mapped yet, a suspension, a sovereign buyer, and a notification of a kind
/// Purser does not act on. Segments start after the demo's usage, so the usage already
/// rated keeps its terms. When the demo reports to marketplaces (`bound`), each
/// subscription names whom its marketplace bills, as the marketplace would.
async fn seed_subscriptions(
    store: &Store,
    actor: &Actor,
    scope: &AccountScope,
    accounts: &[purser_core::Account],
    now: jiff::Timestamp,
    bound: bool,
) -> Result<(), StoreError> {
    use purser_core::Marketplace;
    use purser_core::commercial::{Commitment, DimensionKey, OveragePolicy, OverageReporting};
    use purser_core::marketplace::subscription::{
        PlanTerms, SubscriptionSnapshot, SubscriptionState,
    };
    use purser_core::money::{Currency, Money};
    use purser_store::subscriptions::{Channel, NewNotification, NotificationStatus};
    let terms = |offer_id: &str, committed: i64, per_quantity: bool| {
        let key = DimensionKey::parse("capacity_tib_hours").map_err(StoreError::Backend)?;
        let currency = Currency::parse("USD").map_err(StoreError::Backend)?;
        Ok::<_, StoreError>(PlanTerms {
            offer_id: offer_id.into(),
            commitments: [(
                key,
                Commitment {
                    committed_per_period: committed.into(),
                    committed_fee: None,
                    overage: OveragePolicy {
                        threshold: 500.into(),
                        price_per_unit: Money::new(rust_decimal::Decimal::new(125, 4), currency),
                        reporting: OverageReporting::Hourly,
                    },
                },
            )]
            .into(),
            per_quantity,
        })
    };
    store
        .set_marketplace_plan(
            actor,
            Marketplace::Gcp,
            "capacity-standard",
            &terms("demo-offer-gcp", 150_000, false)?,
        )
        .await?;
    store
        .set_marketplace_plan(
            actor,
            Marketplace::Gcp,
            "capacity-premium",
            &terms("demo-offer-gcp", 400_000, false)?,
        )
        .await?;
    store
        .set_marketplace_plan(
            actor,
            Marketplace::Azure,
            "capacity-seats",
            &terms("demo-offer-azure", 10_000, true)?,
        )
        .await?;
    store
        .set_marketplace_plan(
            actor,
            Marketplace::Aws,
            "capacity-committed",
            &terms("demo-offer-aws", 200_000, false)?,
        )
        .await?;
    let named = |name: &str| {
        accounts
            .iter()
            .find(|a| a.fields.name == name)
            .map(|a| a.id.0.clone())
            .ok_or_else(|| StoreError::Backend(format!("the demo has no account {name}")))
    };
    let days_ago = |days: i64| now - jiff::SignedDuration::from_hours(24 * days);
    let snapshot = |state, plan: &str, quantity: Option<i64>, at| SubscriptionSnapshot {
        state,
        plan: plan.into(),
        quantity: quantity.map(Into::into),
        pending_plan: None,
        binding: None,
        effective_at: at,
        term_end: None,
    };
    // (marketplace, subscription id, account (None: waiting for registration), its story)
    let stories: Vec<(Marketplace, &str, Option<&str>, Vec<SubscriptionSnapshot>)> = vec![
        (
            Marketplace::Gcp,
            "ent-7f3a91c2",
            Some("Juniper Robotics"),
            vec![
                snapshot(
                    SubscriptionState::Requested,
                    "capacity-standard",
                    None,
                    days_ago(21),
                ),
                snapshot(SubscriptionState::Active, "capacity-standard", None, now),
            ],
        ),
        (
            Marketplace::Gcp,
            "ent-2b8e4d10",
            Some("Meridian Bank"),
            vec![
                snapshot(
                    SubscriptionState::Requested,
                    "capacity-standard",
                    None,
                    days_ago(30),
                ),
                snapshot(SubscriptionState::Active, "capacity-standard", None, now),
                snapshot(SubscriptionState::Active, "capacity-premium", None, now),
            ],
        ),
        (
            Marketplace::Gcp,
            "ent-c4d20e77",
            None,
            vec![snapshot(
                SubscriptionState::Requested,
                "capacity-standard",
                None,
                days_ago(1),
            )],
        ),
        (
            Marketplace::Gcp,
            "ent-91aa03f5",
            Some("Defense Logistics Office"),
            vec![
                snapshot(
                    SubscriptionState::Requested,
                    "capacity-standard",
                    None,
                    days_ago(14),
                ),
                snapshot(SubscriptionState::Active, "capacity-standard", None, now),
            ],
        ),
        (
            Marketplace::Azure,
            "6c1f2d4e-8b3a-4f5e-9d7c-1a2b3c4d5e6f",
            Some("Redwood Insurance"),
            vec![
                snapshot(
                    SubscriptionState::Requested,
                    "capacity-seats",
                    Some(3),
                    days_ago(25),
                ),
                snapshot(SubscriptionState::Active, "capacity-seats", Some(3), now),
                snapshot(SubscriptionState::Active, "capacity-seats-eu", Some(3), now),
            ],
        ),
        (
            Marketplace::Aws,
            "arn:aws:license-manager::294406891311:license:l-0d1e2f3a4b5c6d7e8",
            Some("Cedar Logistics"),
            vec![
                snapshot(
                    SubscriptionState::Requested,
                    "capacity-committed",
                    None,
                    days_ago(18),
                ),
                snapshot(SubscriptionState::Active, "capacity-committed", None, now),
                snapshot(
                    SubscriptionState::Suspended,
                    "capacity-committed",
                    None,
                    now,
                ),
            ],
        ),
    ];
    for (marketplace, external_id, account, mut snapshots) in stories {
        if bound {
            for snapshot in &mut snapshots {
                snapshot.binding =
                    marketplaces::subscription_binding(marketplace, external_id, &snapshot.plan);
            }
        }
        let mut snapshots = snapshots.into_iter();
        if let Some(first) = snapshots.next() {
            store
                .settle_subscription(actor, marketplace, external_id, &first, None)
                .await?;
        }
        if let Some(name) = account {
            let account_id = named(name)?;
            store
                .link_subscription(
                    scope,
                    marketplace,
                    external_id,
                    &account_id,
                    serde_json::json!({ "company": name }),
                )
                .await?;
        }
        for next in snapshots {
            store
                .settle_subscription(actor, marketplace, external_id, &next, None)
                .await?;
        }
    }
    store
        .store_notification(NewNotification {
            marketplace: Marketplace::Gcp,
            delivery_key: "demo-ev-offer-preview".into(),
            channel: Channel::Pubsub,
            body: r#"{"eventId":"demo-ev-offer-preview","eventType":"ENTITLEMENT_OFFER_PREVIEWED","providerId":"vendor","entitlement":{"id":"ent-c4d20e77"}}"#.into(),
            kind: Some("ENTITLEMENT_OFFER_PREVIEWED".into()),
            external_id: None,
            status: NotificationStatus::Unrecognised,
            error: Some("event type ENTITLEMENT_OFFER_PREVIEWED is not one Purser acts on".into()),
        })
        .await?;
    Ok(())
}

/// A CRM import whose records are all held back, so that the hygiene report has
/// something for Sales Operations to fix: a near-duplicate of a customer, and an
/// account in a GovCloud region outside the us-gov boundary (shown to the cleared only).
async fn seed_crm_findings(store: &Store, scope: &AccountScope) -> Result<(), StoreError> {
    let records = purser_core::crm::parse_records(
        r#"{"records": [
          {"attributes": {"type": "Account"}, "Id": "001Dn00000CrmDup01", "Name": "REDWOOD INSURANCE, Inc.",
           "Purser_External_Id__c": "redwood-insurance-emea", "Marketplace__c": "direct", "Region__c": "westeurope"},
          {"attributes": {"type": "Account"}, "Id": "001Dn00000CrmGov01", "Name": "Federal Records Service",
           "Purser_External_Id__c": "federal-records", "Marketplace__c": "direct", "Region__c": "us-gov-east-1",
           "Data_Boundary__c": "standard"}
        ]}"#,
    )?;
    store.import_crm(scope, &records, false).await.map(drop)
}

/// The meters the platform's telemetry feeds, as the demo (and the benchmark's
/// generator) shape its events.
pub fn meters() -> Vec<purser_core::meter::MeterDraft> {
    use purser_core::meter::MeterDraft;
    let meter = |name: &str, event_type: &str, path: &str, aggregation: &str| MeterDraft {
        name: name.into(),
        event_type: event_type.into(),
        value_path: Some(path.into()),
        aggregation: aggregation.into(),
        unit: "bytes".into(),
        ..MeterDraft::default()
    };
    vec![
        MeterDraft {
            group_by: Some("$.cluster_id".into()),
            dimension: Some("capacity_tib_hours".into()),
            conversion: Some("bytes_to_tib".into()),
            ..meter(
                "storage.capacity",
                "storage.capacity.sampled",
                "$.bytes_stored",
                "time_weighted_avg",
            )
        },
        MeterDraft {
            dimension: Some("data_written_gib".into()),
            conversion: Some("bytes_to_gib".into()),
            ..meter(
                "storage.written",
                "storage.io.counted",
                "$.bytes_written",
                "sum",
            )
        },
        meter("storage.read", "storage.io.counted", "$.bytes_read", "sum"),
    ]
}

/// `days` of telemetry up to `now` for every account in service: per cluster, a
/// capacity sample and an I/O counter every 15 minutes, ingested a day at a time as of
/// that day; with a `player`, each hour closed and reported in its turn; a few events
/// for an unknown account and an unknown type (the quarantine); the remaining hours
/// closed as the job would; then a few late events, booked into the open hour.
async fn seed_usage(
    store: &Store,
    actor: &Actor,
    scope: &AccountScope,
    accounts: &[purser_core::Account],
    options: &SeedOptions<'_>,
    mut player: Option<&mut marketplaces::Player<'_>>,
) -> Result<(), AppError> {
    let (now, days) = (options.now, options.days.max(1));
    use purser_core::events::Framing;
    use purser_store::metering::{MeteringSettings, prepare_batch};
    for draft in meters() {
        let meter = draft.validate().map_err(StoreError::from)?;
        store.create_meter(actor, &meter).await?;
    }
    let meters = store.meters().await?;
    let settings = MeteringSettings::default();
    let hour = |t: jiff::Timestamp| purser_store::metering::hour_start(t);
    let end = hour(now)?;
    let start = marketplaces::first_hour(now, days)?;
    let mut days_in = 0;
    let in_service: Vec<(usize, &purser_core::Account)> = accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            matches!(
                a.fields.status,
                purser_core::AccountStatus::Active | purser_core::AccountStatus::Suspended
            )
        })
        .collect();
    let event = |id: String,
                 source: &str,
                 kind: &str,
                 subject: &str,
                 time: jiff::Timestamp,
                 data: String| {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"{kind}","subject":"{subject}","time":"{time}","data":{data}}}"#
        )
    };
    let mut body = String::new();
    let mut day_start = start;
    let mut t = start;
    while t < now {
        for (index, account) in &in_service {
            let clusters = 1 + index % 3;
            for cluster in 0..clusters {
                let cluster_id = format!("{}-c{cluster}", account.fields.external_id);
                let source = format!("polaris://{}/clusters/{cluster_id}", account.fields.region);
                // Capacity grows through the week, differently per account.
                let tib = (*index as u64 % 9 + 1) * 150 / clusters as u64;
                let hours_in = (t.as_second() - start.as_second()) as u64 / 3600;
                let bytes_stored = (tib << 40) + hours_in * ((*index as u64 % 5 + 1) << 34);
                let seq = t.as_second();
                body.push_str(&event(
                    format!("cap-{cluster_id}-{seq}"),
                    &source,
                    "storage.capacity.sampled",
                    &account.fields.external_id,
                    t,
                    format!(r#"{{"cluster_id":"{cluster_id}","bytes_stored":{bytes_stored}}}"#),
                ));
                body.push('\n');
                let written = ((seq as u64 / 900 + *index as u64) % 17 + 1) << 28;
                body.push_str(&event(
                    format!("io-{cluster_id}-{seq}"),
                    &source,
                    "storage.io.counted",
                    &account.fields.external_id,
                    t,
                    format!(r#"{{"cluster_id":"{cluster_id}","bytes_written":{written},"bytes_read":{}}}"#, written * 3),
                ));
                body.push('\n');
            }
        }
        t += jiff::SignedDuration::from_mins(15);
        if t.duration_since(day_start) >= jiff::SignedDuration::from_hours(24) || t >= now {
            // As of the day's end, so that a month is within the age events are taken at.
            let batch = prepare_batch(
                body.as_bytes(),
                Framing::Ndjson,
                &meters,
                t.min(now),
                &settings,
            )
            .map_err(|e| StoreError::Backend(format!("demo usage: {e}")))?;
            store.ingest(scope, "demo", batch).await?;
            body.clear();
            day_start = t;
            if let Some(player) = player.as_deref_mut() {
                player.play_until(store, t.min(now)).await?;
            }
            days_in += 1;
            if let Some(on_day) = options.on_day {
                on_day(days_in.min(days), days);
            }
        }
    }
    // The quarantine: a cluster not yet linked to an account, and a new event type.
    let odd = [
        event(
            "orphan-1".into(),
            "polaris://us-east1/clusters/new-c0",
            "storage.capacity.sampled",
            "prospect-unlinked",
            end - jiff::SignedDuration::from_mins(50),
            r#"{"cluster_id":"new-c0","bytes_stored":1099511627776}"#.into(),
        ),
        event(
            "snap-1".into(),
            "polaris://us-east1/clusters/x",
            "storage.snapshot.taken",
            in_service
                .first()
                .map_or("", |(_, a)| a.fields.external_id.as_str()),
            end - jiff::SignedDuration::from_mins(40),
            r#"{"snapshots":3}"#.into(),
        ),
    ]
    .join("\n");
    let batch = prepare_batch(odd.as_bytes(), Framing::Ndjson, &meters, now, &settings)
        .map_err(|e| StoreError::Backend(format!("demo usage: {e}")))?;
    store.ingest(scope, "demo", batch).await?;
    match player {
        Some(player) => player.play_until(store, now).await?,
        None => loop {
            if store.close_due_hours(now, &settings, 24).await?.is_empty() {
                break;
            }
        },
    }
    // Late: a cluster's counter that arrived after its hour closed.
    if let (Some((_, account)), Some(closed)) = (in_service.first(), store.closed_through().await?)
    {
        let late = event(
            "io-late-1".into(),
            "polaris://us-east1/clusters/late",
            "storage.io.counted",
            &account.fields.external_id,
            closed - jiff::SignedDuration::from_hours(2) + jiff::SignedDuration::from_mins(7),
            r#"{"cluster_id":"late","bytes_written":5368709120,"bytes_read":0}"#.into(),
        );
        let batch = prepare_batch(late.as_bytes(), Framing::Ndjson, &meters, now, &settings)
            .map_err(|e| StoreError::Backend(format!("demo usage: {e}")))?;
        store.ingest(scope, "demo", batch).await?;
    }
    Ok(())
}

/// Offers (a private one per marketplace, and a public SaaS offer priced in units) and
/// an entitlement for each account that is not churned.
async fn seed_commercial(
    store: &Store,
    actor: &Actor,
    scope: &AccountScope,
    accounts: &[purser_core::Account],
    bound: bool,
) -> Result<(), StoreError> {
    use purser_core::commercial::{
        CommitmentDraft, EntitlementDraft, OfferDimensionDraft, OfferDraft, PricingDraft,
    };
    use std::collections::BTreeMap;
    let dimension = |key: &str, unit: &str, reporting: Option<&str>| OfferDimensionDraft {
        key: key.into(),
        marketplace_name: Some(key.replace('_', "-")),
        unit: unit.into(),
        reporting: reporting.map(str::to_owned),
        settle: None,
    };
    let private = |marketplace: &str, name: &str| OfferDraft {
        name: name.into(),
        kind: "private".into(),
        marketplace: marketplace.into(),
        currency: None,
        dimensions: vec![
            dimension("capacity_tib_hours", "TiB-hour", None),
            dimension("data_written_gib", "GiB", Some("whole_units")),
        ],
        pricing: None,
    };
    let saas = OfferDraft {
        name: "SaaS public offer: storage units".into(),
        kind: "public".into(),
        marketplace: "gcp".into(),
        currency: None,
        dimensions: vec![
            dimension("capacity_tib_hours", "TiB-hour", None),
            dimension("data_written_gib", "GiB", None),
        ],
        pricing: Some(PricingDraft {
            kind: "units".into(),
            unit: Some("storage_units".into()),
            multipliers: BTreeMap::from([
                ("capacity_tib_hours".into(), "1".into()),
                ("data_written_gib".into(), "0.002".into()),
            ]),
        }),
    };
    let drafts = [
        (
            "demo-offer-gcp",
            private("gcp", "GCP private offer: committed capacity with overage"),
        ),
        (
            "demo-offer-azure",
            private(
                "azure",
                "Azure private offer: committed capacity with overage",
            ),
        ),
        (
            "demo-offer-aws",
            private("aws", "AWS private offer: committed capacity with overage"),
        ),
        (
            "demo-offer-direct",
            private("direct", "Direct contract: committed capacity with overage"),
        ),
        ("demo-offer-saas", saas),
    ];
    let mut offers = BTreeMap::new();
    for (id, draft) in drafts {
        let offer = store
            .create_offer(actor, draft.validate(id.into())?)
            .await?;
        offers.insert(id, offer);
    }
    for (index, account) in accounts.iter().enumerate() {
        if account.fields.status == purser_core::AccountStatus::Churned {
            continue;
        }
        let offer_id = match account.fields.marketplace {
            purser_core::Marketplace::Gcp if index % 4 == 3 => "demo-offer-saas",
            purser_core::Marketplace::Gcp => "demo-offer-gcp",
            purser_core::Marketplace::Azure => "demo-offer-azure",
            purser_core::Marketplace::Aws => "demo-offer-aws",
            purser_core::Marketplace::Direct => "demo-offer-direct",
        };
        let offer = &offers[offer_id];
        let committed = 100_000 + (index as i64 % 7) * 50_000;
        let reporting = if index % 3 == 0 { "true_up" } else { "hourly" };
        let commitments = offer
            .committable()
            .into_iter()
            .take(1)
            .map(|key| {
                let commitment = CommitmentDraft {
                    committed_per_period: committed.to_string(),
                    overage_threshold: Some("500".into()),
                    overage_price: "0.0125".into(),
                    overage_reporting: Some(reporting.into()),
                    committed_fee: Some((committed / 100).to_string()),
                };
                (key.to_string(), commitment)
            })
            .collect();
        let status = match account.fields.status {
            purser_core::AccountStatus::Onboarding => "pending",
            purser_core::AccountStatus::Suspended => "suspended",
            _ => "active",
        };
        let draft = EntitlementDraft {
            offer_id: offer_id.into(),
            start: "2026-07-01T00:00:00Z".into(),
            end: "2027-07-01T00:00:00Z".into(),
            status: Some(status.into()),
            commitments,
            marketplace_binding: bound
                .then(|| marketplaces::demo_binding(account, index, offer_id == "demo-offer-saas"))
                .flatten(),
        };
        let entitlement =
            draft.validate(format!("demo-ent-{index:02}"), account.id.0.clone(), offer)?;
        store.create_entitlement(scope, entitlement).await?;
    }
    Ok(())
}

fn demo_display_name(username: &str) -> String {
    let mut words: Vec<String> = username
        .split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
        })
        .collect();
    words.insert(0, "Demo".into());
    words.join(" ")
}

fn buyer_id(marketplace: &str, index: usize) -> Option<String> {
    let n = index as u64 + 1;
    match marketplace {
        "gcp" => Some(format!(
            "E-{:04X}-{:04X}-{:04X}",
            0xA100 + n,
            0xB200 + n * 7,
            0xC300 + n * 13
        )),
        "azure" => Some(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x3fa8_5f64 + n,
            0x5717 + n,
            n,
            n * 3,
            0x2c96_3f66_afa6 + n
        )),
        "aws" => Some(format!("{:012}", 210_987_654_000 + n * 1_111)),
        _ => None,
    }
}
