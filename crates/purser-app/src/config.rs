//! Purser's configuration: a TOML file, then `PURSER_*` environment variables, then
//! command-line flags, each overriding the one before. An unknown key anywhere is an
//! error naming it: a misspelt setting silently ignored is a production incident.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Environment variables with the `PURSER_` prefix that are not configuration keys:
/// the CLI's own connection to a running server, and the config file's path.
const NOT_CONFIG: [&str; 3] = ["api_url", "api_token", "config"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Where the embedded SQLite database lives when no `database_url` is set.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; when set, Purser uses PostgreSQL instead of SQLite.
    pub database_url: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter: `info`, `purser_http=debug,info`, …
    pub log_level: String,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// How long a page session lasts, in hours.
    pub session_hours: i64,
    /// Mark cookies `Secure`; set it when Purser is served over HTTPS.
    pub cookie_secure: bool,
    /// The longest lifetime of a new API token, in days.
    pub token_max_days: i64,
    pub jobs: JobsConfig,
    pub metering: MeteringConfig,
    /// Endpoints and credentials of the marketplaces usage is reported to.
    pub marketplaces: crate::marketplace::MarketplacesConfig,
    /// Where subscriptions come from: each marketplace's subscription API and channel.
    pub subscriptions: crate::subscriptions::SubscriptionsConfig,
    /// The ERP export.
    pub erp: ErpConfig,
}

/// The ERP export: what each marketplace keeps of the charges it bills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErpConfig {
    /// Marketplace (`gcp`, `azure`, `aws`) → the share it keeps, a decimal string
    /// (`"0.03"` for 3%). A marketplace not listed has no fee line.
    pub marketplace_fee: std::collections::BTreeMap<String, String>,
}

impl ErpConfig {
    pub fn fee_rates(&self) -> Result<purser_core::invoice::FeeRates, ConfigError> {
        purser_core::invoice::FeeRates::parse(&self.marketplace_fee).map_err(|e| {
            ConfigError(
                e.errors
                    .iter()
                    .map(|f| format!("erp.{}: {}", f.field, f.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

/// Usage events: how long hours stay open and which events are too old or too new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// How long after its end an hour stays open for late events, in minutes.
    pub grace_minutes: i64,
    /// Events older than this many hours are refused.
    pub max_event_age_hours: i64,
    /// Events further ahead than this many minutes are refused (clock skew).
    pub max_future_skew_minutes: i64,
    /// Meters declared here are defined at start-up when missing; one that exists
    /// with another definition is an error (meters never change once defined).
    pub meters: Vec<purser_core::meter::MeterDraft>,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        let defaults = purser_store::metering::MeteringSettings::default();
        MeteringConfig {
            grace_minutes: defaults.grace.as_mins(),
            max_event_age_hours: defaults.max_event_age.as_hours(),
            max_future_skew_minutes: defaults.max_future_skew.as_mins(),
            meters: Vec::new(),
        }
    }
}

impl MeteringConfig {
    pub fn settings(&self) -> purser_store::metering::MeteringSettings {
        purser_store::metering::MeteringSettings {
            grace: jiff::SignedDuration::from_mins(self.grace_minutes.max(0)),
            max_event_age: jiff::SignedDuration::from_hours(self.max_event_age_hours.max(1)),
            max_future_skew: jiff::SignedDuration::from_mins(self.max_future_skew_minutes.max(0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run periodic jobs in this process.
    pub enabled: bool,
    /// How long a claimed run is leased before another process may take it over.
    pub lease_seconds: i64,
    /// Period of `sessions.prune`.
    pub session_prune_seconds: i64,
    /// Period of `audit.verify`.
    pub audit_verify_seconds: i64,
    /// Period of `metering.close_hours`.
    pub close_hours_seconds: i64,
    /// Period of `marketplace.submit`.
    pub marketplace_submit_seconds: i64,
    /// Period of `marketplace.subscriptions` (pull notifications, act on stored ones).
    pub marketplace_subscriptions_seconds: i64,
    /// Period of `erp.export` (keeps each month's export once its last hour is closed).
    pub erp_export_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("purser-data"),
            database_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            session_hours: 12,
            cookie_secure: false,
            token_max_days: 365,
            jobs: JobsConfig::default(),
            metering: MeteringConfig::default(),
            marketplaces: crate::marketplace::MarketplacesConfig::default(),
            subscriptions: crate::subscriptions::SubscriptionsConfig::default(),
            erp: ErpConfig::default(),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enabled: true,
            lease_seconds: 60,
            session_prune_seconds: 300,
            audit_verify_seconds: 3_600,
            close_hours_seconds: 60,
            marketplace_submit_seconds: 60,
            marketplace_subscriptions_seconds: 30,
            erp_export_seconds: 3_600,
        }
    }
}

/// Settings given as flags; only those present override.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads the configuration. `file` must exist when given; without it,
    /// `purser.toml` in the working directory is read if present.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        Self::load_from(file, flags, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_from(
        file: Option<&Path>,
        flags: &FlagOverrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "the file {} does not exist",
                    path.display()
                )));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => {
                let default = Path::new("purser.toml");
                if default.exists() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        // Unknown PURSER_ variables are reported by name, as the key they would set.
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(key, value)| {
                let rest = key.strip_prefix("PURSER_")?;
                let name = rest.to_lowercase();
                (!NOT_CONFIG.contains(&name.as_str())).then_some((name, value))
            })
            .collect();
        for (name, value) in &env {
            // The environment is an argument so tests can give their own; `__` nests
            // (`PURSER_JOBS__LEASE_SECONDS` sets `jobs.lease_seconds`).
            let path = name.replace("__", ".");
            figment = figment.merge(Serialized::global(&path, env_value(value)));
        }
        figment = figment.merge(Serialized::globals(flags));
        figment
            .extract::<Config>()
            .map_err(|error| {
                let mut message = error.to_string();
                if let Some(figment::Source::File(path)) =
                    error.metadata.as_ref().and_then(|m| m.source.as_ref())
                {
                    message = format!("{message} (in {})", path.display());
                }
                ConfigError(message)
            })
            .and_then(Config::validate)
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "listen: `{}` is not an address such as 127.0.0.1:8080",
                self.listen
            ));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            problems.push("database_url: must be a postgres:// URL".to_owned());
        }
        if self.max_body_bytes < 1024 {
            problems.push("max_body_bytes: must be at least 1024".to_owned());
        }
        if !(1..=24 * 30).contains(&self.session_hours) {
            problems.push("session_hours: must be between 1 and 720".to_owned());
        }
        if !(1..=3650).contains(&self.token_max_days) {
            problems.push("token_max_days: must be between 1 and 3650".to_owned());
        }
        let jobs = &self.jobs;
        for (name, value) in [
            ("jobs.lease_seconds", jobs.lease_seconds),
            ("jobs.session_prune_seconds", jobs.session_prune_seconds),
            ("jobs.audit_verify_seconds", jobs.audit_verify_seconds),
            ("jobs.erp_export_seconds", jobs.erp_export_seconds),
        ] {
            if value < 1 {
                problems.push(format!("{name}: must be at least 1"));
            }
        }
        if let Err(ConfigError(problem)) = self.erp.fee_rates() {
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError(problems.join("; ")))
        }
    }

    /// Where the data lives.
    pub fn location(&self) -> purser_store::Location {
        match &self.database_url {
            Some(url) => purser_store::Location::Postgres(url.clone()),
            None => purser_store::Location::sqlite_in(&self.data_dir),
        }
    }

    /// The configuration as TOML, with secrets masked, for `purser config`.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = shown
            .database_url
            .map(|url| purser_store::db::redact_url(&url));
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

/// Environment values are text; booleans and numbers are recognised so that
/// `PURSER_COOKIE_SECURE=true` sets a boolean.
fn env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(b) = value.parse::<bool>() {
        return Value::from(b);
    }
    if let Ok(n) = value.parse::<i64>() {
        return Value::from(n);
    }
    Value::from(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::fs::write(file.path(), contents).expect("write");
        file
    }

    #[test]
    fn azure_subscriptions_with_their_webhook_table_load_through_the_layers() {
        let f = file(
            "[subscriptions.azure]\ntenant_id = \"t-1\"\nclient_id = \"app-1\"\nclient_secret = \"s\"\nrequest_timeout_ms = 2500\n[subscriptions.azure.webhook]\nverify_token = false\n",
        );
        let config =
            Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[])).expect("valid");
        let azure = config.subscriptions.azure.expect("azure");
        assert_eq!(azure.api.request_timeout_ms, 2500);
        assert!(!azure.webhook.verify_token);
        let f = file(
            "[subscriptions.azure]\ntenant_id = \"t-1\"\nclient_id = \"app-1\"\nclient_secret = \"s\"\n[subscriptions.azure.webhook]\nverifytoken = false\n",
        );
        let error = Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[]))
            .expect_err("a misspelt key");
        assert!(error.to_string().contains("verifytoken"), "{error}");
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        let f = file(
            "listen = \"127.0.0.1:1000\"\nlog_level = \"debug\"\nsession_hours = 2\n[jobs]\nlease_seconds = 10\n",
        );
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:3000".into()),
            ..Default::default()
        };
        let config = Config::load_from(
            Some(f.path()),
            &flags,
            env(&[
                ("PURSER_LISTEN", "127.0.0.1:2000"),
                ("PURSER_LOG_LEVEL", "warn"),
                ("PURSER_JOBS__LEASE_SECONDS", "20"),
                ("HOME", "/root"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.listen, "127.0.0.1:3000", "flag wins");
        assert_eq!(config.log_level, "warn", "environment beats file");
        assert_eq!(config.session_hours, 2, "file beats default");
        assert_eq!(
            config.jobs.lease_seconds, 20,
            "nested keys from the environment"
        );
        assert_eq!(
            config.jobs.session_prune_seconds, 300,
            "defaults fill the rest"
        );
    }

    #[test]
    fn marketplace_fees_are_read_exactly_and_checked() {
        let f = file("[erp.marketplace_fee]\ngcp = \"0.03\"\naws = \"0.015\"\n");
        let config =
            Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[])).expect("valid");
        let rates = config.erp.fee_rates().expect("rates");
        assert_eq!(
            rates
                .rate(purser_core::Marketplace::Aws)
                .map(|r| r.to_string()),
            Some("0.015".into())
        );
        assert_eq!(rates.rate(purser_core::Marketplace::Azure), None);
        let f = file("[erp.marketplace_fee]\ndirect = \"0.1\"\ngcp = \"3%\"\n");
        let error = Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[]))
            .expect_err("invalid");
        let message = error.to_string();
        assert!(
            message.contains("erp.marketplace_fee.direct")
                && message.contains("erp.marketplace_fee.gcp"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_wherever_they_come_from() {
        let f = file("listen = \"127.0.0.1:1000\"\nlisten_port = 9\n");
        let error = Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[]))
            .expect_err("unknown key");
        assert!(error.to_string().contains("listen_port"), "{error}");

        let error = Config::load_from(
            None,
            &FlagOverrides::default(),
            env(&[("PURSER_DATABSE_URL", "postgres://x")]),
        )
        .expect_err("misspelt variable");
        assert!(error.to_string().contains("databse_url"), "{error}");

        let f = file("[jobs]\nleese_seconds = 5\n");
        let error = Config::load_from(Some(f.path()), &FlagOverrides::default(), env(&[]))
            .expect_err("unknown nested key");
        assert!(error.to_string().contains("leese_seconds"), "{error}");

        // The CLI's own variables are not configuration.
        Config::load_from(
            None,
            &FlagOverrides::default(),
            env(&[
                ("PURSER_API_TOKEN", "psr_x"),
                ("PURSER_API_URL", "http://x"),
            ]),
        )
        .expect("not config keys");
    }

    #[test]
    fn values_are_checked() {
        let error = Config::load_from(
            None,
            &FlagOverrides::default(),
            env(&[
                ("PURSER_LISTEN", "localhost"),
                ("PURSER_SESSION_HOURS", "0"),
            ]),
        )
        .expect_err("invalid");
        assert!(error.to_string().contains("listen"), "{error}");
        assert!(error.to_string().contains("session_hours"), "{error}");
        let error = Config::load_from(
            Some(Path::new("/no/such/purser.toml")),
            &FlagOverrides::default(),
            env(&[]),
        )
        .expect_err("missing file");
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let config = Config::load_from(
            None,
            &FlagOverrides {
                database_url: Some("postgres://purser:hunter2@db/purser".into()),
                ..Default::default()
            },
            env(&[]),
        )
        .expect("valid");
        let printed = config.to_masked_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://purser:***@db/purser"),
            "{printed}"
        );
    }
}
