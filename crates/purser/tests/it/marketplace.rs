//! Marketplace submission as it runs in production: `purser serve` processes whose
//! `marketplace.submit` job reports closed hours to the fake marketplaces. A server is
//! SIGKILLed in the middle of a submission and restarted (on PostgreSQL, as two
//! processes sharing the database); every record still ends accepted exactly once, and
//! `purser reconcile` comes out clean.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use purser_core::Marketplace;
use purser_core::marketplace::DeliveryState;
use purser_fakes::{FakeConfig, FakeMarketplaces};
use purser_store::marketplace::LedgerFilter;
use purser_store::metering::MeteringSettings;
use purser_store::{Location, OpenMode, Store};
use purser_testkit::marketplace as fixtures;
use purser_testkit::{Backend, TestDatabase};

use crate::support::{Server, data_dir_arg, purser, run};

const ACCOUNTS: usize = 100;
const HOURS: i64 = 4;

fn first_hour() -> Timestamp {
    purser_testkit::base_hour(HOURS + 2)
}

/// AWS and Azure customers (their 24-hour windows let a test use real time), with
/// usage in the last closed hours, closed.
async fn prepare(location: &Location) {
    let store = Store::open(location, OpenMode::Write).await.expect("open");
    let meters = purser_app::demo::meters();
    let written = meters
        .iter()
        .find(|m| m.event_type == "storage.io.counted")
        .and_then(|m| m.dimension.clone())
        .expect("a meter of written bytes");
    let mut lines = Vec::new();
    for marketplace in [Marketplace::Azure, Marketplace::Aws] {
        let offer = fixtures::private_offer(
            marketplace,
            &[
                (written.as_str(), "data_written"),
                ("support_hours", "support"),
            ],
        );
        let offer = fixtures::define(&store, &meters, offer).await;
        let customers =
            fixtures::customers(&store, &offer, ACCOUNTS, first_hour(), "0.25", &[&written]).await;
        for (i, external) in customers.iter().enumerate() {
            for hour in 0..HOURS {
                let time =
                    first_hour() + SignedDuration::from_hours(hour) + SignedDuration::from_mins(9);
                lines.push(format!(
                    r#"{{"specversion":"1.0","id":"io-{external}-{hour}","source":"polaris://us/clusters/c1","type":"storage.io.counted","subject":"{external}","time":"{time}","data":{{"cluster_id":"c1","bytes_written":{},"bytes_read":0}}}}"#,
                    (1 + (i as u64 + hour as u64) % 3) << 30
                ));
            }
        }
    }
    assert_eq!(fixtures::ingest(&store, &lines).await, lines.len());
    store
        .close_due_hours(Timestamp::now(), &MeteringSettings::default(), 100)
        .await
        .expect("close");
}

/// A configuration file pointing the marketplace clients at the fakes.
fn config_file(
    dir: &std::path::Path,
    fakes: &FakeMarketplaces,
    fake: &FakeConfig,
) -> std::path::PathBuf {
    let path = dir.join("purser.toml");
    let text = format!(
        r#"
[jobs]
marketplace_submit_seconds = 1
close_hours_seconds = 3600

[marketplaces]
record_lease_seconds = 10

[marketplaces.azure]
base_url = "{azure}"
login_base = "{login}"
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = "{secret}"
request_timeout_ms = 2000

[marketplaces.aws]
base_url = "{aws}"
region = "{region}"
access_key_id = "{key}"
secret_access_key = "{aws_secret}"
requests_per_second = 20
request_timeout_ms = 2000
"#,
        azure = fakes.azure_url(),
        login = fakes.azure_login_url(),
        tenant = fake.azure.tenant_id,
        client = fake.azure.client_id,
        secret = fake.azure.client_secret,
        aws = fakes.aws_url(),
        region = fake.aws.region,
        key = fake.aws.access_key_id,
        aws_secret = fake.aws.secret_access_key,
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn database_args(location: &Location) -> Vec<String> {
    match location {
        Location::Sqlite(path) => vec![
            "--data-dir".into(),
            data_dir_arg(path.parent().expect("a directory")),
        ],
        Location::Postgres(url) => vec!["--database-url".into(), url.clone()],
    }
}

/// (records planned, records still to send): the server's job plans every closed hour,
/// those without usage too (AWS takes zeros).
async fn ledger_state(location: &Location) -> (usize, usize) {
    let store = Store::open(location, OpenMode::ReadOnly)
        .await
        .expect("open");
    let all = store
        .marketplace_records(&LedgerFilter::default())
        .await
        .expect("records");
    let open = all.iter().filter(|r| !r.state.is_final()).count();
    (all.len(), open)
}

async fn submission_survives_sigkill(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    prepare(&db.location).await;
    let mut fake = FakeConfig {
        // Slow answers, so that the kill lands in the middle of a submission.
        latency: Duration::from_millis(150),
        ..FakeConfig::default()
    };
    fake.aws.requests_per_second = 100;
    fake.aws.burst = 100;
    let fakes = FakeMarketplaces::start(fake.clone()).await.expect("fakes");
    {
        let store = Store::open(&db.location, OpenMode::ReadOnly)
            .await
            .expect("open");
        purser_app::marketplace::register_with_fakes(
            &fakes,
            &store.bound_entitlements().await.expect("bound"),
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    let config = config_file(dir.path(), &fakes, &fake);
    let mut args: Vec<String> = vec!["--config".into(), config.display().to_string()];
    args.extend(database_args(&db.location));
    let start = || {
        let mut command: Vec<&str> = args.iter().map(String::as_str).collect();
        command.extend(["serve", "--listen", "127.0.0.1:0"]);
        Server::start(purser(&command))
    };

    let first = start().await;
    // Kill it once some, but not all, records have reached AWS.
    let killed_at = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = fakes.aws().records().len();
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("submission starts");
    first.kill().await;
    let (planned, open) = ledger_state(&db.location).await;
    assert!(
        open > 0 && killed_at < planned,
        "the kill came after the marketplaces had everything"
    );

    // Restart: on PostgreSQL as two processes sharing the database.
    let mut servers = vec![start().await];
    if backend == Backend::Postgres {
        servers.push(start().await);
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while ledger_state(&db.location).await.1 > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("every record is settled within two minutes of the restart");
    for server in servers {
        assert!(server.stop().await);
    }

    // Exactly once: what the fakes hold is what the ledger accepted, one for one.
    let store = Store::open(&db.location, OpenMode::ReadOnly)
        .await
        .expect("open");
    let ledger = store
        .marketplace_records(&LedgerFilter {
            state: Some(DeliveryState::Accepted),
            ..LedgerFilter::default()
        })
        .await
        .expect("records");
    // Every record was accepted: AWS has both dimensions of every account and closed
    // hour, Azure every hour with usage.
    assert_eq!(ledger.len(), planned);
    let aws_records = ledger
        .iter()
        .filter(|r| r.marketplace == Marketplace::Aws)
        .count();
    assert!(aws_records >= ACCOUNTS * HOURS as usize * 2);
    assert_eq!(
        ledger
            .iter()
            .filter(|r| r.marketplace == Marketplace::Azure)
            .count(),
        ACCOUNTS * HOURS as usize
    );
    let mut from_ledger: Vec<_> = ledger
        .iter()
        .map(|r| {
            let party = fixtures::billed_party(&r.record.binding);
            (
                party,
                r.record.marketplace_dimension.clone(),
                r.record.hour,
                r.record.quantity.normalize(),
            )
        })
        .collect();
    let mut from_fakes: Vec<_> = fakes
        .azure()
        .events()
        .into_iter()
        .map(|e| (e.resource, e.dimension, e.hour, e.quantity.normalize()))
        .chain(fakes.aws().records().into_iter().map(|r| {
            let party = match r.customer {
                purser_fakes::AwsCustomer::Account { account_id, .. } => account_id,
                other => format!("{other:?}"),
            };
            (party, r.dimension, r.hour, r.quantity.normalize())
        }))
        .collect();
    from_ledger.sort();
    from_fakes.sort();
    assert_eq!(from_fakes, from_ledger);

    let mut reconcile = args.clone();
    reconcile.extend([
        "reconcile".to_owned(),
        "--from".to_owned(),
        first_hour().to_string(),
        "--to".to_owned(),
        Timestamp::now().to_string(),
    ]);
    let reconcile: Vec<&str> = reconcile.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = run(purser(&reconcile), None).await;
    assert!(ok, "reconcile: {stdout}\n{stderr}");
    assert!(stdout.contains("everything reconciles"), "{stdout}");
    // Azure's own usage-events listing was the second witness, and agreed.
    assert!(
        stdout.contains(
            "azure's own listing was consulted as a second witness: it agrees with the ledger"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("aws: {aws_records} records")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_submitter_bills_nothing_twice_on_sqlite() {
    submission_survives_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_submitter_and_two_processes_bill_nothing_twice_on_postgres() {
    submission_survives_sigkill(Backend::Postgres).await;
}
