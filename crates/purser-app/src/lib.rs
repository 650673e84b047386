//! Purser's application wiring: configuration, logging, the server's life cycle, the
//! scheduler, the demo data set, and the commands the CLI runs. The `purser` binary
//! parses arguments and calls [`commands`]; everything else is here or below.

pub mod commands;
pub mod config;
pub mod demo;
pub mod erp;
pub mod jobs;
pub mod marketplace;
pub mod metering;
pub mod subscriptions;

use std::net::SocketAddr;

use purser_http::{AppState, HttpSettings};
use purser_store::{OpenMode, Store};
use tokio::sync::watch;

pub use config::{Config, FlagOverrides};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] purser_store::StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Sets up structured logs (text or JSON) on standard error.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

pub async fn open_store(config: &Config, mode: OpenMode) -> Result<Store, AppError> {
    let store = Store::open(&config.location(), mode).await?;
    if mode == OpenMode::Write {
        define_configured_meters(&store, &config.metering.meters).await?;
    }
    Ok(store)
}

/// Defines the meters the configuration declares that do not exist yet. A declared
/// meter that exists with another definition stops start-up: meters never change,
/// and silently keeping the old rule would bill by a rule nobody sees in the file.
async fn define_configured_meters(
    store: &Store,
    drafts: &[purser_core::meter::MeterDraft],
) -> Result<(), AppError> {
    if drafts.is_empty() {
        return Ok(());
    }
    let existing = store.meters().await?;
    let actor = purser_core::audit::Actor::new("system:configuration", None);
    for (index, draft) in drafts.iter().enumerate() {
        let meter = draft.validate().map_err(|e| {
            AppError::Invalid(format!("configuration: metering.meters[{index}]: {e}"))
        })?;
        match existing.iter().find(|m| m.name == meter.name) {
            Some(defined) if *defined == meter => {}
            Some(_) => {
                return Err(AppError::Invalid(format!(
                    "configuration: metering.meters[{index}]: the meter `{}` is already defined differently; meters never change once defined, so give the new rule a new name",
                    meter.name
                )));
            }
            None => store.create_meter(&actor, &meter).await?,
        }
    }
    Ok(())
}

fn http_settings(config: &Config) -> HttpSettings {
    HttpSettings {
        max_body_bytes: config.max_body_bytes,
        session_ttl: jiff::SignedDuration::from_hours(config.session_hours),
        cookie_secure: config.cookie_secure,
        token_max_days: config.token_max_days,
        metering: config.metering.settings(),
        // Validated when the configuration was loaded.
        erp_fees: config.erp.fee_rates().unwrap_or_default(),
    }
}

/// Serves until SIGINT or SIGTERM, then stops taking connections, finishes the
/// requests in flight and the job run in progress, and returns. `on_listening` is
/// called with the bound address once the server accepts connections.
pub async fn serve(
    config: &Config,
    store: Store,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), AppError> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| AppError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let address = listener.local_addr()?;
    let subscriptions = subscriptions::SubscriptionProcessor::from_config(&config.subscriptions)?;
    let mut state = AppState::new(store.clone(), http_settings(config));
    if !subscriptions.is_empty() {
        state = state.with_intake(std::sync::Arc::new(subscriptions::DeskIntake {
            processor: subscriptions.clone(),
        }));
    }
    let (router, _, _) = purser_http::build(state);
    let (stop_jobs, jobs_stopped) = watch::channel(false);
    let owner = jobs::owner_name();
    let submitter = marketplace::Submitter::from_config(&config.marketplaces, owner.clone())?;
    tracing::info!(routes = ?submitter.routes(), "marketplace submission is configured for these marketplaces and routes");
    tracing::info!(marketplaces = ?subscriptions.marketplaces(), "subscriptions are taken from these marketplaces");
    let scheduler = config.jobs.enabled.then(|| {
        let scheduler = jobs::Scheduler {
            store: store.clone(),
            jobs: {
                let mut jobs = jobs::standard_jobs(
                    &config.jobs,
                    config.metering.settings(),
                    submitter,
                    subscriptions,
                );
                jobs.push(erp::export_job(
                    config.jobs.erp_export_seconds,
                    config.erp.fee_rates().unwrap_or_default(),
                ));
                jobs
            },
            owner,
            lease: jiff::SignedDuration::from_secs(config.jobs.lease_seconds),
        };
        tracing::info!(owner = %scheduler.owner, "periodic jobs run in this process");
        tokio::spawn(scheduler.run(jobs_stopped))
    });
    on_listening(address);
    tracing::info!(%address, location = %config.location().describe(), "Purser is serving");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop_jobs.send(true);
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    tracing::info!("Purser stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
