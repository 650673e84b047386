//! What each `purser` command does. The binary only parses arguments into these calls.
//!
//! Commands that read (`audit verify`, `audit checkpoint`, `config`) open the database
//! read-only, so they run beside a server. Commands that change accounts go through a
//! running server's API with a token, so they are authenticated, scoped and audited
//! exactly like any other change. `user add` (to create the first administrator)
//! writes directly, and on SQLite says plainly when a server holds the database.

use std::io::{BufRead, Write};

use purser_core::audit::{Actor, Checkpoint};
use purser_core::identity::{NewUser, check_password};
use purser_store::OpenMode;
use serde_json::Value;

use crate::{AppError, Config, demo, open_store, serve};

pub async fn run_server(config: &Config) -> Result<(), AppError> {
    let store = open_store(config, OpenMode::Write).await?;
    serve(config, store, |address| {
        println!("Purser is listening on http://{address}");
    })
    .await
}

/// Starts fake marketplaces in process, seeds the demo data set if the database is
/// empty (`history_days` of telemetry, each hour reported to the fakes in its turn),
/// prints how to sign in, and serves, reporting to the fakes in real time unless the
/// configuration names marketplaces of its own.
pub async fn run_demo(config: &Config, history_days: i64) -> Result<(), AppError> {
    let store = open_store(config, OpenMode::Write).await?;
    let marketplaces = demo::DemoMarketplaces::start().await?;
    let options = demo::SeedOptions {
        days: history_days.clamp(1, 62),
        now: jiff::Timestamp::now(),
        marketplaces: Some(&marketplaces),
        on_day: Some(&|done, days| {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rSeeding the demo: day {done} of {days} closed and reported to the fake marketplaces"
            );
            if done == days {
                let _ = writeln!(err);
            }
        }),
    };
    let seeded = demo::seed(&store, &options).await?;
    // A database seeded by an earlier run: its customers, registered anew. One whose
    // entitlements are bound to no marketplace has nothing to report to the fakes.
    let bound = marketplaces.register(&store).await?;
    marketplaces.run_in_real_time();
    let mut config = config.clone();
    let own = &config.marketplaces;
    let to_fakes = own.gcp.is_none()
        && own.azure.is_none()
        && own.aws.is_none()
        && own.tackle.is_none()
        && !bound.is_empty();
    if to_fakes {
        config.marketplaces = marketplaces.config();
    }
    let location = config.location().describe();
    let fakes = marketplaces.fakes();
    let reporting = if to_fakes {
        format!(
            "fake Google {}, Azure {}, AWS {}, Tackle {} (in this process)",
            fakes.gcp_url(),
            fakes.azure_url(),
            fakes.aws_url(),
            fakes.tackle_url()
        )
    } else if bound.is_empty() {
        "none (no entitlement is bound to one)".to_owned()
    } else {
        "the marketplaces in the configuration".to_owned()
    };
    let reconcile = match &config.database_url {
        Some(_) => "purser reconcile --database-url …".to_owned(),
        None => format!("purser reconcile --data-dir {}", config.data_dir.display()),
    };
    let served = serve(&config, store, move |address| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\nPurser demo {} ({location})",
            if seeded {
                "seeded and running"
            } else {
                "running"
            }
        );
        let _ = writeln!(out, "Pages:        http://{address}/");
        let _ = writeln!(
            out,
            "API:          http://{address}/docs/api   (OpenAPI at /openapi.json)"
        );
        let _ = writeln!(
            out,
            "\nSign in as any of these (username / password — roles, clearances, residency):"
        );
        for user in demo::users() {
            let clearances = if user.clearances.is_empty() {
                "none".to_owned()
            } else {
                user.clearances.join(",")
            };
            let _ = writeln!(
                out,
                "  {:<15} / {:<26} {} — cleared: {}, resides: {}",
                user.username,
                user.password,
                user.roles.join(","),
                clearances,
                user.residency
            );
        }
        let _ = writeln!(out, "\nMarketplaces: {reporting}.");
        let _ = writeln!(
            out,
            "Reconcile what was reported (the last 31 days): {reconcile}"
        );
        let _ = writeln!(out, "\nStop with Ctrl-C.");
    })
    .await;
    marketplaces.shutdown().await;
    served
}

pub struct UserAdd {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub clearances: Vec<String>,
    pub residency: Option<String>,
    /// Read the password from standard input (one line) instead of leaving none.
    pub password_stdin: bool,
}

/// Creates a user directly in the database (the first administrator, typically).
pub async fn user_add(config: &Config, request: UserAdd) -> Result<(), AppError> {
    let user = NewUser::validate(
        &request.username,
        &request.display_name,
        &request.roles,
        &request.clearances,
        request.residency.as_deref(),
    )
    .map_err(|e| AppError::Invalid(e.to_string()))?;
    let hash = if request.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        check_password(&password).map_err(|e| AppError::Invalid(e.to_string()))?;
        Some(
            purser_http::auth::hash_password(password)
                .await
                .map_err(|e| AppError::Failed(e.message))?,
        )
    } else {
        None
    };
    let store = open_store(config, OpenMode::Write).await?;
    let actor = Actor::new(
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
        None,
    );
    let created = store.create_user(&actor, user, hash).await?;
    println!(
        "created user {} ({}) with roles {}",
        created.username,
        created.id,
        created
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Creates an API token for a user directly in the database and prints its secret
/// once: how a service (the telemetry sender) gets its first token.
pub async fn token_create(
    config: &Config,
    username: &str,
    name: &str,
    days: i64,
) -> Result<(), AppError> {
    if !(1..=config.token_max_days).contains(&days) {
        return Err(AppError::Invalid(format!(
            "--days must be between 1 and {} (token_max_days)",
            config.token_max_days
        )));
    }
    let store = open_store(config, OpenMode::Write).await?;
    let user = store
        .users()
        .await?
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| AppError::Invalid(format!("no user is called `{username}`")))?;
    let secret = format!(
        "{}{}",
        purser_http::auth::TOKEN_PREFIX,
        purser_http::auth::random_secret()
    );
    let actor = Actor::new(
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
        None,
    );
    store
        .create_token(
            &actor,
            &user.id,
            name,
            &purser_core::identity::secret_digest(&secret),
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days),
        )
        .await?;
    println!("{secret}");
    Ok(())
}

/// Walks the audit chain. Returns whether it verified.
pub async fn audit_verify(config: &Config, against: Option<&str>) -> Result<bool, AppError> {
    let checkpoint = against
        .map(Checkpoint::parse)
        .transpose()
        .map_err(AppError::Invalid)?;
    let store = open_store(config, OpenMode::ReadOnly).await?;
    match store.verify_audit(checkpoint.clone()).await? {
        Ok(verified) => {
            println!(
                "audit log intact: {} entries, head {}",
                verified.n_entries, verified.head
            );
            if let Some(checkpoint) = checkpoint {
                println!("it extends checkpoint {checkpoint}");
            }
            Ok(true)
        }
        Err(chain_break) => {
            println!(
                "audit log BROKEN at entry {}: {chain_break}",
                chain_break.seq()
            );
            Ok(false)
        }
    }
}

pub async fn audit_checkpoint(config: &Config) -> Result<(), AppError> {
    let store = open_store(config, OpenMode::ReadOnly).await?;
    println!("{}", store.audit_recorded_head().await?);
    Ok(())
}

pub fn show_config(config: &Config) {
    print!("{}", config.to_masked_toml());
}

/// A client of a running server's API.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, AppError> {
        let token = token.ok_or_else(|| {
            AppError::Invalid(
                "this command goes through a running Purser's API: give a token with --token or PURSER_API_TOKEN (create one on the API tokens page)".into(),
            )
        })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        })
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AppError> {
        let text = self
            .send_text(method, path, body.map(Value::to_string))
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// As [`ApiClient::send`], with the JSON bodies as text both ways: numbers travel
    /// exactly as written, never through floating point.
    pub async fn send_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<String, AppError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            AppError::Failed(format!(
                "cannot reach Purser at {}: {e}. Is `purser serve` running there?",
                self.base
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| AppError::Failed(e.to_string()))?;
        if status.is_success() {
            Ok(text)
        } else {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Err(AppError::Failed(describe_api_error(
                &value,
                status.as_u16(),
            )))
        }
    }
}

/// The API's error shape as a line for a terminal: message, then each field.
pub fn describe_api_error(value: &Value, status: u16) -> String {
    let error = &value["error"];
    let mut line = format!(
        "{} ({})",
        error["message"].as_str().unwrap_or("the request failed"),
        error["code"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned)
    );
    for detail in error["details"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "\n  {}: {}",
            detail["field"].as_str().unwrap_or("?"),
            detail["reason"].as_str().unwrap_or("")
        ));
    }
    line
}

/// Prints accounts as a table.
pub fn print_accounts(accounts: &[Value]) {
    println!(
        "{:<38} {:<32} {:<8} {:<14} {:<11}",
        "ID", "NAME", "MARKET", "BOUNDARY", "STATUS"
    );
    for account in accounts {
        let field = |name: &str| account[name].as_str().unwrap_or("").to_owned();
        println!(
            "{:<38} {:<32} {:<8} {:<14} {:<11}",
            field("id"),
            field("name"),
            field("marketplace"),
            field("boundary"),
            field("status")
        );
    }
}

/// What a CRM import did, for a terminal: counts, then each record held back.
pub fn print_import_report(report: &Value) {
    let n = |key: &str| report[key].as_u64().unwrap_or(0);
    if report["dry_run"].as_bool().unwrap_or(false) {
        println!("dry run: nothing was changed; importing would do this");
    }
    println!(
        "accounts: {} created, {} updated; offers: {} created; entitlements: {} created, {} updated; {} unchanged",
        n("accounts_created"),
        n("accounts_updated"),
        n("offers_created"),
        n("entitlements_created"),
        n("entitlements_updated"),
        n("unchanged"),
    );
    let held = report["held_back"].as_array().cloned().unwrap_or_default();
    if !held.is_empty() || n("held_back_elsewhere") > 0 {
        println!(
            "held back, not imported: {} (and {} concerning boundaries you are not cleared for)",
            held.len(),
            n("held_back_elsewhere")
        );
    }
    for record in held {
        println!(
            "  {} {} {}: {} — {}",
            record["record"].as_str().unwrap_or(""),
            record["record_type"].as_str().unwrap_or(""),
            record["record_external_id"].as_str().unwrap_or(""),
            record["kind"].as_str().unwrap_or(""),
            record["message"].as_str().unwrap_or("")
        );
    }
    if n("findings_resolved") > 0 {
        println!("findings resolved: {}", n("findings_resolved"));
    }
}
