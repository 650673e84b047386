//! Purser as processes: several servers on one PostgreSQL, one server per SQLite
//! file, read-only commands beside a server, the CLI through the API, and tamper
//! detection from the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use purser_core::audit::Actor;
use purser_core::identity::{NewUser, secret_digest};
use purser_store::{Location, OpenMode, Store};
use purser_testkit::{Backend, TestDatabase};

use crate::support::{Server, data_dir_arg, purser, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_run_each_due_job_once_and_survive_a_kill() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let Location::Postgres(url) = &db.location else {
        unreachable!("a PostgreSQL database")
    };
    let start_server = || {
        let mut command = purser(&["serve", "--listen", "127.0.0.1:0"]);
        command
            .env("PURSER_DATABASE_URL", url)
            .env("PURSER_JOBS__SESSION_PRUNE_SECONDS", "1")
            .env("PURSER_JOBS__AUDIT_VERIFY_SECONDS", "2")
            .env("PURSER_JOBS__LEASE_SECONDS", "5");
        Server::start(command)
    };
    // Both start at once: migrations must not run twice.
    let (a, b) = tokio::join!(start_server(), start_server());
    let started = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let store = Store::open(&db.location, OpenMode::ReadOnly)
        .await
        .expect("open");
    let runs = store.job_runs(None, 1_000).await.expect("runs");
    let window_end = Timestamp::now() - SignedDuration::from_secs(2);
    let settled: Vec<_> = runs
        .iter()
        .filter(|r| r.slot >= started && r.slot + SignedDuration::from_secs(2) <= window_end)
        .collect();
    assert!(
        settled.len() >= 8,
        "enough periods observed: {}",
        settled.len()
    );
    for run in &settled {
        assert_eq!(run.state, "done", "{run:?}");
        assert_eq!(run.attempts, 1, "claimed once: {run:?}");
    }
    let prune_slots: BTreeSet<_> = settled
        .iter()
        .filter(|r| r.job == "sessions.prune")
        .map(|r| r.slot)
        .collect();
    let first = *prune_slots.first().expect("slots");
    let last = *prune_slots.last().expect("slots");
    let seconds = (last - first).get_seconds() + 1;
    // A period whose every tick came late (a starved machine) is skipped by design, not
    // run twice: demand most periods, not all, so CI load cannot make this flaky.
    assert!(
        prune_slots.len() as i64 * 2 >= seconds,
        "{} runs in {seconds} seconds",
        prune_slots.len()
    );
    // Owners are `host:pid:instance`: every run was made by one of the two servers.
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let pid_of = |owner: &Option<String>| -> i32 {
        owner
            .as_deref()
            .and_then(|o| o.split(':').nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(-1)
    };
    let owners: BTreeMap<i32, usize> = settled.iter().fold(BTreeMap::new(), |mut acc, r| {
        *acc.entry(pid_of(&r.owner)).or_insert(0) += 1;
        acc
    });
    assert!(
        owners.keys().all(|pid| *pid == pid_a || *pid == pid_b),
        "{owners:?}"
    );

    // One process dies without warning; the other carries on alone.
    a.kill().await;
    let killed = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs = store
        .job_runs(Some("sessions.prune"), 1_000)
        .await
        .expect("runs");
    let after: Vec<_> = runs
        .iter()
        .filter(|r| {
            r.slot >= killed + SignedDuration::from_secs(1)
                && r.slot + SignedDuration::from_secs(2) <= Timestamp::now()
        })
        .collect();
    assert!(after.len() >= 3, "runs continue after the kill: {after:?}");
    for run in after {
        assert_eq!(run.state, "done", "{run:?}");
        assert_eq!(
            pid_of(&run.owner),
            pid_b,
            "only the survivor runs jobs now: {run:?}"
        );
    }
    assert!(b.stop().await, "the survivor shuts down cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_per_sqlite_file_and_read_only_commands_beside_it() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = data_dir_arg(dir.path());
    let server = Server::start(purser(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]))
    .await;

    let (ok, _, stderr) = run(
        purser(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir]),
        None,
    )
    .await;
    assert!(!ok, "a second server on one SQLite file is refused");
    assert_eq!(
        stderr.matches("SQLite allows one writer").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains(&server.pid().to_string()),
        "names the holder: {stderr}"
    );

    let (ok, stdout, stderr) =
        run(purser(&["audit", "verify", "--data-dir", &data_dir]), None).await;
    assert!(ok, "audit verify runs beside the server: {stdout} {stderr}");
    assert!(stdout.contains("audit log intact"), "{stdout}");
    let (ok, checkpoint, _) = run(
        purser(&["audit", "checkpoint", "--data-dir", &data_dir]),
        None,
    )
    .await;
    assert!(ok && checkpoint.trim().contains(':'), "{checkpoint}");

    let (ok, _, stderr) = run(
        purser(&[
            "user",
            "add",
            "ops",
            "--role",
            "admin",
            "--data-dir",
            &data_dir,
        ]),
        None,
    )
    .await;
    assert!(
        !ok,
        "a writing command does not open the file under a server"
    );
    assert!(stderr.contains("use its API for changes"), "{stderr}");

    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    assert!(server.stop().await, "graceful shutdown");

    let (ok, stdout, stderr) = run(
        purser(&[
            "user",
            "add",
            "ops",
            "--role",
            "admin",
            "--residency",
            "US",
            "--password-stdin",
            "--data-dir",
            &data_dir,
        ]),
        Some("a long enough password\n"),
    )
    .await;
    assert!(ok, "with the server stopped, user add works: {stderr}");
    assert!(stdout.contains("created user ops"), "{stdout}");
    let (ok, _, stderr) = run(
        purser(&[
            "user",
            "add",
            "ops2",
            "--role",
            "root",
            "--data-dir",
            &data_dir,
        ]),
        None,
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("roles[0]") && stderr.contains("is not a role"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_changes_accounts_through_the_api_with_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = data_dir_arg(dir.path());
    let token = "psr_cli-test-token";
    {
        let store = Store::open(&Location::sqlite_in(dir.path()), OpenMode::Write)
            .await
            .expect("open");
        let actor = Actor::new("system:test", None);
        let user = NewUser::validate("csm", "", &["csm".into()], &[], Some("US")).expect("valid");
        let user = store.create_user(&actor, user, None).await.expect("user");
        store
            .create_token(
                &actor,
                &user.id,
                "cli",
                &secret_digest(token),
                Timestamp::now() + SignedDuration::from_hours(1),
            )
            .await
            .expect("token");
    }
    let server = Server::start(purser(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]))
    .await;
    let client = |args: &[&str]| {
        let mut command = purser(&["account"]);
        command
            .args(args)
            .env("PURSER_API_URL", &server.url)
            .env("PURSER_API_TOKEN", token);
        command
    };
    let (ok, stdout, stderr) = run(
        client(&[
            "--json",
            "create",
            "--name",
            "Acme Storage",
            "--external-id",
            "acme-storage",
            "--marketplace",
            "aws",
            "--marketplace-account-id",
            "123456789012",
            "--region",
            "us-east-1",
            "--csm",
            "csm@vendor.example",
        ]),
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["owners"]["csm"], "csm@vendor.example");

    let (ok, stdout, stderr) = run(client(&["update", &id, "--status", "active"]), None).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("active"), "{stdout}");
    let (ok, stdout, _) = run(client(&["list", "--q", "acme"]), None).await;
    assert!(ok);
    assert!(
        stdout.contains("Acme Storage") && stdout.contains(&id),
        "{stdout}"
    );

    let (ok, _, stderr) = run(
        client(&[
            "create",
            "--name",
            "Bad",
            "--external-id",
            "Bad Id",
            "--marketplace",
            "azure",
            "--marketplace-account-id",
            "nope",
            "--region",
            "westeurope",
        ]),
        None,
    )
    .await;
    assert!(!ok, "invalid input fails");
    assert!(
        stderr.contains("external_id:") && stderr.contains("marketplace_account_id:"),
        "names each field: {stderr}"
    );

    let (ok, _, stderr) = run(
        {
            let mut command = purser(&["account", "list"]);
            command
                .env("PURSER_API_URL", &server.url)
                .env("PURSER_API_TOKEN", "psr_wrong");
            command
        },
        None,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    assert!(server.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_tampered_entry_and_checkpoints_catch_a_rewrite() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = data_dir_arg(dir.path());
    let location = Location::sqlite_in(dir.path());
    {
        let store = Store::open(&location, OpenMode::Write).await.expect("open");
        for i in 0..5 {
            store
                .record(
                    Actor::new("user:ana", None)
                        .draft("account.update")
                        .details(serde_json::json!({ "i": i })),
                )
                .await
                .expect("append");
        }
    }
    let (ok, checkpoint, _) = run(
        purser(&["audit", "checkpoint", "--data-dir", &data_dir]),
        None,
    )
    .await;
    assert!(ok);
    let checkpoint = checkpoint.trim().to_owned();
    let (ok, stdout, _) = run(
        purser(&[
            "audit",
            "verify",
            "--against",
            &checkpoint,
            "--data-dir",
            &data_dir,
        ]),
        None,
    )
    .await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("extends checkpoint"), "{stdout}");

    {
        let store = Store::open(&location, OpenMode::Write).await.expect("open");
        let mut tx = store.db().begin().await.expect("tx");
        tx.batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .await
            .expect("drop");
        tx.execute(
            "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 3",
            &[],
        )
        .await
        .expect("tamper");
        tx.commit().await.expect("commit");
    }
    let (ok, stdout, _) = run(purser(&["audit", "verify", "--data-dir", &data_dir]), None).await;
    assert!(!ok, "tampering fails verification");
    assert!(
        stdout.contains("BROKEN at entry 3") && stdout.contains("edited"),
        "{stdout}"
    );

    let (ok, _, stderr) = run(
        purser(&[
            "audit",
            "verify",
            "--against",
            "nonsense",
            "--data-dir",
            &data_dir,
        ]),
        None,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("not a checkpoint"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_printed_masked_and_unknown_keys_are_refused() {
    let mut command = purser(&["config"]);
    command.env(
        "PURSER_DATABASE_URL",
        "postgres://purser:s3cret@db.internal/purser",
    );
    let (ok, stdout, stderr) = run(command, None).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("postgres://purser:***@db.internal/purser"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"));

    let mut command = purser(&["config"]);
    command.env("PURSER_LISTN", "127.0.0.1:1");
    let (ok, _, stderr) = run(command, None).await;
    assert!(!ok);
    assert!(stderr.contains("listn"), "names the unknown key: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(purser(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg(dir.path()),
    ]))
    .await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    // A form post whose body is still arriving when the server is told to stop.
    let body = "_csrf=abc&username=someone&password=something-long";
    let head = format!(
        "POST /signin HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
        .write_all(&body.as_bytes()[..10])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    crate::support::signal(server.pid(), "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(&body.as_bytes()[10..])
        .await
        .expect("the connection is still open");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(
        response.starts_with("HTTP/1.1 403"),
        "the request was answered: {response}"
    );
    assert!(response.contains("csrf_failed"), "{response}");
    let mut child = server.child;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "exits cleanly after finishing: {status}");
    // And takes no new connections.
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());
}
