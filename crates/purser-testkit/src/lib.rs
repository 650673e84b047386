//! Test support shared by Purser's suites.
//!
//! [`TestDatabase`] gives each test its own database of either backend: a SQLite file
//! in a temporary directory, or a fresh PostgreSQL schema (so PostgreSQL tests run in
//! parallel on one server), dropped when the test ends. PostgreSQL is found at
//! `TEST_DATABASE_URL`, by default `postgres://postgres@127.0.0.1:5432/test`; when it
//! does not answer, the test fails and says how to point it elsewhere. It never skips.

// Test support: failing loudly is its job.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use purser_core::{AccountScope, BoundaryRule, Country, Principal, Role};
pub mod marketplace;

use purser_store::{Location, OpenMode, Store};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database; removed on drop.
pub struct TestDatabase {
    pub location: Location,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                TestDatabase {
                    location: Location::sqlite_in(dir.path()),
                    _dir: Some(dir),
                    schema: None,
                }
            }
            Backend::Postgres => {
                let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
                run_admin_sql(&format!("CREATE SCHEMA {schema}")).await;
                TestDatabase {
                    location: Location::Postgres(url_with_schema(&postgres_url(), &schema)),
                    _dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    /// The data directory (SQLite only).
    pub fn data_dir(&self) -> Option<PathBuf> {
        self._dir.as_ref().map(|d| d.path().to_owned())
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.location, OpenMode::Write)
            .await
            .expect("the test database opens")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Drop may run inside a runtime: do the async clean-up on a thread of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(async {
                        if let Ok((client, connection)) =
                            tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
                        {
                            tokio::spawn(connection);
                            let _ = client
                                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// The URL that keeps a connection inside `schema`.
pub fn url_with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// Runs SQL on the test server outside any test schema.
pub async fn run_admin_sql(sql: &str) {
    let url = postgres_url();
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(e) => panic!(
            "PostgreSQL does not answer at {url} ({e}). The test suite needs it: start it, \
             or set TEST_DATABASE_URL to a server where this user may create schemas."
        ),
    };
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect("admin SQL runs");
}

/// A caller with these roles, clearances and residency.
pub fn principal(
    username: &str,
    roles: &[Role],
    clearances: &[&str],
    residency: Option<&str>,
) -> Principal {
    Principal {
        user_id: format!("id-{username}"),
        username: username.to_owned(),
        roles: roles.iter().copied().collect(),
        clearances: clearances
            .iter()
            .map(|c| c.to_string())
            .collect::<BTreeSet<_>>(),
        residency: residency.and_then(|r| Country::parse(r).ok()),
        via_token: None,
    }
}

/// The scope of such a caller under the built-in boundaries.
pub fn scope(
    username: &str,
    roles: &[Role],
    clearances: &[&str],
    residency: Option<&str>,
) -> AccountScope {
    AccountScope::for_principal(
        &principal(username, roles, clearances, residency),
        &BoundaryRule::built_in(),
        None,
    )
}

/// Runs the test body once per backend: `both_backends!(name, |db| async move { … })`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::TestDatabase::new($crate::Backend::Sqlite).await;
                ($body)(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::TestDatabase::new($crate::Backend::Postgres).await;
                ($body)(db).await;
            }
        }
    };
}

/// The start of the hour `hours_back` hours before this test process first asked.
/// Fixed for the process, so that a test running across an hour boundary keeps the
/// hours it planned (a clock read afresh shifts every hour by one mid-test).
pub fn base_hour(hours_back: i64) -> jiff::Timestamp {
    static STARTED: std::sync::OnceLock<jiff::Timestamp> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(jiff::Timestamp::now);
    purser_store::metering::hour_start(started - jiff::SignedDuration::from_hours(hours_back))
        .expect("an hour in range")
}
