//! Purser's storage: one [`Store`] over SQLite (embedded, the default) or PostgreSQL
//! (shared by several Purser processes).
//!
//! The store owns persistence and nothing else: rules live in `purser-core`. It does
//! own two invariants because only it can keep them in one place:
//! - every read of account data takes an [`AccountScope`](purser_core::AccountScope)
//!   and filters by it in SQL; a denied read is audited and reported as not found;
//! - every change is audited in the same transaction that makes it, so the log cannot
//!   miss a change that happened, nor record one that did not.
//!
//! Storage logic is written once against [`db::Handle`]; the two dialects differ only
//! in their migration files and in the few statements that ask [`db::Db::dialect`].

pub mod accounts;
pub mod audit;
pub mod commercial;
pub mod crm;
pub mod db;
pub mod erp;
pub mod identity;
pub mod jobs;
pub mod marketplace;
pub mod marketplace_rollup;
pub mod marketplace_views;
pub mod metering;
pub mod migrate;
pub mod subscriptions;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use purser_core::ValidationErrors;

pub use accounts::{AccountFilter, Page, PageRequest};
pub use audit::AuditFilter;
pub use db::{Db, Dialect, SqliteMode};
pub use identity::{ApiToken, SessionInfo};
pub use jobs::JobRun;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Location {
    /// The SQLite file inside a data directory.
    pub fn sqlite_in(data_dir: &Path) -> Location {
        Location::Sqlite(data_dir.join("purser.db"))
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("SQLite at {}", path.display()),
            Location::Postgres(url) => format!("PostgreSQL at {}", db::redact_url(url)),
        }
    }
}

/// What the opening process will do with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Migrate and write. On SQLite, only one process may do so at a time.
    Write,
    /// Read only, beside a running server; the schema must already be current.
    ReadOnly,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error(
        "the database was migrated by a newer Purser (schema version {database}; this binary knows up to {binary}): upgrade Purser rather than run an older one against it"
    )]
    DatabaseNewer { database: i64, binary: i64 },
    #[error("{}", locked_message(.path, *.holder_pid))]
    Locked {
        path: PathBuf,
        holder_pid: Option<u32>,
    },
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("a unique constraint was violated: {0}")]
    UniqueViolation(String),
    #[error("stored data is not what Purser wrote: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(String),
}

fn locked_message(path: &Path, holder_pid: Option<u32>) -> String {
    let holder = holder_pid.map_or_else(String::new, |pid| format!(" (process {pid})"));
    format!(
        "another Purser process{holder} is serving {}: SQLite allows one writer. Stop it, use its API for changes, or use PostgreSQL to run several servers",
        path.display()
    )
}

/// Purser's storage.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// This process's deduplication key sets (see [`metering`]).
    dedup: metering::SharedDedup,
    /// What closing carries from the last hour this process closed to the next.
    closing: metering::SharedClosingState,
}

impl Store {
    pub async fn open(location: &Location, mode: OpenMode) -> Result<Store, StoreError> {
        let db = match location {
            Location::Sqlite(path) => {
                if mode == OpenMode::Write
                    && let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                let sqlite_mode = match mode {
                    OpenMode::Write => SqliteMode::Writer,
                    OpenMode::ReadOnly => SqliteMode::ReadOnly,
                };
                Db::open_sqlite(path, sqlite_mode)?
            }
            Location::Postgres(url) => Db::open_postgres(url, 16).await?,
        };
        let store = Store {
            db,
            dedup: metering::SharedDedup::default(),
            closing: metering::SharedClosingState::default(),
        };
        match mode {
            OpenMode::Write => {
                migrate::migrate(&store.db).await?;
                store.ensure_built_in_boundaries().await?;
            }
            OpenMode::ReadOnly => migrate::check_version(&store.db).await?,
        }
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The current instant by the database's clock where processes share a database,
    /// so that leases mean the same to all of them whatever their own clocks say.
    pub async fn now(&self) -> Result<Timestamp, StoreError> {
        match self.db.dialect() {
            Dialect::Sqlite => Ok(Timestamp::now()),
            Dialect::Postgres => {
                let mut handle = self.db.read().await?;
                let row = handle
                    .query_one(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                        &[],
                    )
                    .await?;
                from_micros(row.int(0)?)
            }
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut handle = self.db.read().await?;
        handle.query_one("SELECT 1", &[]).await.map(drop)
    }
}

/// Now, at the microsecond precision storage keeps, so what a call returns equals
/// what a later read finds.
/// A stored value that does not read back as what was written.
pub(crate) fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {reason}"))
}

/// A decimal stored as text (quantities and money are never floats).
pub(crate) fn decimal(text: &str, what: &str) -> Result<rust_decimal::Decimal, StoreError> {
    text.parse::<rust_decimal::Decimal>()
        .map_err(|e| corrupt(what, e))
}

/// A JSON column's text.
pub(crate) fn json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

pub(crate) fn now_micros() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}

pub(crate) fn from_micros(micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(micros)
        .map_err(|e| StoreError::Corrupt(format!("instant {micros} out of range: {e}")))
}

pub(crate) fn opt_from_micros(micros: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    micros.map(from_micros).transpose()
}

/// `a,b,c` for a set stored in one column.
pub(crate) fn join_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(",")
}

pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A column list qualified by a table's alias (`a, b` → `r.a, r.b`), for joins where
/// tables share column names.
pub(crate) fn qualified_columns(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
