//! Metering from the command line, on SQLite and PostgreSQL: `purser ingest` with its
//! summary, closing, `purser verify` (clean, then naming a tampered hour), `purser
//! evidence` and `purser usage`.

use jiff::{SignedDuration, Timestamp};
use purser_core::audit::Actor;
use purser_core::{AccountScope, BoundaryRule};
use purser_store::{Location, OpenMode, Store};
use purser_testkit::{Backend, TestDatabase};

use crate::support::{data_dir_arg, purser, run};

/// The arguments that point `purser` at the test's database.
fn database_args(location: &Location) -> Vec<String> {
    match location {
        Location::Sqlite(path) => vec![
            "--data-dir".into(),
            data_dir_arg(path.parent().expect("a directory")),
        ],
        Location::Postgres(url) => vec!["--database-url".into(), url.clone()],
    }
}

async fn prepare(location: &Location) -> String {
    let store = Store::open(location, OpenMode::Write).await.expect("open");
    let rules = BoundaryRule::built_in();
    let known: Vec<_> = rules.iter().map(|r| r.name.clone()).collect();
    let account = store
        .create_account(
            &AccountScope::system("test", &rules),
            purser_core::account::AccountDraft {
                name: "Acme".into(),
                external_id: "acme".into(),
                marketplace: "direct".into(),
                region: "eu-central-1".into(),
                ..Default::default()
            }
            .validate(&known)
            .expect("valid"),
        )
        .await
        .expect("account");
    for draft in purser_app::demo::meters() {
        store
            .create_meter(
                &Actor::new("system:test", None),
                &draft.validate().expect("valid"),
            )
            .await
            .expect("meter");
    }
    account.id.0
}

fn events(base: Timestamp) -> String {
    let mut lines = Vec::new();
    for i in 0..240i64 {
        let time = base + SignedDuration::from_mins(i);
        lines.push(format!(
            r#"{{"specversion":"1.0","id":"io-{i}","source":"polaris://eu/clusters/c1","type":"storage.io.counted","subject":"acme","time":"{time}","data":{{"cluster_id":"c1","bytes_written":1073741824,"bytes_read":0}}}}"#
        ));
    }
    // A resend, an unknown account and a broken line.
    lines.push(lines[3].clone());
    lines.push(
        lines[4]
            .replace("\"acme\"", "\"nobody\"")
            .replace("io-4", "io-x"),
    );
    lines.push("{not json".into());
    lines.join("\n") + "\n"
}

async fn ingest_verify_and_trace(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let account_id = prepare(&db.location).await;
    let args = database_args(&db.location);
    let base =
        purser_store::metering::hour_start(Timestamp::now() - SignedDuration::from_hours(30))
            .expect("hour");
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), events(base)).expect("write");
    let path = file.path().display().to_string();

    let mut command_args: Vec<&str> = args.iter().map(String::as_str).collect();
    command_args.extend(["ingest", &path, "--close", "--json"]);
    let (ok, stdout, stderr) = run(purser(&command_args), None).await;
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["events"], 243, "{summary}");
    assert_eq!(summary["accepted"], 240);
    assert_eq!(summary["duplicate"], 1);
    assert_eq!(summary["quarantined"], 1);
    assert_eq!(summary["rejected"], 1);
    assert!(
        summary["first_rejections"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("line 243")),
        "{summary}"
    );
    assert!(
        summary["hours_closed"].as_u64().is_some_and(|n| n >= 4),
        "{summary}"
    );

    // Running the same file again adds nothing.
    let mut again: Vec<&str> = args.iter().map(String::as_str).collect();
    again.extend(["ingest", &path, "--json"]);
    let (ok, stdout, _) = run(purser(&again), None).await;
    assert!(ok);
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        (summary["accepted"].as_u64(), summary["duplicate"].as_u64()),
        (Some(0), Some(242))
    );

    let mut verify: Vec<&str> = args.iter().map(String::as_str).collect();
    verify.extend(["verify"]);
    let (ok, stdout, stderr) = run(purser(&verify), None).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("everything verifies"), "{stdout}");

    let hour = (base + SignedDuration::from_hours(1)).to_string();
    let mut evidence: Vec<&str> = args.iter().map(String::as_str).collect();
    evidence.extend(["evidence", &account_id, "--hour", &hour, "--json"]);
    let (ok, stdout, stderr) = run(purser(&evidence), None).await;
    assert!(ok, "{stderr}");
    let trace: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(trace["evidence"]["n_events"], 60);
    assert_eq!(
        trace["events"].as_array().map(Vec::len),
        Some(120),
        "two meters read each event"
    );

    let from = base.to_string();
    let mut usage: Vec<&str> = args.iter().map(String::as_str).collect();
    usage.extend(["usage", &account_id, "--from", &from, "--csv"]);
    let (ok, stdout, _) = run(purser(&usage), None).await;
    assert!(ok);
    let written: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("data_written_gib"))
        .collect();
    assert_eq!(written.len(), 4, "{stdout}");
    assert!(
        written.iter().all(|l| l.split(',').nth(3) == Some("60")),
        "{stdout}"
    );
    // One dimension only: the header and the same four rows, nothing else.
    let mut named: Vec<&str> = args.iter().map(String::as_str).collect();
    named.extend([
        "usage",
        &account_id,
        "--from",
        &from,
        "--name",
        "data_written_gib",
        "--csv",
    ]);
    let (ok, only, stderr) = run(purser(&named), None).await;
    assert!(ok, "{stderr}");
    assert_eq!(only.lines().count(), 5, "{only}");
    assert!(
        only.lines().skip(1).all(|l| l.contains("data_written_gib")),
        "{only}"
    );

    // Change what is stored behind a closed hour: verify names it and fails.
    let store = Store::open(&db.location, OpenMode::Write)
        .await
        .expect("open");
    let mut tx = store.db().begin().await.expect("tx");
    tx.execute(
        "DELETE FROM usage_slices WHERE hour = $1",
        &[purser_store::db::Value::Int(
            (base + SignedDuration::from_hours(2)).as_microsecond(),
        )],
    )
    .await
    .expect("delete");
    tx.commit().await.expect("commit");
    drop(store);
    let (ok, stdout, _) = run(purser(&verify), None).await;
    assert!(!ok, "a tampered hour fails verification: {stdout}");
    assert!(
        stdout.contains(&account_id)
            && stdout.contains(&(base + SignedDuration::from_hours(2)).to_string()),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_verify_and_trace_on_sqlite() {
    ingest_verify_and_trace(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_verify_and_trace_on_postgres() {
    ingest_verify_and_trace(Backend::Postgres).await;
}

/// Every event key stored in the slices, and how many times each appears.
async fn stored_keys(location: &Location) -> std::collections::HashMap<Vec<u8>, u32> {
    let store = Store::open(location, OpenMode::ReadOnly)
        .await
        .expect("open");
    let mut handle = store.db().read().await.expect("read");
    let mut keys = std::collections::HashMap::new();
    for row in handle
        .query("SELECT keys FROM usage_slices", &[])
        .await
        .expect("slices")
    {
        for key in row.bytes(0).expect("keys").chunks(16) {
            *keys.entry(key.to_vec()).or_insert(0) += 1;
        }
    }
    keys
}

/// `n_batches` NDJSON batches of `per_batch` distinct events each, over the last few
/// hours, with their keys.
fn kill_batches(n_batches: usize, per_batch: usize) -> Vec<(String, Vec<Vec<u8>>)> {
    let base = Timestamp::now() - SignedDuration::from_hours(3);
    (0..n_batches)
        .map(|b| {
            let mut body = String::new();
            let mut keys = Vec::new();
            for e in 0..per_batch {
                let id = format!("k-{b}-{e}");
                let source = "polaris://eu/clusters/c1";
                let time = base + SignedDuration::from_secs(((b * per_batch + e) % 10_000) as i64);
                body.push_str(&format!(
                    r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"storage.io.counted","subject":"acme","time":"{time}","data":{{"cluster_id":"c1","bytes_written":{},"bytes_read":1}}}}"#,
                    1000 + e
                ));
                body.push('\n');
                keys.push(purser_core::events::EventKey::of(source, &id).as_bytes().to_vec());
            }
            (body, keys)
        })
        .collect()
}

async fn a_killed_server_loses_no_acknowledged_event(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = TestDatabase::new(backend).await;
    prepare(&db.location).await;
    let token = "psr_telemetry-kill-test-token";
    {
        let store = Store::open(&db.location, OpenMode::Write)
            .await
            .expect("open");
        let actor = Actor::new("system:test", None);
        let user = purser_core::identity::NewUser::validate(
            "polaris",
            "",
            &["telemetry".into()],
            &[],
            Some("US"),
        )
        .expect("valid");
        let user = store.create_user(&actor, user, None).await.expect("user");
        store
            .create_token(
                &actor,
                &user.id,
                "ingest",
                &purser_core::identity::secret_digest(token),
                Timestamp::now() + SignedDuration::from_hours(1),
            )
            .await
            .expect("token");
    }
    let args = database_args(&db.location);
    let start = || {
        let mut command_args: Vec<&str> = args.iter().map(String::as_str).collect();
        command_args.extend(["serve", "--listen", "127.0.0.1:0"]);
        crate::support::Server::start(purser(&command_args))
    };
    let batches = Arc::new(kill_batches(150, 400));
    let acknowledged: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let server = start().await;
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..3 {
        let (batches, acknowledged, next, client) = (
            batches.clone(),
            acknowledged.clone(),
            next.clone(),
            client.clone(),
        );
        let url = format!("{}/v1/events", server.url);
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((body, _)) = batches.get(i) else {
                    return;
                };
                let response = client
                    .post(&url)
                    .bearer_auth(token)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        acknowledged.lock().expect("lock").push(i);
                    }
                    // The server is gone: what was not acknowledged is resent later.
                    _ => return,
                }
            }
        }));
    }
    // Kill it in the middle of the stream.
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if acknowledged.lock().expect("lock").len() >= 40 {
            break;
        }
    }
    server.kill().await;
    for sender in senders {
        let _ = sender.await;
    }
    let acked: std::collections::BTreeSet<usize> =
        acknowledged.lock().expect("lock").iter().copied().collect();
    assert!(
        acked.len() >= 40 && acked.len() < batches.len(),
        "killed mid-stream: {} acknowledged",
        acked.len()
    );

    // Every acknowledged event survived the kill, once.
    let keys = stored_keys(&db.location).await;
    for i in &acked {
        for key in &batches[*i].1 {
            assert_eq!(
                keys.get(key),
                Some(&1),
                "an acknowledged event of batch {i} is stored once"
            );
        }
    }

    // Restart, resend what was not acknowledged, and everything is there exactly once.
    let server = start().await;
    for (i, (body, _)) in batches.iter().enumerate() {
        if acked.contains(&i) {
            continue;
        }
        let response = client
            .post(format!("{}/v1/events", server.url))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        assert!(response.status().is_success());
    }
    assert!(server.stop().await);
    let keys = stored_keys(&db.location).await;
    assert_eq!(keys.len(), 150 * 400, "every event is stored");
    assert!(keys.values().all(|n| *n == 1), "no event is stored twice");

    // Closed hours verify.
    let store = Store::open(&db.location, OpenMode::Write)
        .await
        .expect("open");
    let closed = store
        .close_due_hours(
            Timestamp::now() + SignedDuration::from_hours(3),
            &purser_store::metering::MeteringSettings::default(),
            100,
        )
        .await
        .expect("close");
    assert!(!closed.is_empty());
    let report = store
        .verify_metering(
            Timestamp::now() - SignedDuration::from_hours(6),
            Timestamp::now() + SignedDuration::from_hours(3),
        )
        .await
        .expect("verify");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Every event is in exactly one closed hour (the server's own job closed some of
    // them while the stream was arriving; those late were booked into a later hour).
    let all_closed = store
        .closed_hours(
            Timestamp::now() - SignedDuration::from_hours(6),
            Timestamp::now() + SignedDuration::from_hours(3),
        )
        .await
        .expect("closed hours");
    let total: i64 = all_closed.iter().map(|h| h.events).sum();
    assert_eq!(total, 150 * 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_acknowledged_event_on_sqlite() {
    a_killed_server_loses_no_acknowledged_event(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_acknowledged_event_on_postgres() {
    a_killed_server_loses_no_acknowledged_event(Backend::Postgres).await;
}

async fn a_killed_ingest_resumes_without_double_counting(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    prepare(&db.location).await;
    let batches = kill_batches(200, 1000);
    let file = tempfile::NamedTempFile::new().expect("file");
    let body: String = batches.iter().map(|(b, _)| b.as_str()).collect();
    std::fs::write(file.path(), body).expect("write");
    let path = file.path().display().to_string();
    let args = database_args(&db.location);
    let mut command_args: Vec<&str> = args.iter().map(String::as_str).collect();
    command_args.extend(["ingest", &path, "--quiet"]);

    // Kill it once some chunks are stored.
    let mut child = purser(&command_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ingest starts");
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let n = stored_keys(&db.location).await.len();
        if n > 0 || started.elapsed() > std::time::Duration::from_secs(60) {
            break;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let partial = stored_keys(&db.location).await;
    assert!(
        !partial.is_empty() && partial.len() < 200 * 1000,
        "killed mid-file: {}",
        partial.len()
    );
    assert!(partial.values().all(|n| *n == 1));

    // Running it again completes the file; nothing is counted twice.
    let (ok, stdout, stderr) = run(purser(&command_args), None).await;
    assert!(ok, "{stdout}{stderr}");
    let keys = stored_keys(&db.location).await;
    assert_eq!(keys.len(), 200 * 1000);
    assert!(keys.values().all(|n| *n == 1), "no event is stored twice");
    let mut close: Vec<&str> = args.iter().map(String::as_str).collect();
    close.extend(["ingest", "-", "--close", "--quiet"]);
    let (ok, _, stderr) = run(purser(&close), Some("")).await;
    assert!(ok, "{stderr}");
    let mut verify: Vec<&str> = args.iter().map(String::as_str).collect();
    verify.extend(["verify", "--to", "2100-01-01T00:00:00Z"]);
    let (ok, stdout, _) = run(purser(&verify), None).await;
    assert!(ok && stdout.contains("everything verifies"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_resumes_without_double_counting_on_sqlite() {
    a_killed_ingest_resumes_without_double_counting(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_resumes_without_double_counting_on_postgres() {
    a_killed_ingest_resumes_without_double_counting(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_declared_in_configuration_are_defined_once_and_never_redefined() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("purser.toml");
    let meter = |aggregation: &str| {
        format!(
            "[[metering.meters]]\nname = \"storage.written\"\nevent_type = \"storage.io.counted\"\nvalue_path = \"$.bytes_written\"\naggregation = \"{aggregation}\"\nunit = \"bytes\"\ndimension = \"data_written_gib\"\nconversion = \"bytes_to_gib\"\n"
        )
    };
    std::fs::write(&config, meter("sum")).expect("config");
    let data = data_dir_arg(&dir.path().join("data"));
    let config_arg = config.display().to_string();
    let args = [
        "--config",
        &config_arg,
        "--data-dir",
        &data,
        "ingest",
        "-",
        "--quiet",
    ];
    let (ok, _, stderr) = run(purser(&args), Some("")).await;
    assert!(ok, "{stderr}");
    // Starting again with the same declaration is fine.
    let (ok, _, stderr) = run(purser(&args), Some("")).await;
    assert!(ok, "{stderr}");
    let location = Location::sqlite_in(&dir.path().join("data"));
    let store = Store::open(&location, OpenMode::ReadOnly)
        .await
        .expect("open");
    let meters = store.meters().await.expect("meters");
    assert_eq!(meters.len(), 1);
    assert_eq!(meters[0].aggregation.as_str(), "sum");
    drop(store);

    // Another rule under the same name is refused, naming it.
    std::fs::write(&config, meter("max")).expect("config");
    let (ok, _, stderr) = run(purser(&args), Some("")).await;
    assert!(!ok);
    assert!(
        stderr.contains("metering.meters[0]") && stderr.contains("storage.written"),
        "{stderr}"
    );

    // A service's first token, printed once, works against the API.
    let (ok, _, stderr) = run(
        purser(&[
            "--data-dir",
            &data,
            "user",
            "add",
            "polaris",
            "--role",
            "telemetry",
            "--residency",
            "US",
        ]),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(
        purser(&[
            "--data-dir",
            &data,
            "token",
            "create",
            "polaris",
            "--name",
            "ingest",
        ]),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_owned();
    assert!(token.starts_with("psr_") && token.len() > 40, "{token}");
    let server = crate::support::Server::start(purser(&[
        "--data-dir",
        &data,
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]))
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/cloudevents+json")
        .body(format!(
            r#"{{"specversion":"1.0","id":"t1","source":"polaris://x","type":"storage.io.counted","subject":"nobody","time":"{}","data":{{"bytes_written":5}}}}"#,
            Timestamp::now()
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.expect("json");
    assert_eq!(report["quarantined"], 1);
    assert!(server.stop().await);
}
