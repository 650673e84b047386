//! Fake marketplace metering servers for tests: AWS Marketplace Metering (`BatchMeterUsage`),
//! Azure Marketplace metering (usage events, with a fake Entra ID token endpoint) and Google
//! Service Control (`services.check` / `services.report`, with a fake GCE metadata token
//! endpoint); and fakes of the subscription APIs: Google's Partner Procurement
//! ([`procurement`], publishing its notifications to a Pub/Sub emulator, which
//! [`pubsub_emulator`] starts and stops), Azure's SaaS Fulfillment API v2 and its webhook
//! ([`fulfillment`]), and AWS's ResolveCustomer, GetEntitlements and signed SNS
//! notifications ([`aws_saas`]); and Tackle.io's metering API ([`tackle`]), which holds
//! one record an hour and forwards it to the cloud; and fake OIDC issuers ([`oidc`]) for
//! the JWTs Google's Pub/Sub push and Microsoft's webhook calls carry.
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
pub mod aws_saas;
pub mod azure;
pub mod clock;
pub mod contract;
pub mod faults;
pub mod fulfillment;
pub mod gcp;
mod keys;
pub mod oidc;
pub mod procurement;
pub mod pubsub_emulator;
mod server;
mod sigv4;
pub mod tackle;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use aws::{AwsConfig, AwsCounts, AwsCustomer, AwsFake, AwsRecord};
pub use aws_saas::{AwsSaasCustomer, AwsSaasFake, FakeAwsEntitlement, FakeEntitlementValue};
pub use azure::{AzureConfig, AzureCounts, AzureEvent, AzureFake, AzureResource, AzureStatus};
pub use clock::FakeClock;
pub use faults::{Fault, FaultConfig};
pub use fulfillment::{FulfillmentConfig, FulfillmentFake};
pub use gcp::{
    Continuity, GcpConfig, GcpConsumerState, GcpCounts, GcpFake, GcpUsage, GcpValueType,
};
pub use procurement::{EntitlementOrder, ProcurementConfig, ProcurementFake};
pub use pubsub_emulator::PubSubEmulator;
pub use tackle::{TackleConfig, TackleCounts, TackleFake, TackleRecord};

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("a vendored contract could not be read: {0}")]
    Contract(String),
    #[error("the {name} fake could not listen: {source}")]
    Bind {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("the Pub/Sub emulator: {0}")]
    Emulator(String),
    /// A fake could not deliver a notification it publishes (Pub/Sub, webhook, SNS).
    #[error("publishing a notification: {0}")]
    Publish(String),
    /// A test control asked for something the fake's state machine does not allow.
    #[error("{0}")]
    State(String),
}

/// How the fakes are started.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    pub aws: AwsConfig,
    pub azure: AzureConfig,
    pub gcp: GcpConfig,
    /// Google's Partner Procurement (served on its own port).
    pub procurement: ProcurementConfig,
    /// Azure's SaaS Fulfillment API (served beside Azure metering, under `/api`).
    pub fulfillment: FulfillmentConfig,
    /// Tackle.io's metering API (on its own port).
    pub tackle: TackleConfig,
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
    procurement: ProcurementFake,
    procurement_addr: SocketAddr,
    fulfillment: FulfillmentFake,
    aws_entitlement_addr: SocketAddr,
    aws_sns_addr: SocketAddr,
    tackle: TackleFake,
    tackle_addr: SocketAddr,
    google_oidc: oidc::OidcIssuer,
    entra_oidc: oidc::OidcIssuer,
    oidc_addr: SocketAddr,
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
        let (google_oidc, entra_oidc, oidc_router) = oidc::build();
        let (oidc_addr, oidc_task) = server::spawn("oidc", oidc_router, receiver.clone()).await?;
        let (fulfillment, fulfillment_router) = fulfillment::build(
            config.fulfillment.clone(),
            &contracts.fulfillment,
            config.clock.clone(),
            azure.clone(),
            entra_oidc.clone(),
            (
                config.azure.tenant_id.clone(),
                config.azure.client_id.clone(),
            ),
        );
        let azure_router = azure_router.merge(fulfillment_router);
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
            server::spawn("gcp-metadata", metadata_router, receiver.clone()).await?;
        let (procurement, procurement_router) = procurement::build(
            config.procurement.clone(),
            &contracts.procurement,
            config.clock.clone(),
            gcp.clone(),
        );
        let (procurement_addr, procurement_task) =
            server::spawn("gcp-procurement", procurement_router, receiver.clone()).await?;
        let (entitlement_router, sns_router) = aws_saas::build(
            aws.saas().clone(),
            config.aws.clone(),
            &contracts.aws_saas,
            config.clock.clone(),
        );
        let (aws_entitlement_addr, entitlement_task) =
            server::spawn("aws-entitlement", entitlement_router, receiver.clone()).await?;
        let (aws_sns_addr, sns_task) =
            server::spawn("aws-sns", sns_router, receiver.clone()).await?;
        let (tackle, tackle_router) = tackle::build(
            config.tackle.clone(),
            config.clock.clone(),
            config.latency,
            config.faults.clone(),
        );
        let (tackle_addr, tackle_task) = server::spawn("tackle", tackle_router, receiver).await?;
        aws.saas()
            .set_sns_cert_base(&format!("http://{aws_sns_addr}"));
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
            procurement,
            procurement_addr,
            fulfillment,
            aws_entitlement_addr,
            aws_sns_addr,
            tackle,
            tackle_addr,
            google_oidc,
            entra_oidc,
            oidc_addr,
            clock: config.clock,
            shutdown,
            tasks: vec![
                aws_task,
                azure_task,
                login_task,
                gcp_task,
                metadata_task,
                procurement_task,
                entitlement_task,
                sns_task,
                tackle_task,
                oidc_task,
            ],
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

    /// Partner Procurement's root: `GET {procurement_url}/v1/providers/{p}/entitlements/{id}`
    /// (the real one is `https://cloudcommerceprocurement.googleapis.com`). It takes the
    /// GCP fake's token and the metadata server's.
    pub fn procurement_url(&self) -> String {
        format!("http://{}", self.procurement_addr)
    }

    /// The SaaS Fulfillment base is [`Self::azure_url`] (`…/api/saas/subscriptions/…`),
    /// with tokens from [`Self::azure_login_url`].
    pub fn fulfillment_url(&self) -> String {
        self.azure_url()
    }

    /// The AWS Marketplace Entitlement Service endpoint (`POST /`), signed with the AWS
    /// fake's key; ResolveCustomer is on [`Self::aws_url`].
    pub fn aws_entitlement_url(&self) -> String {
        format!("http://{}", self.aws_entitlement_addr)
    }

    /// The prefix of the fake SNS's SigningCertURL, to trust in a verifier under test.
    pub fn aws_sns_cert_prefix(&self) -> String {
        format!("http://{}/", self.aws_sns_addr)
    }

    /// Tackle's API root: `PUT {tackle_url}/v1/metering/usage-records` (the real one
    /// is `https://api.tackle.io`).
    pub fn tackle_url(&self) -> String {
        format!("http://{}", self.tackle_addr)
    }

    /// The fake Google issuer of the OIDC tokens Pub/Sub push attaches.
    pub fn google_oidc(&self) -> &oidc::OidcIssuer {
        &self.google_oidc
    }

    /// Its key set (Google's is `https://www.googleapis.com/oauth2/v3/certs`).
    pub fn google_jwks_url(&self) -> String {
        format!("http://{}{}", self.oidc_addr, oidc::GOOGLE_JWKS_PATH)
    }

    /// The fake Entra ID issuer of the tokens on SaaS webhook calls.
    pub fn entra_oidc(&self) -> &oidc::OidcIssuer {
        &self.entra_oidc
    }

    /// Its key set (Entra's is
    /// `https://login.microsoftonline.com/common/discovery/v2.0/keys`).
    pub fn entra_jwks_url(&self) -> String {
        format!("http://{}{}", self.oidc_addr, oidc::ENTRA_JWKS_PATH)
    }

    pub fn tackle(&self) -> &TackleFake {
        &self.tackle
    }

    pub fn procurement(&self) -> &ProcurementFake {
        &self.procurement
    }

    pub fn fulfillment(&self) -> &FulfillmentFake {
        &self.fulfillment
    }

    /// The AWS SaaS side (also `fakes.aws().saas()`).
    pub fn aws_saas(&self) -> &AwsSaasFake {
        self.aws.saas()
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

/// What [`seed_demo_subscriptions`] created, for printing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoSubscriptions {
    /// A Google entitlement waiting for approval, and its account.
    pub gcp_provider_id: String,
    pub gcp_account_id: String,
    pub gcp_entitlement_id: String,
    /// An Azure purchase waiting for activation and its landing-page token
    /// (`/landing?token=…`).
    pub azure_subscription_id: String,
    pub azure_landing_token: String,
    /// An AWS registration token (`x-amzn-marketplace-token`) and what it resolves to.
    pub aws_registration_token: String,
    pub aws_product_code: String,
    pub aws_account_id: String,
    pub aws_license_arn: String,
}

/// One new subscription per marketplace, for `purser dev fake-marketplaces` and demos:
/// a Google entitlement in ENTITLEMENT_ACTIVATION_REQUESTED (its notifications go to the
/// Pub/Sub topic connected with [`ProcurementFake::connect_pubsub`], if any), an Azure
/// purchase in PendingFulfillmentStart with its landing token, and an AWS registration
/// token with the license's entitlements.
pub async fn seed_demo_subscriptions(
    fakes: &FakeMarketplaces,
) -> Result<DemoSubscriptions, FakeError> {
    let gcp_entitlement_id = fakes
        .procurement()
        .order(EntitlementOrder {
            account_id: "demo-gcp-account".into(),
            product: "purser-storage".into(),
            plan: "standard".into(),
            usage_reporting_id: Some("project_number:123456789012".into()),
            offer: Some("projects/purser-demo/services/purser-storage/privateOffers/demo".into()),
            offer_end_time: None,
        })
        .await?;
    let (azure_subscription_id, azure_landing_token) =
        fakes
            .fulfillment()
            .purchase("purser-storage", "purser-standard", None);
    let product_code = "purserdemo0002".to_owned();
    let account_id = "210987654322".to_owned();
    let license_arn = "arn:aws:license-manager::210987654322:license:l-purserdemo0002".to_owned();
    for dimension in ["storage_gb_hours", "requests"] {
        fakes.aws_saas().add_entitlement(FakeAwsEntitlement {
            product_code: product_code.clone(),
            dimension: dimension.into(),
            customer_identifier: None,
            customer_aws_account_id: Some(account_id.clone()),
            license_arn: Some(license_arn.clone()),
            value: FakeEntitlementValue::Integer(1000),
            expiration_date: None,
        });
    }
    let aws_registration_token = fakes.aws_saas().issue_registration_token(AwsSaasCustomer {
        product_code: product_code.clone(),
        customer_aws_account_id: account_id.clone(),
        license_arn: Some(license_arn.clone()),
        customer_identifier: None,
    });
    Ok(DemoSubscriptions {
        gcp_provider_id: fakes.procurement().provider_id().to_owned(),
        gcp_account_id: "demo-gcp-account".into(),
        gcp_entitlement_id,
        azure_subscription_id: azure_subscription_id.to_string(),
        azure_landing_token,
        aws_registration_token,
        aws_product_code: product_code,
        aws_account_id: account_id,
        aws_license_arn: license_arn,
    })
}
