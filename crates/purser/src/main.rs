//! The `purser` command. It parses arguments and calls `purser_app::commands`;
//! nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use purser_app::commands::{self, ApiClient, UserAdd};
use purser_app::config::LogFormat;
use purser_app::{Config, FlagOverrides};
use serde_json::{Value, json};

// See the workspace's Cargo.toml: measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "purser",
    version,
    about = "Run the business of selling through the cloud marketplaces"
)]
struct Cli {
    /// A TOML configuration file (default: purser.toml here, if present).
    #[arg(long, global = true, env = "PURSER_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded SQLite database lives.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL; overrides the embedded database.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log lines as text or JSON.
    #[arg(long, global = true, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the pages, and run periodic jobs.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve with a realistic demo data set (in ./purser-demo unless --data-dir is given).
    Demo {
        #[arg(long)]
        listen: Option<String>,
        /// Days of history a new demo database is seeded with, each hour reported to
        /// the in-process fake marketplaces in its turn (1 to 62).
        #[arg(long, default_value_t = 30)]
        history_days: i64,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load usage events (CloudEvents, NDJSON) from a file, or `-` for standard input,
    /// straight into the database; prints a summary. Safe to re-run: events already
    /// stored count as duplicates.
    Ingest {
        file: PathBuf,
        /// Close the hours that are due once the file is in.
        #[arg(long)]
        close: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every closed hour in a range from the stored events and report any
    /// difference; exits non-zero when one is found.
    Verify {
        /// RFC 3339 (default: 31 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
    },
    /// The evidence of an account's closed hour and the events behind it.
    Evidence {
        account_id: String,
        /// Any instant in the hour (RFC 3339).
        #[arg(long)]
        hour: String,
        #[arg(long)]
        json: bool,
    },
    /// An account's usage from closed hours.
    Usage {
        account_id: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Days (UTC) instead of hours.
        #[arg(long)]
        daily: bool,
        /// Per meter instead of per dimension.
        #[arg(long)]
        meters: bool,
        /// Only this dimension (or, with --meters, this meter).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        csv: bool,
    },
    /// Per marketplace, account and hour: what was due, sent and accepted; names every
    /// record missing, refused, conflicting or over-reported, and exits non-zero when
    /// anything is off.
    Reconcile {
        /// RFC 3339 (default: 31 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
        /// Recompute from every record and re-hash every exchange, instead of reading
        /// the roll-up of accepted records and verifying the chain from its latest
        /// checkpoint (same report, slower).
        #[arg(long)]
        full: bool,
    },
    /// Marketplace submission: plan closed hours, send what is due, once, now (the
    /// `marketplace.submit` job does this every minute in a server).
    Submit,
    /// Tools for developers.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Accounts, through a running server's API.
    Account {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: Box<AccountCommand>,
    },
    /// The ERP export.
    #[command(subcommand)]
    Erp(ErpCommand),
    /// The CRM (Salesforce-shaped records), through a running server's API.
    Crm {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CrmCommand,
    },
}

#[derive(Subcommand)]
enum ErpCommand {
    /// A month's invoice lines per account, from the database: the kept export once
    /// the month is closed (it never changes), computed from the closed hours before.
    /// Read-only: runs beside a server.
    Export {
        /// The calendar month (UTC), e.g. 2026-11.
        #[arg(long)]
        month: String,
        /// Only this account, by its external id.
        #[arg(long)]
        account: Option<String>,
        /// csv, jsonl or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CrmCommand {
    /// Import accounts, offers and entitlements from a file of Salesforce records
    /// ({"records": [...]} or an array); prints what changed and what was held back.
    Import {
        file: PathBuf,
        /// Decide and report, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Usage and entitlement fields for the CRM to upsert by external id, as an sObject
    /// Collections body.
    Export {
        /// The calendar month (UTC), e.g. 2026-11; this month by default.
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Start fake Google, Azure and AWS marketplaces that enforce the published
    /// metering contracts, seeded with demo customers; prints their addresses and the
    /// configuration that points Purser at them. Runs until interrupted.
    FakeMarketplaces,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user directly in the database (the first administrator).
    Add {
        username: String,
        /// admin, finance, support, sre, csm, auditor or viewer; repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A boundary clearance such as us-gov; repeatable.
        #[arg(long = "clearance")]
        clearances: Vec<String>,
        /// Country of residence (ISO 3166-1 alpha-2).
        #[arg(long)]
        residency: Option<String>,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password (12+ characters) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user directly in the database and print its secret once
    /// (a service's first token, e.g. for the telemetry sender).
    Create {
        username: String,
        #[arg(long)]
        name: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and name the first entry that was tampered with.
    Verify {
        /// A checkpoint (SEQ:HASH) printed earlier: prove the log still extends it.
        #[arg(long)]
        against: Option<String>,
    },
    /// Print the chain's head (SEQ:HASH), to keep outside Purser.
    Checkpoint,
}

#[derive(Args)]
struct ClientArgs {
    /// The running Purser's address.
    #[arg(long, env = "PURSER_API_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API token.
    #[arg(long, env = "PURSER_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// List the accounts you may see.
    List {
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        marketplace: Option<String>,
        #[arg(long)]
        boundary: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// Fetch every page, not just the first.
        #[arg(long)]
        all: bool,
    },
    /// Show one account.
    Show { account_id: String },
    /// Create an account.
    Create {
        #[command(flatten)]
        fields: AccountFields,
    },
    /// Change an account; only the fields given change (`""` clears one).
    Update {
        account_id: String,
        #[command(flatten)]
        fields: AccountFields,
    },
}

#[derive(Args)]
struct AccountFields {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    external_id: Option<String>,
    #[arg(long)]
    marketplace: Option<String>,
    #[arg(long)]
    marketplace_account_id: Option<String>,
    #[arg(long)]
    crm_account_id: Option<String>,
    #[arg(long)]
    boundary: Option<String>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    account_executive: Option<String>,
    #[arg(long)]
    csm: Option<String>,
    #[arg(long)]
    tam: Option<String>,
}

impl AccountFields {
    fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                body.insert(key.into(), Value::String(value.clone()));
            }
        };
        put("name", &self.name);
        put("external_id", &self.external_id);
        put("marketplace", &self.marketplace);
        put("marketplace_account_id", &self.marketplace_account_id);
        put("crm_account_id", &self.crm_account_id);
        put("boundary", &self.boundary);
        put("region", &self.region);
        put("status", &self.status);
        let mut owners = serde_json::Map::new();
        for (key, value) in [
            ("account_executive", &self.account_executive),
            ("csm", &self.csm),
            ("tam", &self.tam),
        ] {
            if let Some(value) = value {
                owners.insert(key.into(), Value::String(value.clone()));
            }
        }
        if !owners.is_empty() {
            body.insert("owners".into(), Value::Object(owners));
        }
        Value::Object(body)
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is not a log format (text or json)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("purser: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("purser: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let listen = match &cli.command {
        Command::Serve { listen } | Command::Demo { listen, .. } => listen.clone(),
        _ => None,
    };
    let data_dir = match (&cli.command, &cli.data_dir) {
        (Command::Demo { .. }, None) => Some(PathBuf::from("purser-demo")),
        (_, dir) => dir.clone(),
    };
    let flags = FlagOverrides {
        listen,
        data_dir,
        database_url: cli.database_url.clone(),
        log_format: cli.log_format,
    };
    let config = Config::load(cli.config.as_deref(), &flags)?;
    match cli.command {
        Command::Serve { .. } => {
            purser_app::init_logging(&config);
            commands::run_server(&config).await?;
        }
        Command::Demo { history_days, .. } => {
            purser_app::init_logging(&config);
            commands::run_demo(&config, history_days).await?;
        }
        Command::Config => commands::show_config(&config),
        Command::User(UserCommand::Add {
            username,
            roles,
            clearances,
            residency,
            display_name,
            password_stdin,
        }) => {
            commands::user_add(
                &config,
                UserAdd {
                    username,
                    display_name,
                    roles,
                    clearances,
                    residency,
                    password_stdin,
                },
            )
            .await?;
        }
        Command::Audit(AuditCommand::Verify { against }) => {
            if !commands::audit_verify(&config, against.as_deref()).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Token(TokenCommand::Create {
            username,
            name,
            days,
        }) => commands::token_create(&config, &username, &name, days).await?,
        Command::Audit(AuditCommand::Checkpoint) => commands::audit_checkpoint(&config).await?,
        Command::Account { client, command } => account(client, *command).await?,
        Command::Erp(ErpCommand::Export {
            month,
            account,
            format,
            output,
        }) => {
            purser_app::erp::export(
                &config,
                &month,
                account.as_deref(),
                &format,
                output.as_deref(),
            )
            .await?;
        }
        Command::Crm { client, command } => return crm(client, command).await,
        Command::Ingest {
            file,
            close,
            quiet,
            json,
        } => {
            let summary = purser_app::metering::ingest_file(
                &config,
                &file,
                purser_app::metering::IngestOptions {
                    close,
                    progress: !quiet && !json,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                purser_app::metering::print_ingest_summary(&summary);
            }
        }
        Command::Verify { from, to } => {
            let (from, to) = range(from, to, 24 * 31)?;
            if !purser_app::metering::verify(&config, from, to).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Reconcile {
            from,
            to,
            json,
            full,
        } => {
            let (from, to) = range(from, to, 24 * 31)?;
            if !purser_app::marketplace::reconcile(&config, from, to, json, full).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Submit => {
            let report = purser_app::marketplace::submit_once(&config).await?;
            println!("{}", report.summary());
        }
        Command::Dev(DevCommand::FakeMarketplaces) => {
            purser_app::marketplace::run_fake_marketplaces(&config).await?;
        }
        Command::Evidence {
            account_id,
            hour,
            json,
        } => {
            let hour = instant("--hour", &hour)?;
            purser_app::metering::evidence(&config, &account_id, hour, json).await?;
        }
        Command::Usage {
            account_id,
            from,
            to,
            daily,
            meters,
            name,
            csv,
        } => {
            use purser_store::metering::{Granularity, UsageOf};
            let range = range(from, to, 48)?;
            purser_app::metering::usage(
                &config,
                &account_id,
                range,
                if meters {
                    UsageOf::Meters
                } else {
                    UsageOf::Dimensions
                },
                if daily {
                    Granularity::Day
                } else {
                    Granularity::Hour
                },
                name.as_deref(),
                csv,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn account(client: ClientArgs, command: AccountCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(&client.url, client.token)?;
    let show = |value: &Value| -> anyhow::Result<()> {
        if client.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            commands::print_accounts(std::slice::from_ref(value));
        }
        Ok(())
    };
    match command {
        AccountCommand::List {
            q,
            marketplace,
            boundary,
            status,
            all,
        } => {
            let mut query = url_query(&[
                ("q", &q),
                ("marketplace", &marketplace),
                ("boundary", &boundary),
                ("status", &status),
            ]);
            let mut accounts = Vec::new();
            loop {
                let page = api
                    .send(reqwest::Method::GET, &format!("/v1/accounts?{query}"), None)
                    .await?;
                accounts.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(cursor) if all => {
                        query = format!(
                            "{}&cursor={cursor}",
                            url_query(&[
                                ("q", &q),
                                ("marketplace", &marketplace),
                                ("boundary", &boundary),
                                ("status", &status)
                            ])
                        )
                    }
                    _ => break,
                }
            }
            if client.json {
                println!("{}", serde_json::to_string_pretty(&accounts)?);
            } else {
                commands::print_accounts(&accounts);
            }
        }
        AccountCommand::Show { account_id } => {
            show(
                &api.send(
                    reqwest::Method::GET,
                    &format!("/v1/accounts/{account_id}"),
                    None,
                )
                .await?,
            )?;
        }
        AccountCommand::Create { fields } => {
            show(
                &api.send(
                    reqwest::Method::POST,
                    "/v1/accounts",
                    Some(&fields.to_json()),
                )
                .await?,
            )?;
        }
        AccountCommand::Update { account_id, fields } => {
            let body = fields.to_json();
            if body.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("nothing to change: give at least one field, e.g. --status active");
            }
            show(
                &api.send(
                    reqwest::Method::PATCH,
                    &format!("/v1/accounts/{account_id}"),
                    Some(&json!(body)),
                )
                .await?,
            )
            .context("printing the account")?;
        }
    }
    Ok(())
}

async fn crm(client: ClientArgs, command: CrmCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&client.url, client.token)?;
    match command {
        CrmCommand::Import { file, dry_run } => {
            let body = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let path = format!("/v1/crm/import?dry_run={dry_run}");
            let text = api
                .send_text(reqwest::Method::POST, &path, Some(body))
                .await?;
            if client.json {
                println!("{text}");
            } else {
                let report: Value = serde_json::from_str(&text)?;
                commands::print_import_report(&report);
            }
        }
        CrmCommand::Export { month } => {
            let path = format!("/v1/crm/export?{}", url_query(&[("month", &month)]));
            println!(
                "{}",
                api.send_text(reqwest::Method::GET, &path, None).await?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn instant(flag: &str, value: &str) -> anyhow::Result<jiff::Timestamp> {
    value.trim().parse().with_context(|| {
        format!("{flag} `{value}` is not an RFC 3339 instant (e.g. 2026-11-20T14:00:00Z)")
    })
}

/// `--from` and `--to`, defaulting to the `default_hours` before now.
fn range(
    from: Option<String>,
    to: Option<String>,
    default_hours: i64,
) -> anyhow::Result<(jiff::Timestamp, jiff::Timestamp)> {
    let to = match to {
        Some(to) => instant("--to", &to)?,
        None => jiff::Timestamp::now(),
    };
    let from = match from {
        Some(from) => instant("--from", &from)?,
        None => to - jiff::SignedDuration::from_hours(default_hours),
    };
    if from >= to {
        anyhow::bail!("--from ({from}) must be before --to ({to})");
    }
    Ok((from, to))
}

fn url_query(pairs: &[(&str, &Option<String>)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value {
            serializer.append_pair(key, value);
        }
    }
    serializer.finish()
}
