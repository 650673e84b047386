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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_find_an_account_and_be_refused_a_restricted_one() {
    let dir = tempfile::tempdir().expect("dir");
    let profiles = tempfile::tempdir().expect("profiles");
    let server = Server::start(purser(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir.path()),
    ]))
    .await;
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
    browser
        .wait()
        .for_element(Locator::LinkText("Zephyr Airlines"))
        .await
        .expect("found")
        .click()
        .await
        .expect("open");
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
    let server = Server::start(purser(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir.path()),
    ]))
    .await;
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
    let server = Server::start(purser(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir.path()),
    ]))
    .await;
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
    let server = Server::start(purser(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir.path()),
    ]))
    .await;
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
