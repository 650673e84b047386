//! Marketplace submission and reconciliation, wired: the clients from configuration,
//! the `marketplace.submit` job's run (plan closed hours, expire what missed its
//! window, send what is due, raise the alarm on what is at risk), and `purser
//! reconcile`.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_marketplace::{
    AwsClient, AwsConfig, AzureClient, AzureConfig, GcpClient, GcpConfig, MeteringClient,
    TackleClient, TackleConfig,
};
use purser_store::marketplace::{Finding, ReconcileReport, WitnessLine};
use purser_store::{OpenMode, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::{AppError, Config, open_store};

/// The marketplaces Purser reports to, with their endpoints and credentials. A
/// marketplace left out is not reported to: its records stay due, raise the alarm
/// before their window closes and show in reconciliation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketplacesConfig {
    pub gcp: Option<GcpConfig>,
    pub azure: Option<AzureConfig>,
    pub aws: Option<AwsConfig>,
    /// Tackle.io's metering API, for the accounts whose entitlements are bound
    /// through Tackle (`Binding::Tackle`), whichever cloud they are on.
    pub tackle: Option<TackleConfig>,
    /// How long a submitter holds the records it claimed before another may resend
    /// them, in seconds; longer than a request's timeout.
    pub record_lease_seconds: Option<i64>,
}

/// Secrets never leave through the configuration's display: only which marketplaces
/// are configured.
impl Serialize for MarketplacesConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("MarketplacesConfig", 4)?;
        s.serialize_field("gcp", &self.gcp.as_ref().map(|_| "configured"))?;
        s.serialize_field("azure", &self.azure.as_ref().map(|_| "configured"))?;
        s.serialize_field("aws", &self.aws.as_ref().map(|_| "configured"))?;
        s.serialize_field("tackle", &self.tackle.as_ref().map(|_| "configured"))?;
        s.end()
    }
}

impl PartialEq for MarketplacesConfig {
    fn eq(&self, other: &Self) -> bool {
        // Configurations are compared in tests of the layering only; which
        // marketplaces are configured is what matters there.
        self.gcp.is_some() == other.gcp.is_some()
            && self.azure.is_some() == other.azure.is_some()
            && self.aws.is_some() == other.aws.is_some()
            && self.tackle.is_some() == other.tackle.is_some()
            && self.record_lease_seconds == other.record_lease_seconds
    }
}

impl Eq for MarketplacesConfig {}

/// Sends what the ledger says is due, through each configured marketplace's client.
#[derive(Clone)]
pub struct Submitter {
    clients: Vec<Arc<dyn MeteringClient>>,
    owner: String,
    record_lease: SignedDuration,
    /// A run stops claiming after this long, so that one run never holds its job
    /// for long; the next run carries on.
    budget: std::time::Duration,
    /// Where "now" comes from: the database's clock, unless a test sets one.
    clock: Option<purser_marketplace::Clock>,
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubmitReport {
    pub planned_hours: usize,
    pub planned_records: usize,
    pub expired: u64,
    pub sent: usize,
    pub accepted: usize,
    pub retrying: usize,
    pub refused: usize,
    pub conflicts: usize,
    pub at_risk: i64,
    /// How the exchange chain breaks, when re-reading it after the run found it broken.
    pub chain_break: Option<String>,
}

impl SubmitReport {
    pub fn summary(&self) -> String {
        let chain = self
            .chain_break
            .as_ref()
            .map(|b| format!("; the exchange evidence does not verify: {b}"))
            .unwrap_or_default();
        format!(
            "planned {} hours ({} records); sent {}: {} accepted, {} to retry, {} refused, {} conflicting; {} expired; {} at risk",
            self.planned_hours,
            self.planned_records,
            self.sent,
            self.accepted,
            self.retrying,
            self.refused,
            self.conflicts,
            self.expired,
            self.at_risk
        ) + &chain
    }
}

impl Submitter {
    pub fn new(clients: Vec<Arc<dyn MeteringClient>>, owner: String) -> Submitter {
        Submitter {
            clients,
            owner,
            record_lease: SignedDuration::from_secs(120),
            budget: std::time::Duration::from_secs(50),
            clock: None,
        }
    }

    /// The clients for every configured marketplace.
    pub fn from_config(config: &MarketplacesConfig, owner: String) -> Result<Submitter, AppError> {
        Self::from_config_at(config, owner, None)
    }

    /// The same, reading the time from `clock` when one is given (the submitter and
    /// the AWS client, whose signatures carry it), as the demo's history and the tests
    /// that play hours against the fakes do.
    pub fn from_config_at(
        config: &MarketplacesConfig,
        owner: String,
        clock: Option<purser_marketplace::Clock>,
    ) -> Result<Submitter, AppError> {
        let bad = |what: &str, e: purser_marketplace::ClientError| {
            AppError::Invalid(format!("marketplaces.{what}: {e}"))
        };
        let mut clients: Vec<Arc<dyn MeteringClient>> = Vec::new();
        if let Some(gcp) = &config.gcp {
            clients.push(Arc::new(GcpClient::new(gcp).map_err(|e| bad("gcp", e))?));
        }
        if let Some(azure) = &config.azure {
            clients.push(Arc::new(
                AzureClient::new(azure).map_err(|e| bad("azure", e))?,
            ));
        }
        if let Some(aws) = &config.aws {
            let client = AwsClient::new(aws).map_err(|e| bad("aws", e))?;
            clients.push(Arc::new(match &clock {
                Some(clock) => client.with_clock(clock.clone()),
                None => client,
            }));
        }
        // One Tackle client per cloud: each claims only its cloud's Tackle-routed
        // records, beside (never instead of) that cloud's direct client.
        if let Some(tackle) = &config.tackle {
            for cloud in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
                clients.push(Arc::new(
                    TackleClient::new(tackle, cloud).map_err(|e| bad("tackle", e))?,
                ));
            }
        }
        let mut submitter = Submitter::new(clients, owner);
        if let Some(seconds) = config.record_lease_seconds {
            submitter.record_lease = SignedDuration::from_secs(seconds.max(10));
        }
        submitter.clock = clock;
        Ok(submitter)
    }

    pub fn with_budget(mut self, budget: std::time::Duration) -> Submitter {
        self.budget = budget;
        self
    }

    /// Reads the time from `clock` instead of the database (tests that play hours).
    pub fn with_clock(mut self, clock: purser_marketplace::Clock) -> Submitter {
        self.clock = Some(clock);
        self
    }

    async fn now(&self, store: &Store) -> Result<Timestamp, StoreError> {
        match &self.clock {
            Some(clock) => Ok(clock()),
            None => store.now().await,
        }
    }

    /// The marketplaces reported to, by either route, each once.
    pub fn marketplaces(&self) -> Vec<Marketplace> {
        let mut marketplaces: Vec<Marketplace> =
            self.clients.iter().map(|c| c.marketplace()).collect();
        marketplaces.sort();
        marketplaces.dedup();
        marketplaces
    }

    /// Every (marketplace, route) a client reports by: `aws/direct`, `aws/tackle`.
    pub fn routes(&self) -> Vec<String> {
        self.clients
            .iter()
            .map(|c| format!("{}/{}", c.marketplace(), c.route()))
            .collect()
    }

    /// One run: plan, expire, send, and count what is at risk. The database's clock
    /// decides what is due, so every process agrees.
    pub async fn run(&self, store: &Store) -> Result<SubmitReport, StoreError> {
        let mut report = SubmitReport::default();
        let now = self.now(store).await?;
        // Re-reads what earlier runs appended to the exchange chain and stores its head
        // as verified, so that reconciliation re-hashes only what came after. First,
        // so that it never stands between sending and the next run.
        let exchanges = store.checkpoint_marketplace_exchanges(now).await?;
        if let Some(chain_break) = &exchanges.chain_break {
            tracing::error!(%chain_break, "the marketplace exchange evidence does not verify");
            report.chain_break = Some(chain_break.clone());
        }
        // A backlog is planned two days per transaction.
        let plan = store.plan_marketplace_hours(now, 48).await?;
        report.planned_hours = plan.hours;
        report.planned_records = plan.records;
        report.expired = store.expire_marketplace_records(now).await?;

        let started = Instant::now();
        let runs = self
            .clients
            .iter()
            .map(|client| self.send_all(store, client.as_ref(), started));
        for outcome in futures::future::join_all(runs).await {
            let sent = outcome?;
            report.sent += sent.sent;
            report.accepted += sent.accepted;
            report.retrying += sent.retrying;
            report.refused += sent.refused;
            report.conflicts += sent.conflicts;
        }

        let now = self.now(store).await?;
        let (at_risk, oldest) = store.marketplace_at_risk(now, 5).await?;
        report.at_risk = at_risk;
        if at_risk > 0 {
            for record in &oldest {
                tracing::error!(
                    marketplace = %record.marketplace,
                    account = %record.record.account_id,
                    dimension = %record.record.dimension,
                    hour = %record.record.hour,
                    deadline = %record.deadline,
                    attempts = record.attempts,
                    "a marketplace record is still undelivered close to its window's end: revenue at risk"
                );
            }
        }
        if report.conflicts > 0 {
            tracing::error!(
                conflicts = report.conflicts,
                "a marketplace holds another quantity for an hour Purser reported"
            );
        }
        Ok(report)
    }

    async fn send_all(
        &self,
        store: &Store,
        client: &dyn MeteringClient,
        started: Instant,
    ) -> Result<SubmitReport, StoreError> {
        let mut report = SubmitReport::default();
        let rules = client.rules();
        // Enough records for seconds of requests at once (the client paces them), so
        // that the database's work between claims is a small share of the run.
        let per_claim = (rules.max_records_per_request * 40).min(1_000);
        while started.elapsed() < self.budget {
            let now = self.now(store).await?;
            let claimed = store
                .claim_marketplace_records(
                    client.marketplace(),
                    client.route(),
                    &self.owner,
                    self.record_lease,
                    now,
                    per_claim,
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            let records: Vec<_> = claimed.into_iter().map(|r| r.record).collect();
            let submission = client.submit(&records).await;
            let progress = submission
                .outcomes
                .iter()
                .any(|(_, o)| !matches!(o, purser_core::marketplace::RecordOutcome::Retry { .. }));
            let now = self.now(store).await?;
            let recorded = store
                .record_marketplace_submission(
                    now,
                    &submission.outcomes,
                    submission.exchanges,
                    submission.retry_after,
                )
                .await?;
            report.sent += records.len();
            report.accepted += recorded.accepted;
            report.retrying += recorded.retrying;
            report.refused += recorded.refused;
            report.conflicts += recorded.conflicts;
            report.expired += recorded.expired as u64;
            if !progress {
                // Throttled or unreachable: the records wait for their retry delay.
                break;
            }
        }
        Ok(report)
    }
}

/// Azure's usage-events listing as a second witness: per SaaS subscription, dimension
/// and day (UTC), what Azure says it processed against what the ledger says it
/// accepted. The listing is by day, so whole days around `[from, to)` are compared.
/// Only subscriptions Purser bills directly are compared (see below).
pub async fn azure_witness(
    store: &Store,
    client: &AzureClient,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<WitnessLine>, AppError> {
    use std::collections::{BTreeMap, BTreeSet};
    let day = |t: Timestamp| purser_core::time::Window::containing(t, 86_400).start;
    let first = day(from);
    let last =
        purser_core::time::Window::containing(to - SignedDuration::from_micros(1), 86_400).end();
    let listing = client
        .list_usage_events(first, last)
        .await
        .map_err(|e| AppError::Failed(format!("Azure's usage events listing: {e}")))?;
    type Key = (String, String, Timestamp);
    // The listing holds every usage event of the publisher: those Tackle forwarded for
    // accounts routed through it, and any other product's. Only the SaaS subscriptions
    // Purser bills directly are Purser's to compare.
    let direct: BTreeSet<String> = store
        .bound_entitlements()
        .await?
        .into_iter()
        .filter_map(|(entitlement, _)| match entitlement.marketplace_binding {
            Some(purser_core::marketplace::Binding::Azure { resource_id, .. }) => {
                Some(resource_id.to_lowercase())
            }
            _ => None,
        })
        .collect();
    let mut theirs: BTreeMap<Key, rust_decimal::Decimal> = BTreeMap::new();
    for event in listing {
        let (Some(resource), Some(dimension), Some(date)) =
            (event.usage_resource_id, event.dimension, event.usage_date)
        else {
            continue;
        };

        *theirs
            .entry((resource.to_lowercase(), dimension, day(date)))
            .or_default() += event.processed_quantity.unwrap_or_default();
    }
    let accepted = store
        .marketplace_records(&purser_store::marketplace::LedgerFilter {
            marketplace: Some(Marketplace::Azure),
            state: Some(purser_core::marketplace::DeliveryState::Accepted),
            from: Some(first),
            to: Some(last),
            ..Default::default()
        })
        .await?;
    let mut ours: BTreeMap<Key, rust_decimal::Decimal> = BTreeMap::new();
    for record in accepted {
        if let purser_core::marketplace::Binding::Azure { resource_id, .. } = &record.record.binding
        {
            let key = (
                resource_id.to_lowercase(),
                record.record.marketplace_dimension.clone(),
                day(record.record.hour),
            );
            *ours.entry(key).or_default() += record.record.quantity;
        }
    }
    let mut direct = direct;
    direct.extend(ours.keys().map(|(resource, _, _)| resource.clone()));
    theirs.retain(|(resource, _, _), _| direct.contains(resource));
    let keys: BTreeSet<Key> = theirs.keys().chain(ours.keys()).cloned().collect();
    let mut lines = Vec::new();
    for key in keys {
        let ledger = ours.get(&key).copied().unwrap_or_default();
        let says = theirs.get(&key).copied().unwrap_or_default();
        if ledger != says {
            lines.push(WitnessLine {
                marketplace: Marketplace::Azure,
                resource: key.0,
                dimension: key.1,
                day: key.2,
                ledger,
                marketplace_says: says,
                finding: if says > ledger {
                    Finding::OverReported
                } else {
                    Finding::Missing
                },
            });
        }
    }
    Ok(lines)
}

/// `purser reconcile`: prints every record that is not clean and a summary per
/// marketplace, with Azure's own listing as a second witness when Azure is
/// configured; returns whether everything reconciles. `full`: from every record and
/// every exchange rather than the roll-up and the chain's latest checkpoint.
pub async fn reconcile(
    config: &Config,
    from: Timestamp,
    to: Timestamp,
    json: bool,
    full: bool,
) -> Result<bool, AppError> {
    use purser_store::marketplace_rollup::{ChainWalk, Method};
    let store = open_store(config, OpenMode::ReadOnly).await?;
    let mut report = if full {
        store
            .reconcile_marketplaces_by(from, to, Method::EveryRecord, ChainWalk::Whole)
            .await?
    } else {
        store.reconcile_marketplaces(from, to).await?
    };
    if let Some(azure) = &config.marketplaces.azure {
        let client = AzureClient::new(azure)
            .map_err(|e| AppError::Invalid(format!("marketplaces.azure: {e}")))?;
        match azure_witness(&store, &client, from, to).await {
            Ok(lines) => {
                report.witness = lines;
                report.witnessed_by.push(Marketplace::Azure);
            }
            // The ledger is the primary record; a witness that cannot be reached is
            // said plainly, and does not by itself make the period unclean.
            Err(e) => report.witness_unavailable.push(e.to_string()),
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| AppError::Failed(e.to_string()))?;
        let _ = writeln!(out, "{text}");
        return Ok(report.is_clean());
    }
    print_reconcile(&mut out, &report);
    Ok(report.is_clean())
}

fn print_reconcile(out: &mut impl Write, report: &ReconcileReport) {
    let _ = writeln!(
        out,
        "reconciled {} records from {} to {}",
        report.records(),
        report.from.map(|t| t.to_string()).unwrap_or_default(),
        report.to.map(|t| t.to_string()).unwrap_or_default()
    );
    for summary in &report.summaries {
        let marketplace = summary.marketplace;
        let _ = writeln!(
            out,
            "{marketplace}: {} records, due {}, accepted {}; clean {}, pending {}, carried {}, missing {}, refused {}, conflicting {}, over-reported {}",
            summary.records,
            summary.due,
            summary.accepted,
            summary.clean,
            summary.pending,
            summary.carried,
            summary.missing,
            summary.refused,
            summary.conflict,
            summary.over_reported,
        );
        let off = report
            .lines
            .iter()
            .filter(|l| l.marketplace == marketplace && l.finding.is_off());
        for line in off {
            let _ = writeln!(
                out,
                "  {:?}  account {}  {}  hour {}  due {}  accepted {}{}",
                line.finding,
                line.account_id,
                line.dimension,
                line.hour,
                line.due,
                line.accepted,
                line.detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
    for line in &report.witness {
        let _ = writeln!(
            out,
            "  {:?}  {} says {} for {} {} on {}, the ledger says it accepted {}",
            line.finding,
            line.marketplace,
            line.marketplace_says,
            line.resource,
            line.dimension,
            line.day.strftime("%Y-%m-%d"),
            line.ledger
        );
    }
    for marketplace in &report.witnessed_by {
        let off = report
            .witness
            .iter()
            .filter(|l| l.marketplace == *marketplace)
            .count();
        let _ = writeln!(
            out,
            "{marketplace}'s own listing was consulted as a second witness: {}",
            if off == 0 {
                "it agrees with the ledger".to_owned()
            } else {
                format!("{off} days differ")
            }
        );
    }
    for reason in &report.witness_unavailable {
        let _ = writeln!(out, "the second witness could not be consulted: {reason}");
    }
    if !report.unplanned_hours.is_empty() {
        let _ = writeln!(
            out,
            "{} closed hours not yet planned (the submission job plans them)",
            report.unplanned_hours.len()
        );
    }
    let exchanges = &report.exchanges;
    let walked = match (exchanges.checkpoint, exchanges.checkpoint_verified_at) {
        (Some(seq), Some(at)) => format!(
            "exchanges 1 to {seq} were verified at {at} (checkpoint), {seq} to {} re-hashed now; `--full` re-hashes all",
            exchanges.head
        ),
        _ => format!("all {} exchanges re-hashed now", exchanges.head),
    };
    match &report.chain_break {
        Some(chain_break) => {
            let _ = writeln!(
                out,
                "the exchange evidence does not verify: {chain_break} ({walked})"
            );
        }
        None => {
            let _ = writeln!(out, "the exchange evidence verifies: {walked}");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.is_clean() {
            "everything reconciles"
        } else {
            "differences found"
        }
    );
}

/// `purser submit`: one submission run now, with the configured marketplaces.
pub async fn submit_once(config: &Config) -> Result<SubmitReport, AppError> {
    let store = open_store(config, OpenMode::Write).await?;
    let submitter = Submitter::from_config(&config.marketplaces, crate::jobs::owner_name())?;
    Ok(submitter.run(&store).await?)
}

/// Registers every bound entitlement's customer and dimensions with the fakes, so that
/// what Purser owes can be taken.
pub fn register_with_fakes(
    fakes: &purser_fakes::FakeMarketplaces,
    bound: &[purser_store::marketplace::BoundEntitlement],
) {
    use purser_core::commercial::Reporting;
    use purser_core::marketplace::Binding;
    for (entitlement, offer) in bound {
        let names: Vec<String> = offer
            .dimensions
            .iter()
            .map(|d| d.marketplace_name.clone())
            .chain(offer.committable().iter().map(|k| k.to_string()))
            .collect();
        let dimensions: Vec<&str> = names.iter().map(String::as_str).collect();
        match &entitlement.marketplace_binding {
            Some(Binding::Gcp {
                service_name,
                usage_reporting_id,
            }) => {
                fakes.gcp().add_service(service_name);
                for d in &offer.dimensions {
                    let value_type = match d.reporting {
                        Reporting::WholeUnits { .. } => purser_fakes::GcpValueType::Int64,
                        Reporting::Exact => purser_fakes::GcpValueType::Double,
                    };
                    fakes
                        .gcp()
                        .add_metric(service_name, &d.marketplace_name, value_type);
                }
                for unit in offer.committable() {
                    if !offer.dimensions.iter().any(|d| d.key == unit) {
                        fakes.gcp().add_metric(
                            service_name,
                            unit.as_str(),
                            purser_fakes::GcpValueType::Double,
                        );
                    }
                }
                fakes.gcp().add_consumer(service_name, usage_reporting_id);
            }
            Some(Binding::Azure {
                resource_id,
                plan_id,
            }) => {
                fakes
                    .azure()
                    .add_subscription(resource_id, plan_id, &dimensions);
            }
            Some(Binding::Aws {
                customer_aws_account_id,
                license_arn,
            }) => {
                fakes
                    .aws()
                    .add_license(license_arn, customer_aws_account_id, &dimensions);
            }
            Some(Binding::AwsLegacy {
                customer_identifier,
                product_code,
            }) => {
                fakes.aws().add_product(product_code, &dimensions);
                fakes.aws().add_customer(customer_identifier, product_code);
            }
            Some(Binding::Tackle {
                cloud,
                product_id,
                customer_id,
            }) => {
                fakes
                    .tackle()
                    .add_customer(product_id, customer_id, cloud.as_str(), &dimensions);
            }
            None => {}
        }
    }
}

/// The configuration that points Purser's clients at running fakes.
pub fn config_for_fakes(
    fakes: &purser_fakes::FakeMarketplaces,
    fake: &purser_fakes::FakeConfig,
) -> MarketplacesConfig {
    use purser_marketplace::SecretSource;
    let mut gcp = GcpConfig::new(purser_marketplace::GcpCredentials::Metadata {
        metadata_base: fakes.gcp_metadata_url(),
    });
    gcp.base_url = fakes.gcp_url();
    let mut azure = AzureConfig::new(
        &fake.azure.tenant_id,
        &fake.azure.client_id,
        SecretSource::Inline(purser_marketplace::Secret::new(
            fake.azure.client_secret.clone(),
        )),
    );
    azure.base_url = fakes.azure_url();
    azure.login_base = fakes.azure_login_url();
    let mut aws = AwsConfig::new(
        &fake.aws.region,
        &fake.aws.access_key_id,
        SecretSource::Inline(purser_marketplace::Secret::new(
            fake.aws.secret_access_key.clone(),
        )),
    );
    aws.base_url = Some(fakes.aws_url());
    let mut tackle = TackleConfig::new(SecretSource::Inline(purser_marketplace::Secret::new(
        fake.tackle.access_token.clone(),
    )));
    tackle.base_url = fakes.tackle_url();
    MarketplacesConfig {
        gcp: Some(gcp),
        azure: Some(azure),
        aws: Some(aws),
        tackle: Some(tackle),
        record_lease_seconds: None,
    }
}

/// `purser dev fake-marketplaces`: the fakes, with every bound entitlement of the
/// configured database registered, until interrupted.
pub async fn run_fake_marketplaces(config: &Config) -> Result<(), AppError> {
    let bound = match open_store(config, OpenMode::ReadOnly).await {
        Ok(store) => store.bound_entitlements().await?,
        Err(_) => Vec::new(),
    };
    let fake = purser_fakes::FakeConfig::default();
    let fakes = purser_fakes::FakeMarketplaces::start(fake.clone())
        .await
        .map_err(|e| AppError::Failed(e.to_string()))?;
    register_with_fakes(&fakes, &bound);
    let demo = purser_fakes::seed_demo(&fakes);
    println!(
        "fake marketplaces are running ({} bound entitlements registered, plus the fakes' demo customers):",
        bound.len()
    );
    println!("  Google Service Control  {}", fakes.gcp_url());
    println!("  Azure metering          {}", fakes.azure_url());
    println!("  AWS metering            {}", fakes.aws_url());
    println!("  Tackle metering         {}", fakes.tackle_url());
    println!(
        "demo customers: {}",
        serde_json::to_string(&demo).unwrap_or_default()
    );
    println!("\npoint Purser at them with this in its configuration file:\n");
    println!(
        "[marketplaces.gcp]\nbase_url = \"{}\"\ncredentials = {{ kind = \"metadata\", metadata_base = \"{}\" }}\n",
        fakes.gcp_url(),
        fakes.gcp_metadata_url()
    );
    println!(
        "[marketplaces.azure]\nbase_url = \"{}\"\nlogin_base = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = {{ env = \"PURSER_FAKE_AZURE_SECRET\" }}  # {}\n",
        fakes.azure_url(),
        fakes.azure_login_url(),
        fake.azure.tenant_id,
        fake.azure.client_id,
        fake.azure.client_secret
    );
    println!(
        "[marketplaces.aws]\nbase_url = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = {{ env = \"PURSER_FAKE_AWS_SECRET\" }}  # {}",
        fakes.aws_url(),
        fake.aws.region,
        fake.aws.access_key_id,
        fake.aws.secret_access_key
    );
    println!(
        "\n[marketplaces.tackle]\nbase_url = \"{}\"\naccess_token = {{ env = \"PURSER_FAKE_TACKLE_TOKEN\" }}  # {}",
        fakes.tackle_url(),
        fake.tackle.access_token
    );
    let _ = tokio::signal::ctrl_c().await;
    fakes.shutdown().await;
    Ok(())
}
