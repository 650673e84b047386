//! The pages in headless Chromium, driven over WebDriver by Debian's chromedriver:
//! sign in, find an account, see a restricted account refused.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{Server, data_dir_arg, purser};

/// A chromedriver on a free port, stopped on drop.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test installs Debian's chromium-driver)");
        // Owned by the guard at once, so it is stopped whatever happens next.
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {}", driver.url);
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sign_in(browser: &Client, base: &str, username: &str, password: &str) {
    browser
        .goto(&format!("{base}/signin"))
        .await
        .expect("sign-in page");
    type_into(browser, "username", username).await;
    type_into(browser, "password", password).await;
    click(browser, "signin-submit").await;
    browser
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .expect("signed in");
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("field {id}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into {id}: {e}"));
}

async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("button {id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {id}: {e}"));
}

/// Once the page's URL satisfies `on`, clicks the link with `text`, retrying while the
/// page is still being replaced (a stale element), for up to ten seconds.
async fn click_link_when(browser: &Client, text: &str, on: impl Fn(&url::Url) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(url) = browser.current_url().await
            && on(&url)
        {
            match browser.find(Locator::LinkText(text)).await {
                Ok(link) => match link.click().await {
                    Ok(()) => return,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("could not click the link {text}: {last}");
}

/// Waits for the element to appear, then reads its text.
async fn wait_text(browser: &Client, locator: Locator<'_>) -> String {
    browser
        .wait()
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("waiting for {locator:?}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("text of {locator:?}: {e}"))
}

/// Reads the element's text until it satisfies `done` (the page may still be the one
/// the click left, or be replaced while it is read), for up to ten seconds; returns the
/// last text read.
async fn text_when(browser: &Client, locator: Locator<'_>, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(element) = browser.find(locator).await
            && let Ok(text) = element.text().await
        {
            if done(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

async fn text(browser: &Client, locator: Locator<'_>) -> String {
    browser
        .find(locator)
        .await
        .expect("element")
        .text()
        .await
        .expect("text")
}

/// `purser demo` on `dir`, serving on a free port; a new database gets
/// `history_days` of history (one seeded beforehand keeps its own).
async fn demo_server(dir: &std::path::Path, history_days: u32) -> Server {
    Server::start(purser(&[
        "demo",
        "--history-days",
        &history_days.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir),
    ]))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_find_an_account_and_be_refused_a_restricted_one() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = demo_server(dir.path(), 2).await;
    assert!(
        server.banner.contains("support-usgov"),
        "the demo prints its sign-ins: {}",
        server.banner
    );
    let base = server.url.clone();
    let driver = Driver::start().await;

    // A wrong password is refused with a message, and no session is made.
    let browser = driver.browser(&profiles.path().join("a")).await;
    browser.goto(&format!("{base}/signin")).await.expect("page");
    type_into(&browser, "username", "support").await;
    type_into(&browser, "password", "not the password").await;
    click(&browser, "signin-submit").await;
    let message = wait_text(&browser, Locator::Id("signin-message")).await;
    assert!(message.contains("do not match"), "{message}");

    // An uncleared support engineer signs in and finds a commercial account.
    sign_in(&browser, &base, "support", "support-demo-pass").await;
    assert!(
        browser
            .current_url()
            .await
            .expect("url")
            .path()
            .starts_with("/accounts")
    );
    type_into(&browser, "q", "zephyr").await;
    click(&browser, "search").await;
    // The list before the search shows the same link: wait for the search's page, then
    // click (again, should the page still be replaced under the click).
    click_link_when(&browser, "Zephyr Airlines", |url| {
        url.query().unwrap_or_default().contains("q=zephyr")
    })
    .await;
    let name = wait_text(&browser, Locator::Id("account-name")).await;
    assert!(name.contains("Zephyr Airlines"), "{name}");
    let entitlements = text(&browser, Locator::Id("entitlements")).await;
    assert!(
        entitlements.contains("AWS private offer") && entitlements.contains("capacity_tib_hours"),
        "{entitlements}"
    );

    // The list never shows the us-gov accounts to them…
    browser
        .goto(&format!("{base}/accounts?q=treasury"))
        .await
        .expect("page");
    let table = text(&browser, Locator::Id("accounts")).await;
    assert!(!table.contains("Treasury Analytics Bureau"), "{table}");
    assert!(table.contains("No accounts match"), "{table}");

    // …and a cleared colleague's link to one looks like a page that does not exist.
    let cleared = driver.browser(&profiles.path().join("b")).await;
    sign_in(&cleared, &base, "support-usgov", "support-usgov-demo-pass").await;
    cleared
        .goto(&format!("{base}/accounts?q=treasury"))
        .await
        .expect("page");
    cleared
        .wait()
        .for_element(Locator::LinkText("Treasury Analytics Bureau"))
        .await
        .expect("visible when cleared")
        .click()
        .await
        .expect("open");
    let restricted_url = cleared.current_url().await.expect("url").to_string();
    let heading = text(&cleared, Locator::Id("account-name")).await;
    assert!(
        heading.contains("Treasury Analytics Bureau") && heading.contains("us-gov"),
        "{heading}"
    );

    browser.goto(&restricted_url).await.expect("page");
    let page = browser.source().await.expect("source");
    assert!(
        !page.contains("Treasury Analytics Bureau"),
        "the uncleared never see its name"
    );
    let message = text(&browser, Locator::Id("error-message")).await;
    assert!(message.contains("account not found"), "{message}");

    // An auditor cleared for us-gov sees the denial in the log.
    let auditor = driver.browser(&profiles.path().join("c")).await;
    sign_in(&auditor, &base, "auditor-usgov", "auditor-usgov-demo-pass").await;
    auditor
        .goto(&format!("{base}/audit?action=account.read_denied"))
        .await
        .expect("page");
    let log = text(&auditor, Locator::Id("audit")).await;
    assert!(
        log.contains("user:support") && log.contains("account.read_denied"),
        "{log}"
    );

    // Signing out ends the session: the account list asks for sign-in again.
    browser
        .find(Locator::Css("header form button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Id("signin-submit"))
        .await
        .expect("back at sign-in");
    browser
        .goto(&format!("{base}/accounts"))
        .await
        .expect("page");
    assert!(
        browser
            .current_url()
            .await
            .expect("url")
            .path()
            .starts_with("/signin")
    );

    for client in [browser, cleared, auditor] {
        client.close().await.expect("close");
    }
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csm_creates_an_account_and_sees_field_errors_first() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = demo_server(dir.path(), 2).await;
    let base = server.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser(profiles.path()).await;
    sign_in(&browser, &base, "csm", "csm-demo-pass").await;
    browser
        .goto(&format!("{base}/accounts/new"))
        .await
        .expect("form");
    type_into(&browser, "name", "Kestrel Storage").await;
    type_into(&browser, "external_id", "Kestrel Storage").await;
    type_into(&browser, "region", "us-central1").await;
    click(&browser, "save").await;
    let errors = wait_text(&browser, Locator::Css(".errors")).await;
    assert!(errors.contains("external_id"), "{errors}");
    assert!(errors.contains("marketplace_account_id"), "{errors}");

    let external = browser
        .find(Locator::Id("external_id"))
        .await
        .expect("field");
    external.clear().await.expect("clear");
    external.send_keys("kestrel-storage").await.expect("type");
    type_into(&browser, "marketplace_account_id", "E-1234-5678-9ABC").await;
    click(&browser, "save").await;
    let heading = wait_text(&browser, Locator::Id("account-name")).await;
    assert!(heading.contains("Kestrel Storage"), "{heading}");
    browser.close().await.expect("close");
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_records_an_entitlement_from_the_account_page() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = demo_server(dir.path(), 2).await;
    let base = server.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser(profiles.path()).await;
    sign_in(&browser, &base, "finance", "finance-demo-pass").await;

    browser
        .goto(&format!("{base}/offers"))
        .await
        .expect("offers");
    let offers = text(&browser, Locator::Id("offers")).await;
    assert!(
        offers.contains("SaaS public offer") && offers.contains("storage_units = "),
        "{offers}"
    );

    // Driftwood Games churned: it has no entitlement yet.
    browser
        .goto(&format!("{base}/accounts?q=driftwood"))
        .await
        .expect("page");
    browser
        .wait()
        .for_element(Locator::LinkText("Driftwood Games"))
        .await
        .expect("found")
        .click()
        .await
        .expect("open");
    let before = wait_text(&browser, Locator::Id("entitlements")).await;
    assert!(before.contains("No entitlement recorded"), "{before}");

    browser
        .find(Locator::Css("details > summary"))
        .await
        .expect("summary")
        .click()
        .await
        .expect("open form");
    type_into(&browser, "start", "2027-01-01T00:00:00Z").await;
    type_into(&browser, "end", "next year").await;
    type_into(&browser, "dimension", "capacity_tib_hours").await;
    type_into(&browser, "committed_per_period", "250000").await;
    type_into(&browser, "overage_price", "0.011").await;
    click(&browser, "record-entitlement").await;
    let errors = wait_text(&browser, Locator::Css(".errors")).await;
    assert!(
        errors.contains("end") && errors.contains("RFC 3339"),
        "{errors}"
    );

    let end = browser.find(Locator::Id("end")).await.expect("field");
    end.clear().await.expect("clear");
    end.send_keys("2028-01-01T00:00:00Z").await.expect("type");
    click(&browser, "record-entitlement").await;
    // The form lives on the account page: wait for the new page's entitlements rather
    // than for an element the old page has too.
    let recorded =
        |t: &str| t.contains("capacity_tib_hours: 250000 per month") && t.contains("0.011 USD");
    let after = text_when(&browser, Locator::Id("entitlements"), recorded).await;
    assert!(recorded(&after), "{after}");
    browser.close().await.expect("close");
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_sees_a_week_of_usage_against_the_commitment_and_the_metering_page() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = demo_server(dir.path(), 7).await;
    let base = server.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser(profiles.path()).await;
    sign_in(&browser, &base, "finance", "finance-demo-pass").await;

    // Northwind Genomics has a week of usage, a quarantined event of a type no meter
    // reads, and a late event waiting in the open hour.
    browser
        .goto(&format!("{base}/accounts?q=northwind"))
        .await
        .expect("page");
    browser
        .wait()
        .for_element(Locator::LinkText("Northwind Genomics"))
        .await
        .expect("found")
        .click()
        .await
        .expect("open");
    let period = wait_text(&browser, Locator::Id("period-usage")).await;
    assert!(
        period.contains("capacity_tib_hours") && period.contains("data_written_gib"),
        "{period}"
    );
    let chart = browser
        .find(Locator::Css("#chart-capacity_tib_hours svg"))
        .await
        .expect("the capacity chart");
    let bars = chart.find_all(Locator::Css("rect")).await.expect("bars");
    assert!(
        bars.len() > 100,
        "about a bar an hour for a week: {}",
        bars.len()
    );
    let quarantine = text(&browser, Locator::Id("account-quarantine")).await;
    assert!(
        quarantine.contains("storage.snapshot.taken") && quarantine.contains("unknown_meter"),
        "{quarantine}"
    );

    browser
        .goto(&format!("{base}/metering"))
        .await
        .expect("metering");
    let closed = wait_text(&browser, Locator::Id("closed-hours")).await;
    assert!(closed.contains("accounts, closed"), "{closed}");
    let open = text(&browser, Locator::Id("open-hours")).await;
    assert!(open.contains("closes"), "{open}");
    let quarantine = text(&browser, Locator::Id("quarantine")).await;
    assert!(quarantine.contains("prospect-unlinked"), "{quarantine}");
    let ingest = text(&browser, Locator::Id("ingest")).await;
    assert!(ingest.contains("UTC"), "{ingest}");
}

/// One ledger record, written straight into the database before the server starts.
struct Seeded<'a> {
    marketplace: &'a str,
    account: &'a purser_core::Account,
    dimension: &'a str,
    hour: i64,
    quantity: &'a str,
    state: &'a str,
    attempts: i64,
    /// Hours from now to the alarm (negative: it has gone off).
    alert_in_hours: i64,
    outcome: Option<serde_json::Value>,
}

/// The demo data set, and marketplace records in several states for some of its
/// accounts (one of them us-gov), in a SQLite file the server then serves.
async fn seed_marketplace_demo(dir: &std::path::Path) -> (i64, String) {
    use purser_store::db::Value;
    use purser_store::{Location, OpenMode, Store};
    let store = Store::open(&Location::sqlite_in(dir), OpenMode::Write)
        .await
        .expect("open");
    purser_app::demo::seed(&store, &purser_app::demo::SeedOptions::offline())
        .await
        .expect("demo");
    let system =
        purser_core::AccountScope::system("test", &store.boundary_rules().await.expect("rules"));
    let accounts = store
        .list_accounts(
            &system,
            &purser_store::AccountFilter::default(),
            &purser_store::PageRequest {
                after: None,
                limit: Some(500),
            },
        )
        .await
        .expect("accounts")
        .items;
    let named = |name: &str| {
        accounts
            .iter()
            .find(|a| a.fields.name == name)
            .unwrap_or_else(|| panic!("the demo has {name}"))
    };
    let aws = accounts
        .iter()
        .find(|a| {
            a.fields.marketplace == purser_core::Marketplace::Aws
                && a.fields.boundary.as_str() == "standard"
        })
        .expect("an AWS account");
    let now = jiff::Timestamp::now();
    const HOUR: i64 = 3_600_000_000;
    // Three hours ago: closed whatever the minute, and well inside the last 48.
    let hour = purser_store::metering::hour_start(now - jiff::SignedDuration::from_hours(3))
        .expect("hour")
        .as_microsecond();
    let refused = |message: &str| {
        Some(json!({"kind": "refused", "code": "PERMISSION_DENIED", "message": message}))
    };
    let northwind = named("Northwind Genomics");
    let defense = named("Defense Logistics Office");
    let redwood = named("Redwood Insurance");
    let records = [
        Seeded {
            marketplace: "gcp",
            account: northwind,
            dimension: "capacity_tib_hours",
            hour,
            quantity: "12.5",
            state: "accepted",
            attempts: 1,
            alert_in_hours: 1,
            outcome: Some(json!({"kind": "accepted", "marketplace_id": "op-1"})),
        },
        Seeded {
            marketplace: "gcp",
            account: northwind,
            dimension: "data_written_gib",
            hour,
            quantity: "3",
            state: "refused",
            attempts: 1,
            alert_in_hours: 1,
            outcome: refused("Consumer northwind is not entitled to metric data_written"),
        },
        Seeded {
            marketplace: "gcp",
            account: defense,
            dimension: "capacity_tib_hours",
            hour,
            quantity: "40",
            state: "refused",
            attempts: 2,
            alert_in_hours: 1,
            outcome: refused("Consumer defense-logistics has no active entitlement"),
        },
        Seeded {
            marketplace: "gcp",
            account: defense,
            dimension: "data_written_gib",
            hour,
            quantity: "7",
            state: "accepted",
            attempts: 1,
            alert_in_hours: 1,
            outcome: Some(json!({"kind": "accepted", "marketplace_id": "op-2"})),
        },
        Seeded {
            marketplace: "azure",
            account: redwood,
            dimension: "storage_units",
            hour,
            quantity: "5",
            state: "conflict",
            attempts: 1,
            alert_in_hours: 1,
            outcome: Some(
                json!({"kind": "conflict", "accepted_quantity": "4", "message": "Duplicate: the accepted event holds 4"}),
            ),
        },
        Seeded {
            marketplace: "aws",
            account: aws,
            dimension: "capacity_tib_hours",
            hour,
            quantity: "9",
            state: "due",
            attempts: 0,
            alert_in_hours: -1,
            outcome: None,
        },
    ];
    let binding = r#"{"kind":"gcp","service_name":"polaris.endpoints.vendor.cloud.goog","usage_reporting_id":"project_number:1"}"#;
    let mut tx = store.db().begin().await.expect("begin");
    for (i, r) in records.iter().enumerate() {
        tx.execute(
            "INSERT INTO marketplace_records (record_key, marketplace, account_id, entitlement_id, dimension, \
             marketplace_dimension, hour, quantity, owed, carried_in, binding, whole_units, state, attempts, uncertain, \
             next_attempt_at, deadline, alert_at, outcome, planned_at, carried_out) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $7, '0', $8, 0, $9, $10, 0, $11, $12, $13, $14, $11, 0)",
            &[
                format!("00000000-0000-4000-8000-{i:012}").into(),
                r.marketplace.into(),
                r.account.id.0.as_str().into(),
                format!("ent-{}", r.account.id).into(),
                r.dimension.into(),
                Value::Int(r.hour),
                r.quantity.into(),
                binding.into(),
                r.state.into(),
                Value::Int(r.attempts),
                Value::Int(r.hour + HOUR),
                Value::Int(now.as_microsecond() + 20 * HOUR),
                Value::Int(now.as_microsecond() + r.alert_in_hours * HOUR),
                r.outcome.as_ref().map_or(Value::Null, |o| o.to_string().into()),
            ],
        )
        .await
        .expect("a record");
    }
    tx.commit().await.expect("commit");
    // Written around the ledger's write paths, so the reconciliation roll-up is
    // rebuilt as migration 8 fills it.
    store.rebuild_marketplace_rollup().await.expect("roll-up");
    drop(store);
    (hour, defense.id.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_sees_marketplace_hours_records_and_reconciliation_without_the_sovereign() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let (hour, defense_id) = seed_marketplace_demo(dir.path()).await;
    let hour = jiff::Timestamp::from_microsecond(hour).expect("hour");
    let server = demo_server(dir.path(), 2).await;
    let base = server.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser(&profiles.path().join("finance")).await;
    sign_in(&browser, &base, "finance", "finance-demo-pass").await;

    // The navigation leads there.
    browser
        .find(Locator::LinkText("Marketplaces"))
        .await
        .expect("a navigation link")
        .click()
        .await
        .expect("open");
    let row_id = |m: &str| format!("{m}-{}", hour.strftime("%Y%m%dT%H"));
    let gcp = wait_text(&browser, Locator::Id(&row_id("gcp"))).await;
    // hour, records, due, sent, accepted, refused, conflict, expired, at risk: the
    // us-gov agency's two records are not counted for someone not cleared for it.
    let cells: Vec<&str> = gcp.split_whitespace().collect();
    assert!(gcp.contains("UTC"), "{gcp}");
    assert_eq!(&cells[3..10], &["2", "0", "2", "1", "1", "0", "0"], "{gcp}");
    assert!(gcp.contains("refused"), "the hour is marked: {gcp}");
    let marked = browser
        .find(Locator::Id(&row_id("gcp")))
        .await
        .expect("row")
        .attr("class")
        .await
        .expect("class");
    assert_eq!(marked.as_deref(), Some("attention"));
    let azure = text(&browser, Locator::Id(&row_id("azure"))).await;
    assert!(azure.contains("conflict"), "{azure}");
    let aws = text(&browser, Locator::Id(&row_id("aws"))).await;
    assert!(aws.contains("at risk"), "{aws}");
    assert_eq!(
        aws.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1", "1"],
        "{aws}"
    );

    // The hour's records, with the marketplace's reason for the refusal.
    browser
        .find(Locator::Css(&format!("#{} a", row_id("gcp"))))
        .await
        .expect("the hour's link")
        .click()
        .await
        .expect("open");
    let records = text_when(&browser, Locator::Id("records"), |t| {
        t.contains("Northwind")
    })
    .await;
    assert!(
        records.contains("Consumer northwind is not entitled to metric data_written")
            && records.contains("PERMISSION_DENIED")
            && records.contains("Northwind Genomics"),
        "{records}"
    );
    let page = browser.source().await.expect("source");
    assert!(
        !page.contains("Defense Logistics Office")
            && !page.contains("defense-logistics")
            && !page.contains(&defense_id),
        "the uncleared never see the us-gov account's records"
    );
    let count = text(&browser, Locator::Id("records-count")).await;
    assert!(count.contains("of 2"), "{count}");
    // Asked for by id, it is simply not there.
    browser
        .goto(&format!(
            "{base}/marketplaces/gcp/records?account_id={defense_id}"
        ))
        .await
        .expect("page");
    let count = wait_text(&browser, Locator::Id("records-count")).await;
    assert!(count.contains("No records match"), "{count}");
    assert!(
        !browser
            .source()
            .await
            .expect("source")
            .contains("defense-logistics")
    );

    // This month's reconciliation: counts per marketplace and the lines that are off.
    // The default is this calendar month (UTC); early on a month's first day the
    // seeded hour is last month's, so ask for that one.
    let month = |t: jiff::Timestamp| t.strftime("%Y-%m").to_string();
    let query = if month(hour) == month(jiff::Timestamp::now()) {
        String::new()
    } else {
        format!("?from={}", hour.strftime("%Y-%m-01T00:00:00Z"))
    };
    browser
        .goto(&format!("{base}/marketplaces/reconcile{query}"))
        .await
        .expect("page");
    let summary = wait_text(&browser, Locator::Id("summary-gcp")).await;
    let cells: Vec<&str> = summary.split_whitespace().collect();
    // Google Cloud, records, clean, pending, carried, missing, refused, conflict, over.
    assert_eq!(
        &cells[2..10],
        &["2", "1", "0", "0", "0", "1", "0", "0"],
        "{summary}"
    );
    let off = text(&browser, Locator::Id("off")).await;
    assert!(
        off.contains("refused") && off.contains("not entitled"),
        "{off}"
    );
    assert!(
        !off.contains(&defense_id) && !off.contains("no active entitlement"),
        "{off}"
    );
    let exchanges = text(&browser, Locator::Id("exchanges")).await;
    assert_eq!(exchanges, "verifies");

    // A colleague cleared for us-gov does see the agency's refusal.
    let cleared = driver.browser(&profiles.path().join("admin")).await;
    sign_in(&cleared, &base, "admin", "admin-demo-pass").await;
    cleared
        .goto(&format!(
            "{base}/marketplaces/gcp/records?hour={}&state=refused",
            hour.strftime("%Y-%m-%dT%H:00:00Z")
        ))
        .await
        .expect("page");
    let records = wait_text(&cleared, Locator::Id("records")).await;
    assert!(
        records.contains("Defense Logistics Office")
            && records.contains("us-gov")
            && records.contains("no active entitlement"),
        "{records}"
    );
    for client in [browser, cleared] {
        client.close().await.expect("close");
    }
    assert!(server.stop().await);
}

/// The demo, plus a CRM import holding back two near-duplicates of demo accounts: one
/// of a commercial airline, one of a us-gov bureau (so its finding is us-gov's). Returns
/// the names of the us-gov accounts with invoice lines this month.
async fn seed_crm_demo(dir: &std::path::Path) -> Vec<String> {
    use purser_store::{Location, OpenMode, Store};
    let store = Store::open(&Location::sqlite_in(dir), OpenMode::Write)
        .await
        .expect("open");
    purser_app::demo::seed(&store, &purser_app::demo::SeedOptions::offline())
        .await
        .expect("demo");
    let rules = store.boundary_rules().await.expect("rules");
    let admin = purser_core::AccountScope::for_principal(
        &purser_core::Principal {
            user_id: "sales-ops".into(),
            username: "sales-ops".into(),
            roles: [purser_core::Role::Admin].into_iter().collect(),
            clearances: ["us-gov".to_owned()].into_iter().collect(),
            residency: purser_core::Country::parse("US").ok(),
            via_token: None,
        },
        &rules,
        None,
    );
    let records = purser_core::crm::parse_records(
        r#"{"records": [
          {"attributes": {"type": "Account"}, "Name": "ZEPHYR AIRLINES, Inc.", "Purser_External_Id__c": "zephyr-crm-copy",
           "Marketplace__c": "direct", "Region__c": "eu-west-1"},
          {"attributes": {"type": "Account"}, "Name": "Treasury Analytics Bureau LLC", "Purser_External_Id__c": "treasury-crm-copy",
           "Marketplace__c": "direct", "Region__c": "us-gov-west-1", "Data_Boundary__c": "us-gov"},
          {"attributes": {"type": "Account"}, "Name": "Brand New Customer", "Purser_External_Id__c": "brand-new",
           "Marketplace__c": "direct", "Region__c": "us-east-1"}
        ]}"#,
    )
    .expect("records");
    let report = store
        .import_crm(&admin, &records, false)
        .await
        .expect("the import");
    assert_eq!(
        (report.accounts_created, report.held_back.len()),
        (1, 2),
        "{report:?}"
    );
    let system = purser_core::AccountScope::system("test", &rules);
    let period = purser_core::commercial::BillingPeriod::containing(jiff::Timestamp::now());
    let lines = store
        .compute_invoice_lines(
            &system,
            period,
            None,
            &purser_core::invoice::FeeRates::default(),
        )
        .await
        .expect("lines");
    let inputs = store
        .month_inputs(&system, period, None)
        .await
        .expect("inputs");
    let mut sovereign: Vec<String> = inputs
        .accounts
        .iter()
        .filter(|a| a.fields.boundary.as_str() == "us-gov")
        .filter(|a| lines.iter().any(|l| l.account_id == a.id.0))
        .map(|a| a.fields.name.clone())
        .collect();
    sovereign.sort();
    sovereign
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_ops_see_the_hygiene_report_and_finance_the_erp_export_without_the_sovereign() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let sovereign = seed_crm_demo(dir.path()).await;
    assert!(
        !sovereign.is_empty(),
        "the demo bills a us-gov account this month"
    );
    let server = demo_server(dir.path(), 2).await;
    let base = server.url.clone();
    let driver = Driver::start().await;

    // An uncleared colleague finds the report in the navigation: the airline's copy is
    // there, with why; the bureau's is not, nor its name anywhere on the page.
    let viewer = driver.browser(&profiles.path().join("viewer")).await;
    sign_in(&viewer, &base, "viewer", "viewer-demo-pass").await;
    viewer
        .find(Locator::LinkText("CRM hygiene"))
        .await
        .expect("a navigation link")
        .click()
        .await
        .expect("open");
    let findings = text_when(&viewer, Locator::Id("findings"), |t| t.contains("zephyr")).await;
    assert!(
        findings.contains("Near-identical account name")
            && findings.contains("zephyr-crm-copy")
            && findings.contains("Zephyr Airlines"),
        "{findings}"
    );
    let page = viewer.source().await.expect("source");
    assert!(
        !page.contains("Treasury"),
        "the uncleared never see the bureau's finding"
    );
    assert!(!page.contains("treasury-crm-copy"));

    // A cleared administrator sees both.
    let admin = driver.browser(&profiles.path().join("admin")).await;
    sign_in(&admin, &base, "admin", "admin-demo-pass").await;
    admin
        .goto(&format!("{base}/crm/hygiene"))
        .await
        .expect("page");
    let findings = wait_text(&admin, Locator::Id("findings")).await;
    assert!(
        findings.contains("treasury-crm-copy")
            && findings.contains("us-gov")
            && findings.contains("zephyr-crm-copy"),
        "{findings}"
    );

    // Finance reads the month's ERP export: totals per account, none of the us-gov
    // accounts'; the cleared administrator's page has them.
    let finance = driver.browser(&profiles.path().join("finance")).await;
    sign_in(&finance, &base, "finance", "finance-demo-pass").await;
    finance
        .find(Locator::LinkText("ERP export"))
        .await
        .expect("a navigation link")
        .click()
        .await
        .expect("open");
    let totals = wait_text(&finance, Locator::Id("totals")).await;
    assert!(totals.contains("USD"), "{totals}");
    let page = finance.source().await.expect("source");
    for name in &sovereign {
        assert!(
            !page.contains(name.as_str()),
            "finance is not cleared for {name}"
        );
    }
    admin.goto(&format!("{base}/erp")).await.expect("page");
    let totals = wait_text(&admin, Locator::Id("totals")).await;
    assert!(
        sovereign.iter().all(|name| totals.contains(name.as_str())),
        "{totals} holds {sovereign:?}"
    );

    for client in [viewer, admin, finance] {
        client.close().await.expect("close");
    }
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_links_a_waiting_subscription_and_never_sees_the_sovereign_one() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = demo_server(dir.path(), 2).await;
    let base = server.url.clone();
    let driver = Driver::start().await;
    let browser = driver.browser(&profiles.path().join("finance")).await;
    sign_in(&browser, &base, "finance", "finance-demo-pass").await;

    click_link_when(&browser, "Subscriptions", |_| true).await;
    let list = text_when(&browser, Locator::Id("subscriptions"), |t| {
        t.contains("Juniper Robotics")
    })
    .await;
    assert!(
        list.contains("Juniper Robotics")
            && list.contains("Redwood Insurance")
            && list.contains("not linked")
            && list.contains("capacity-seats-eu"),
        "{list}"
    );
    assert!(
        list.contains("not mapped to a Purser offer"),
        "the unmapped plan needs attention: {list}"
    );
    let set_aside = text(&browser, Locator::Id("set-aside")).await;
    assert!(
        set_aside.contains("ENTITLEMENT_OFFER_PREVIEWED"),
        "{set_aside}"
    );
    let page = browser.source().await.expect("source");
    assert!(
        !page.contains("Defense Logistics Office") && !page.contains("ent-91aa03f5"),
        "the uncleared never see the us-gov buyer's subscription"
    );

    // The buyer waiting for registration is linked to its account.
    click_link_when(&browser, "ent-c4d20e77", |u| u.path() == "/subscriptions").await;
    browser
        .wait()
        .for_element(Locator::Id("link-form"))
        .await
        .expect("the registration form");
    type_into(&browser, "account", "halcyon-health").await;
    type_into(&browser, "private_offer", "privateOffers/halcyon-2026").await;
    click(&browser, "link").await;
    let lifecycle = text_when(&browser, Locator::Id("lifecycle"), |t| t.contains("linked")).await;
    assert!(
        lifecycle.contains("linked to account"),
        "the lifecycle shows the link: {lifecycle}"
    );
    let facts = text(&browser, Locator::Id("subscription")).await;
    assert!(facts.contains("Halcyon Health"), "{facts}");
    let notifications = text(&browser, Locator::Id("notifications")).await;
    assert!(
        notifications.contains("registration"),
        "the link waits, durable, for the next run: {notifications}"
    );
    assert!(
        browser.find(Locator::Id("link-form")).await.is_err(),
        "a linked subscription offers no second link"
    );
}
