//! Fake marketplace metering servers for tests: AWS Marketplace Metering (`BatchMeterUsage`),
//! Azure Marketplace metering (usage events, with a fake Entra ID token endpoint) and Google
//! Service Control (`services.check` / `services.report`, with a fake GCE metadata token
//! endpoint).
//!
//! Each fake enforces its provider's published contract, reading the limits from the vendored
//! machine-readable contracts in `/contracts` ([`contract`]), and records everything it
//! accepted, so a test can assert what a marketplace would have billed: every due record
//! accepted exactly once, nothing billed twice, under injected faults ([`FaultConfig`]) and a
//! controllable clock ([`FakeClock`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), purser_fakes::FakeError> {
//! let fakes = purser_fakes::FakeMarketplaces::start(purser_fakes::FakeConfig::default()).await?;
//! fakes.aws().add_license("arn:aws:license-manager::123456789012:license:l-1", "123456789012", &["storage_gb"]);
//! // ... point a client at fakes.aws_url(), then inspect fakes.aws().records()
//! # Ok(()) }
//! ```

// Handlers return early with the marketplace's error response; boxing it on these cold
// paths would only add noise.
#![allow(clippy::result_large_err)]

pub mod aws;
pub mod azure;
pub mod clock;
pub mod contract;
pub mod faults;
pub mod gcp;
mod server;
mod sigv4;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use aws::{AwsConfig, AwsCounts, AwsCustomer, AwsFake, AwsRecord};
pub use azure::{AzureConfig, AzureCounts, AzureEvent, AzureFake, AzureResource, AzureStatus};
pub use clock::FakeClock;
pub use faults::{Fault, FaultConfig};
pub use gcp::{
    Continuity, GcpConfig, GcpConsumerState, GcpCounts, GcpFake, GcpUsage, GcpValueType,
};

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("a vendored contract could not be read: {0}")]
    Contract(String),
    #[error("the {name} fake could not listen: {source}")]
    Bind {
        name: &'static str,
        source: std::io::Error,
    },
}

/// How the fakes are started.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    pub aws: AwsConfig,
    pub azure: AzureConfig,
    pub gcp: GcpConfig,
    /// Added before every answer of every fake (the benchmark uses 50 ms).
    pub latency: Duration,
    /// Faults for all three fakes; each draws from its own stream, so one marketplace's
    /// faults depend only on its own request order.
    pub faults: FaultConfig,
    /// Shared by the fakes; keep a clone to set or advance it.
    pub clock: FakeClock,
}

/// The running fakes. Dropping it stops them.
pub struct FakeMarketplaces {
    aws: AwsFake,
    aws_addr: SocketAddr,
    azure: AzureFake,
    azure_addr: SocketAddr,
    azure_base: String,
    azure_login_addr: SocketAddr,
    gcp: GcpFake,
    gcp_addr: SocketAddr,
    gcp_metadata_addr: SocketAddr,
    clock: FakeClock,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeMarketplaces {
    /// Starts every fake on its own ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeConfig) -> Result<Self, FakeError> {
        let contracts = contract::contracts()?;
        let (shutdown, receiver) = watch::channel(false);
        let (aws, aws_router) = aws::build(
            config.aws.clone(),
            &contracts.aws,
            config.clock.clone(),
            config.latency,
            config.faults.clone(),
        );
        let (aws_addr, aws_task) = server::spawn("aws", aws_router, receiver.clone()).await?;
        let (azure, azure_router, login_router) = azure::build(
            config.azure.clone(),
            &contracts.azure,
            config.clock.clone(),
            config.latency,
            config.faults.clone(),
        );
        let (azure_addr, azure_task) =
            server::spawn("azure", azure_router, receiver.clone()).await?;
        let (azure_login_addr, login_task) =
            server::spawn("azure-login", login_router, receiver.clone()).await?;
        let (gcp, gcp_router, metadata_router) = gcp::build(
            config.gcp.clone(),
            &contracts.gcp,
            config.clock.clone(),
            config.latency,
            config.faults.clone(),
        );
        let (gcp_addr, gcp_task) = server::spawn("gcp", gcp_router, receiver.clone()).await?;
        let (gcp_metadata_addr, metadata_task) =
            server::spawn("gcp-metadata", metadata_router, receiver).await?;
        Ok(Self {
            aws,
            aws_addr,
            azure,
            azure_addr,
            azure_base: contracts.azure.base_path.clone(),
            azure_login_addr,
            gcp,
            gcp_addr,
            gcp_metadata_addr,
            clock: config.clock,
            shutdown,
            tasks: vec![aws_task, azure_task, login_task, gcp_task, metadata_task],
        })
    }

    /// The AWS Marketplace Metering endpoint (`POST /`).
    pub fn aws_url(&self) -> String {
        format!("http://{}", self.aws_addr)
    }

    /// The Azure metering base, `http://127.0.0.1:PORT/api` (the real one is
    /// `https://marketplaceapi.microsoft.com/api`).
    pub fn azure_url(&self) -> String {
        format!("http://{}{}", self.azure_addr, self.azure_base)
    }

    /// The Entra ID authority: tokens from `POST {azure_login_url}/{tenant}/oauth2/token`
    /// (the real one is `https://login.microsoftonline.com`).
    pub fn azure_login_url(&self) -> String {
        format!("http://{}", self.azure_login_addr)
    }

    /// Service Control's root: `POST {gcp_url}/v1/services/{name}:report` (the real one is
    /// `https://servicecontrol.googleapis.com`).
    pub fn gcp_url(&self) -> String {
        format!("http://{}", self.gcp_addr)
    }

    /// The metadata server: `GET {gcp_metadata_url}/computeMetadata/v1/instance/service-accounts/default/token`
    /// (the real one is `http://metadata.google.internal`).
    pub fn gcp_metadata_url(&self) -> String {
        format!("http://{}", self.gcp_metadata_addr)
    }

    pub fn aws(&self) -> &AwsFake {
        &self.aws
    }

    pub fn azure(&self) -> &AzureFake {
        &self.azure
    }

    pub fn gcp(&self) -> &GcpFake {
        &self.gcp
    }

    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }

    /// Stops the fakes and waits for their listeners to close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for FakeMarketplaces {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Runs the fakes until `shutdown` resolves (for `purser dev fake-marketplaces`): `started`
/// sees them first, to seed a registry and print their addresses.
pub async fn run_until<F>(
    config: FakeConfig,
    started: impl FnOnce(&FakeMarketplaces),
    shutdown: F,
) -> Result<(), FakeError>
where
    F: Future<Output = ()>,
{
    let fakes = FakeMarketplaces::start(config).await?;
    started(&fakes);
    shutdown.await;
    fakes.shutdown().await;
    Ok(())
}

/// What [`seed_demo`] registered, for printing and for pointing a client at it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoRegistry {
    pub aws_license_arn: String,
    pub aws_account_id: String,
    pub aws_product_code: String,
    pub aws_customer_identifier: String,
    pub aws_dimensions: Vec<String>,
    pub azure_subscription_id: String,
    pub azure_plan_id: String,
    pub azure_dimensions: Vec<String>,
    pub gcp_service: String,
    pub gcp_consumer_id: String,
    pub gcp_metrics: Vec<String>,
}

/// Registers one customer per marketplace with storage-metering dimensions, for
/// `purser dev fake-marketplaces` and demos.
pub fn seed_demo(fakes: &FakeMarketplaces) -> DemoRegistry {
    let dimensions = ["storage_gb_hours", "requests"];
    let demo = DemoRegistry {
        aws_license_arn: "arn:aws:license-manager::123456789012:license:l-purserdemo0001".into(),
        aws_account_id: "210987654321".into(),
        aws_product_code: "purserdemo0001".into(),
        aws_customer_identifier: "cust-purser-demo".into(),
        aws_dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
        azure_subscription_id: "6c7b9f52-5a7e-4b7e-9d3c-2f0c1b1a0d01".into(),
        azure_plan_id: "purser-standard".into(),
        azure_dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
        gcp_service: "purser-demo.endpoints.purser-fake-project.cloud.goog".into(),
        gcp_consumer_id: "project_number:123456789012".into(),
        gcp_metrics: dimensions.iter().map(|d| (*d).to_owned()).collect(),
    };
    fakes
        .aws()
        .add_license(&demo.aws_license_arn, &demo.aws_account_id, &dimensions);
    fakes.aws().add_product(&demo.aws_product_code, &dimensions);
    fakes
        .aws()
        .add_customer(&demo.aws_customer_identifier, &demo.aws_product_code);
    fakes.azure().add_subscription(
        &demo.azure_subscription_id,
        &demo.azure_plan_id,
        &dimensions,
    );
    fakes.gcp().add_service(&demo.gcp_service);
    fakes
        .gcp()
        .add_metric(&demo.gcp_service, "storage_gb_hours", GcpValueType::Double);
    fakes
        .gcp()
        .add_metric(&demo.gcp_service, "requests", GcpValueType::Int64);
    fakes
        .gcp()
        .add_consumer(&demo.gcp_service, &demo.gcp_consumer_id);
    demo
}
