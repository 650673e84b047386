//! The two database backends behind one small interface: statements with `$N`
//! placeholders, four value kinds (null, integer, text, bytes), and transactions.
//!
//! Purser's storage logic is written once against [`Handle`]; only the few statements
//! whose dialects differ ask [`Db::dialect`]. SQLite runs on the calling task: its
//! statements are short, local and serialised by one writer connection, so a thread
//! hop per statement would cost more than it saves. PostgreSQL runs through a pool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::SinkExt;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::NoTls;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// SQLite `BLOB`, PostgreSQL `BYTEA`.
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <String as ToSql>::accepts(ty)
            || <Vec<u8> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.0.get(index) {
            Some(Value::Int(v)) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected an integer, found {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(index) {
            Some(Value::Null) => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.0.get(index) {
            Some(Value::Text(v)) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected text, found {other:?}"
            ))),
        }
    }

    pub fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        match self.0.get(index) {
            Some(Value::Bytes(v)) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected bytes, found {other:?}"
            ))),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(index) {
            Some(Value::Null) => Ok(None),
            _ => self.text(index).map(Some),
        }
    }
}

/// How a SQLite database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteMode {
    /// The one process that writes: `purser serve`, or a CLI command that writes while
    /// no server runs. Holds an exclusive lock on `<db>.lock`.
    Writer,
    /// Read-only, beside a running server (`audit verify`).
    ReadOnly,
}

/// An open database.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<Sqlite>),
    Postgres(Pool),
}

pub struct Sqlite {
    pub path: PathBuf,
    writer: Option<Arc<tokio::sync::Mutex<Connection>>>,
    readers: Mutex<Vec<Connection>>,
    /// Held for as long as the store lives; the OS releases it if the process dies.
    _lock: Option<File>,
}

/// At most this many idle read connections are kept.
const MAX_IDLE_READERS: usize = 8;

impl Db {
    pub fn open_sqlite(path: &Path, mode: SqliteMode) -> Result<Db, StoreError> {
        let lock = match mode {
            SqliteMode::Writer => Some(take_writer_lock(path)?),
            SqliteMode::ReadOnly => {
                if !path.exists() {
                    return Err(StoreError::Unavailable(format!(
                        "no Purser database at {}: start `purser serve` once to create it",
                        path.display()
                    )));
                }
                None
            }
        };
        let writer = match mode {
            SqliteMode::Writer => {
                let conn = Connection::open(path).map_err(|e| sqlite_error(&e))?;
                // WAL lets read-only commands run beside the server; FULL survives power
                // loss, which matters more than write speed for money.
                // A new database gets 16 KiB pages (batches' bytes and evidence are
                // large rows: fewer, larger pages mean fewer page writes); an existing
                // one keeps its own. Checkpoints every 256 MiB of WAL (16,384 pages), not
                // SQLite's 1,000: a page written again before a checkpoint is copied into
                // the database once, which spares closing a backlog a quarter of its writes.
                conn.execute_batch(
                    "PRAGMA page_size = 16384;
                     PRAGMA journal_mode = WAL;
                     PRAGMA wal_autocheckpoint = 16384;
                     PRAGMA synchronous = FULL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA busy_timeout = 5000;
                     PRAGMA cache_size = -65536;
                     PRAGMA temp_store = MEMORY;",
                )
                .map_err(|e| sqlite_error(&e))?;
                Some(Arc::new(tokio::sync::Mutex::new(conn)))
            }
            SqliteMode::ReadOnly => None,
        };
        Ok(Db::Sqlite(Arc::new(Sqlite {
            path: path.to_owned(),
            writer,
            readers: Mutex::new(Vec::new()),
            _lock: lock,
        })))
    }

    /// Connects to PostgreSQL. The URL may carry `options=-csearch_path%3D<schema>` to
    /// keep Purser (or one test) in its own schema.
    pub async fn open_postgres(url: &str, max_connections: usize) -> Result<Db, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("the PostgreSQL URL is not valid: {e}"))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // Fail now, with the reason, rather than on the first request.
        let client = pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {}",
                redact_url(url),
                error_chain(&e)
            ))
        })?;
        drop(client);
        Ok(Db::Postgres(pool))
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A transaction that may write. On SQLite it holds the one writer connection
    /// (`BEGIN IMMEDIATE`, so it never fails half-way on a lock upgrade).
    pub async fn begin(&self) -> Result<Handle, StoreError> {
        match self {
            Db::Sqlite(sqlite) => {
                let writer = sqlite.writer.clone().ok_or_else(|| {
                    StoreError::ReadOnly(format!(
                        "{} is open read-only beside a running server",
                        sqlite.path.display()
                    ))
                })?;
                let conn = writer.lock_owned().await;
                conn.execute_batch("BEGIN IMMEDIATE")
                    .map_err(|e| sqlite_error(&e))?;
                Ok(Handle {
                    inner: HandleInner::SqliteWriter(conn),
                    open_transaction: true,
                })
            }
            Db::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                client.batch_execute("BEGIN").await.map_err(pg_error)?;
                Ok(Handle {
                    inner: HandleInner::Postgres(Some(client)),
                    open_transaction: true,
                })
            }
        }
    }

    /// A connection for reads, outside any transaction.
    pub async fn read(&self) -> Result<Handle, StoreError> {
        match self {
            Db::Sqlite(sqlite) => {
                let pooled = sqlite.readers.lock().ok().and_then(|mut idle| idle.pop());
                let conn = match pooled {
                    Some(conn) => conn,
                    None => open_reader(&sqlite.path)?,
                };
                Ok(Handle {
                    inner: HandleInner::SqliteReader(Some(conn), sqlite.clone()),
                    open_transaction: false,
                })
            }
            Db::Postgres(pool) => Ok(Handle {
                inner: HandleInner::Postgres(Some(pool.get().await.map_err(pool_error)?)),
                open_transaction: false,
            }),
        }
    }

    /// (connections in use, connections idle) for metrics.
    pub fn pool_status(&self) -> (usize, usize) {
        match self {
            Db::Sqlite(sqlite) => {
                let idle = sqlite.readers.lock().map(|r| r.len()).unwrap_or(0);
                let writer_busy = sqlite
                    .writer
                    .as_ref()
                    .is_some_and(|w| w.try_lock().is_err());
                (usize::from(writer_busy), idle)
            }
            Db::Postgres(pool) => {
                let status = pool.status();
                (status.size - status.available, status.available)
            }
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(&e))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(|e| sqlite_error(&e))?;
    Ok(conn)
}

/// Only one process may write a SQLite database: two would each believe their job
/// runs and caches were the only ones.
fn take_writer_lock(path: &Path) -> Result<File, StoreError> {
    use std::io::{Read, Seek, Write};
    let lock_path = path.with_extension("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => {
            // Say who holds it, for the message the next process will print.
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(StoreError::Locked {
                path: path.to_owned(),
                holder_pid: holder.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// A connection to run statements on; a transaction when made by [`Db::begin`]. A
/// transaction dropped without [`Handle::commit`] is rolled back.
pub struct Handle {
    inner: HandleInner,
    open_transaction: bool,
}

enum HandleInner {
    SqliteWriter(OwnedMutexGuard<Connection>),
    /// `None` only while being returned to the idle list.
    SqliteReader(Option<Connection>, Arc<Sqlite>),
    Postgres(Option<Object>),
}

impl Handle {
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            HandleInner::SqliteWriter(_) | HandleInner::SqliteReader(..) => Dialect::Sqlite,
            HandleInner::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &mut self.inner {
            HandleInner::SqliteWriter(conn) => sqlite_execute(conn, sql, params),
            HandleInner::SqliteReader(conn, _) => {
                sqlite_execute(conn.as_ref().ok_or_else(closed)?, sql, params)
            }
            HandleInner::Postgres(client) => {
                let client = client.as_ref().ok_or_else(closed)?;
                let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                client.execute(&statement, &refs).await.map_err(pg_error)
            }
        }
    }

    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match &mut self.inner {
            HandleInner::SqliteWriter(conn) => sqlite_query(conn, sql, params),
            HandleInner::SqliteReader(conn, _) => {
                sqlite_query(conn.as_ref().ok_or_else(closed)?, sql, params)
            }
            HandleInner::Postgres(client) => {
                let client = client.as_ref().ok_or_else(closed)?;
                let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = client.query(&statement, &refs).await.map_err(pg_error)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("expected one row from: {sql}")))
    }

    /// Inserts rows with PostgreSQL's binary COPY, which takes bulk rows several
    /// times faster than INSERT statements. PostgreSQL only: SQLite has no COPY, and
    /// its multi-row INSERTs are already local calls.
    pub async fn copy_in(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &[Vec<Value>],
    ) -> Result<(), StoreError> {
        let HandleInner::Postgres(client) = &mut self.inner else {
            return Err(StoreError::Backend("COPY is PostgreSQL's alone".into()));
        };
        let client = client.as_ref().ok_or_else(closed)?;
        let columns = columns.join(", ");
        // Binary COPY needs each column's type: the table's own, read once.
        let types = client
            .prepare_cached(&format!("SELECT {columns} FROM {table} WHERE false"))
            .await
            .map_err(pg_error)?;
        let types: Vec<Type> = types.columns().iter().map(|c| c.type_().clone()).collect();
        let sink = client
            .copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY"))
            .await
            .map_err(pg_error)?;
        let mut sink = std::pin::pin!(sink);
        // The binary COPY format, encoded here and sent a megabyte at a time:
        // tokio-postgres's `BinaryCopyInWriter` sends every 4 KB, and closing an hour's
        // rows through it cost a message, a wake-up and a write every three evidence
        // rows, which kept the connection's thread on the critical path.
        const SEND_BYTES: usize = 1024 * 1024;
        let mut buf = bytes::BytesMut::with_capacity(SEND_BYTES + 64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        for row in rows {
            if row.len() != types.len() {
                return Err(StoreError::Backend(format!(
                    "COPY {table}: a row of {} values for {} columns",
                    row.len(),
                    types.len()
                )));
            }
            buf.extend_from_slice(&(types.len() as i16).to_be_bytes());
            for (value, ty) in row.iter().zip(&types) {
                let at = buf.len();
                buf.extend_from_slice(&0i32.to_be_bytes());
                let length = match value.to_sql_checked(ty, &mut buf).map_err(|e| {
                    StoreError::Backend(format!("COPY {table}: a value for {ty}: {e}"))
                })? {
                    IsNull::Yes => -1,
                    IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|_| {
                        StoreError::Backend(format!("COPY {table}: a value over 2 GiB"))
                    })?,
                };
                buf[at..at + 4].copy_from_slice(&length.to_be_bytes());
            }
            if buf.len() >= SEND_BYTES {
                sink.send(buf.split().freeze()).await.map_err(pg_error)?;
            }
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        sink.send(buf.freeze()).await.map_err(pg_error)?;
        sink.as_mut().finish().await.map_err(pg_error)?;
        Ok(())
    }

    /// Runs several statements without parameters (migrations).
    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &mut self.inner {
            HandleInner::SqliteWriter(conn) => {
                conn.execute_batch(sql).map_err(|e| sqlite_error(&e))
            }
            HandleInner::SqliteReader(conn, _) => conn
                .as_ref()
                .ok_or_else(closed)?
                .execute_batch(sql)
                .map_err(|e| sqlite_error(&e)),
            HandleInner::Postgres(client) => client
                .as_ref()
                .ok_or_else(closed)?
                .batch_execute(sql)
                .await
                .map_err(pg_error),
        }
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.open_transaction {
            self.batch("COMMIT").await?;
            self.open_transaction = false;
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        match &mut self.inner {
            HandleInner::SqliteWriter(conn) => {
                if self.open_transaction {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            HandleInner::SqliteReader(conn, sqlite) => {
                if let Some(conn) = conn.take()
                    && let Ok(mut idle) = sqlite.readers.lock()
                    && idle.len() < MAX_IDLE_READERS
                {
                    idle.push(conn);
                }
            }
            HandleInner::Postgres(client) => {
                if self.open_transaction
                    && let Some(client) = client.take()
                {
                    // We cannot await a ROLLBACK here; closing the connection rolls the
                    // transaction back on the server, and keeps it out of the pool.
                    drop(Object::take(client));
                }
            }
        }
    }
}

/// SQLite reads `$1` as a *named* parameter numbered by first appearance, not by its
/// digits; `?1` is positional, which is what `$1` means to PostgreSQL.
fn sqlite_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        std::borrow::Cow::Owned(sql.replace('$', "?"))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

fn sqlite_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
    let mut statement = conn
        .prepare_cached(&sqlite_sql(sql))
        .map_err(|e| sqlite_error(&e))?;
    let n = statement
        .execute(rusqlite::params_from_iter(params))
        .map_err(|e| sqlite_error(&e))?;
    Ok(n as u64)
}

fn sqlite_query(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
    use rusqlite::types::ValueRef;
    let mut statement = conn
        .prepare_cached(&sqlite_sql(sql))
        .map_err(|e| sqlite_error(&e))?;
    let n_columns = statement.column_count();
    let mut rows = statement
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| sqlite_error(&e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sqlite_error(&e))? {
        let mut values = Vec::with_capacity(n_columns);
        for index in 0..n_columns {
            values.push(match row.get_ref(index).map_err(|e| sqlite_error(&e))? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Text(bytes) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
                ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "column {index} holds an unexpected {:?}",
                        other.data_type()
                    )));
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

fn pg_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index).map(Value::from)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)
                .map(|v| Value::from(v.map(i64::from)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index)
                .map(|v| v.map_or(Value::Null, Value::Bytes))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)
                .map(|v| Value::from(v.map(i64::from)))
        } else {
            row.try_get::<_, Option<String>>(index).map(Value::from)
        };
        values.push(value.map_err(pg_error)?);
    }
    Ok(Row(values))
}

fn closed() -> StoreError {
    StoreError::Unavailable("the database connection was closed".into())
}

fn sqlite_error(error: &rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, message) = error {
        if failure.code == rusqlite::ErrorCode::ConstraintViolation
            && matches!(failure.extended_code, 2067 | 1555)
        {
            return StoreError::UniqueViolation(message.clone().unwrap_or_default());
        }
        if matches!(
            failure.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ) {
            return StoreError::Unavailable(format!("the database is busy: {error}"));
        }
    }
    StoreError::Backend(error.to_string())
}

fn pg_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        if *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::UniqueViolation(format!(
                "{} ({})",
                db.message(),
                db.constraint().unwrap_or_default()
            ));
        }
        return StoreError::Backend(format!("{}: {}", db.code().code(), db.message()));
    }
    if error.is_closed() {
        return StoreError::Unavailable(format!("the PostgreSQL connection closed: {error}"));
    }
    StoreError::Backend(error.to_string())
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no PostgreSQL connection: {}", error_chain(&error)))
}

/// An error and its causes, `outer: inner: innermost`, without repeating a cause that
/// the outer message already spells out.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The URL with any password replaced, for messages and `purser config`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_positional_for_sqlite() {
        assert_eq!(sqlite_sql("SELECT $2, $1"), "SELECT ?2, ?1");
        assert_eq!(sqlite_sql("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://purser:s3cret@db:5432/purser"),
            "postgres://purser:***@db:5432/purser"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
