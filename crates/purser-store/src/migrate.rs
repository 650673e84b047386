//! Versioned migrations, one SQL file per version and dialect, applied at start-up.
//!
//! Written here rather than taken from a crate because Purser needs two things the
//! candidates lack: several PostgreSQL processes starting at once must not migrate
//! twice (an advisory lock serialises them), and a database migrated by a newer
//! Purser must be refused, not half-understood.

use crate::StoreError;
use crate::db::{Db, Dialect, Value};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, in order. Both dialects of a version live side by side so they
/// cannot drift apart in numbering; a migration written in the subset both dialects
/// share lives once, in `migrations/common`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "offers_entitlements",
        // Written in the subset both dialects share.
        sqlite: include_str!("../migrations/common/0002_offers_entitlements.sql"),
        postgres: include_str!("../migrations/common/0002_offers_entitlements.sql"),
    },
    Migration {
        version: 3,
        name: "metering",
        sqlite: include_str!("../migrations/sqlite/0003_metering.sql"),
        postgres: include_str!("../migrations/postgres/0003_metering.sql"),
    },
    Migration {
        version: 4,
        name: "metering_compact",
        sqlite: include_str!("../migrations/sqlite/0004_metering_compact.sql"),
        postgres: include_str!("../migrations/postgres/0004_metering_compact.sql"),
    },
    Migration {
        version: 5,
        name: "marketplace",
        // Tables in the shared subset; the append-only triggers per dialect.
        sqlite: concat!(
            include_str!("../migrations/common/0005_marketplace.sql"),
            include_str!("../migrations/sqlite/0005_marketplace_triggers.sql")
        ),
        postgres: concat!(
            include_str!("../migrations/common/0005_marketplace.sql"),
            include_str!("../migrations/postgres/0005_marketplace_triggers.sql")
        ),
    },
    Migration {
        version: 6,
        name: "marketplace_subscriptions",
        sqlite: concat!(
            include_str!("../migrations/common/0006_marketplace_subscriptions.sql"),
            include_str!("../migrations/sqlite/0006_subscription_triggers.sql")
        ),
        postgres: concat!(
            include_str!("../migrations/common/0006_marketplace_subscriptions.sql"),
            include_str!("../migrations/postgres/0006_subscription_triggers.sql")
        ),
    },
    Migration {
        version: 7,
        name: "erp_crm",
        sqlite: concat!(
            include_str!("../migrations/common/0007_erp_crm.sql"),
            include_str!("../migrations/sqlite/0007_erp_triggers.sql")
        ),
        postgres: concat!(
            include_str!("../migrations/common/0007_erp_crm.sql"),
            include_str!("../migrations/postgres/0007_erp_triggers.sql")
        ),
    },
    Migration {
        version: 8,
        name: "marketplace_rollup",
        // Tables in the shared subset; `backfill` fills the roll-up.
        sqlite: include_str!("../migrations/common/0008_marketplace_rollup.sql"),
        postgres: include_str!("../migrations/common/0008_marketplace_rollup.sql"),
    },
    Migration {
        version: 9,
        name: "marketplace_route",
        // One column, in the shared subset.
        sqlite: include_str!("../migrations/common/0009_marketplace_route.sql"),
        postgres: include_str!("../migrations/common/0009_marketplace_route.sql"),
    },
    Migration {
        version: 10,
        name: "dimension_hours_by_hour",
        // Two indexes, in the shared subset.
        sqlite: include_str!("../migrations/common/0010_dimension_hours_by_hour.sql"),
        postgres: include_str!("../migrations/common/0010_dimension_hours_by_hour.sql"),
    },
    Migration {
        version: 11,
        name: "marketplace_records_by_hour_account",
        // PostgreSQL's planner alone needs it (see the file); nothing changes on SQLite.
        sqlite: "",
        postgres: include_str!(
            "../migrations/postgres/0011_marketplace_records_by_hour_account.sql"
        ),
    },
];

/// What a version computes from existing rows after its SQL, in its transaction:
/// what SQL alone cannot (exact decimal sums on SQLite). Kept apart from `MIGRATIONS`
/// so that a version without one needs no entry.
async fn backfill(version: i64, tx: &mut crate::db::Handle) -> Result<(), StoreError> {
    match version {
        8 => crate::marketplace_rollup::rebuild(tx).await,
        _ => Ok(()),
    }
}

pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// An arbitrary, fixed key for `pg_advisory_xact_lock`: "purser" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x7075_7273_6572;

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Applies what is missing; returns the versions applied.
pub async fn migrate(db: &Db) -> Result<Vec<i64>, StoreError> {
    let mut tx = db.begin().await?;
    if db.dialect() == Dialect::Postgres {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Value::Int(MIGRATION_LOCK_KEY)],
        )
        .await?;
    }
    tx.batch(CREATE_HISTORY).await?;
    let current = current_version_in(&mut tx).await?;
    refuse_newer(current)?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match db.dialect() {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        tx.batch(sql).await.map_err(|e| {
            StoreError::Backend(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
        })?;
        backfill(migration.version, &mut tx).await.map_err(|e| {
            StoreError::Backend(format!(
                "migration {} ({}) failed to fill its tables: {e}",
                migration.version, migration.name
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[
                Value::Int(migration.version),
                migration.name.into(),
                Value::Int(jiff::Timestamp::now().as_microsecond()),
            ],
        )
        .await?;
        applied.push(migration.version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// For read-only opens: the schema must be exactly what this binary knows.
pub async fn check_version(db: &Db) -> Result<(), StoreError> {
    let mut handle = db.read().await?;
    let exists = match db.dialect() {
        Dialect::Sqlite => handle
            .query_opt(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                &[],
            )
            .await?
            .is_some(),
        Dialect::Postgres => handle
            .query_opt("SELECT to_regclass('schema_migrations')::text", &[])
            .await?
            .and_then(|row| row.opt_text(0).ok().flatten())
            .is_some(),
    };
    let current = if exists {
        current_version_in(&mut handle).await?
    } else {
        0
    };
    refuse_newer(current)?;
    if current < latest_version() {
        return Err(StoreError::Unavailable(format!(
            "the database is at schema version {current} and this Purser needs {}: start `purser serve` once to migrate it",
            latest_version()
        )));
    }
    Ok(())
}

async fn current_version_in(handle: &mut crate::db::Handle) -> Result<i64, StoreError> {
    let row = handle
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    row.int(0)
}

fn refuse_newer(current: i64) -> Result<(), StoreError> {
    if current > latest_version() {
        return Err(StoreError::DatabaseNewer {
            database: current,
            binary: latest_version(),
        });
    }
    Ok(())
}
