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
