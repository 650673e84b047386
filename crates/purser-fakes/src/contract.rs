//! The limits the fakes enforce, read from the providers' vendored machine-readable
//! contracts (`/contracts`, see its README for versions), so a new version of a contract
//! changes what the fakes accept and the tests say what no longer agrees.
//!
//! - AWS: botocore's service model `aws/meteringmarketplace.service-2.json` (2016-01-14).
//! - Azure: the OpenAPI document `azure/meteringapi.v1.json` (2018-08-31).
//! - Google: the discovery document `gcp/servicecontrol.v1.json`.
//! - Subscriptions: `gcp/cloudcommerceprocurement.v1.json` (Partner Procurement),
//!   `azure/saasapi.v2.json` (SaaS Fulfillment v2), and ResolveCustomer in the metering
//!   model with `aws/marketplace-entitlement.service-2.json` (GetEntitlements).

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use crate::FakeError;

const AWS_MODEL: &str = include_str!("../../../contracts/aws/meteringmarketplace.service-2.json");
const AZURE_OPENAPI: &str = include_str!("../../../contracts/azure/meteringapi.v1.json");
const GCP_DISCOVERY: &str = include_str!("../../../contracts/gcp/servicecontrol.v1.json");
const PROCUREMENT_DISCOVERY: &str =
    include_str!("../../../contracts/gcp/cloudcommerceprocurement.v1.json");
const SAAS_OPENAPI: &str = include_str!("../../../contracts/azure/saasapi.v2.json");
const ENTITLEMENT_MODEL: &str =
    include_str!("../../../contracts/aws/marketplace-entitlement.service-2.json");

/// A botocore string shape's constraints: `min`/`max` are lengths in characters, `pattern`
/// a regular expression the whole value must match (botocore anchors its own patterns).
#[derive(Debug, Clone)]
pub struct StringShape {
    pub name: String,
    pub min: Option<usize>,
    pub max: Option<usize>,
    pub pattern: Option<Regex>,
}

impl StringShape {
    /// The ValidationException text AWS uses for a failed constraint, or `None` when `value`
    /// satisfies the shape.
    pub fn violation(&self, value: &str, at: &str) -> Option<String> {
        let len = value.chars().count();
        if let Some(min) = self.min.filter(|min| len < *min) {
            return Some(format!(
                "Value '{value}' at '{at}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
            ));
        }
        if let Some(max) = self.max.filter(|max| len > *max) {
            return Some(format!(
                "Value '{value}' at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"
            ));
        }
        if let Some(pattern) = self.pattern.as_ref().filter(|p| !p.is_match(value)) {
            return Some(format!(
                "Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy regular expression pattern: {}",
                pattern.as_str()
            ));
        }
        None
    }
}

/// What the fake AWS Marketplace Metering Service takes from botocore's model.
#[derive(Debug, Clone)]
pub struct AwsContract {
    /// `metadata.targetPrefix`: `X-Amz-Target` is `<prefix>.BatchMeterUsage`.
    pub target_prefix: String,
    /// `metadata.signingName`: the SigV4 service name.
    pub signing_name: String,
    /// `metadata.jsonVersion`: the content type is `application/x-amz-json-<version>`.
    pub json_version: String,
    /// `UsageRecordList` min/max (0..25).
    pub records_min: usize,
    pub records_max: usize,
    /// `BatchMeterUsageRequest.required`.
    pub request_required: Vec<String>,
    /// `UsageRecord.required` (Timestamp, Dimension).
    pub record_required: Vec<String>,
    pub product_code: StringShape,
    pub customer_identifier: StringShape,
    pub customer_account_id: StringShape,
    pub license_arn: StringShape,
    pub dimension: StringShape,
    /// `UsageQuantityAsDecimalString` (pattern `^(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$`).
    pub quantity_decimal: StringShape,
    /// `UsageQuantity` min/max (integer).
    pub quantity_min: i64,
    pub quantity_max: i64,
    /// `UsageAllocations` min/max.
    pub allocations_min: usize,
    pub allocations_max: usize,
    /// `TagList` min/max, `TagKey`, `TagValue`.
    pub tags_min: usize,
    pub tags_max: usize,
    pub tag_key: StringShape,
    pub tag_value: StringShape,
    /// `UsageRecordResultStatus` enum.
    pub result_statuses: Vec<String>,
    /// The error shapes `BatchMeterUsage` may answer with.
    pub errors: Vec<String>,
}

/// What the fake Azure metering service takes from the OpenAPI document.
#[derive(Debug, Clone)]
pub struct AzureContract {
    /// `servers[0].url`'s path (`/api`).
    pub base_path: String,
    /// `ApiVersion` enum.
    pub api_versions: Vec<String>,
    /// `BatchUsageEvent.request` minItems/maxItems (1..25).
    pub batch_min: usize,
    pub batch_max: usize,
    /// `UsageEvent.properties`.
    pub event_properties: Vec<String>,
    /// `UsageEvent.required`, which the vendored document leaves empty; the prose API page
    /// (learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis,
    /// read 2026-11-23) requires every field, with resourceId or resourceUri as the id.
    pub event_required: Vec<String>,
    /// `StatusEnum`.
    pub statuses: Vec<String>,
    /// `ReconStatus`.
    pub recon_statuses: Vec<String>,
}

/// What the fake Service Control takes from the discovery document.
#[derive(Debug, Clone)]
pub struct GcpContract {
    pub revision: String,
    /// `services.check` / `services.report` paths (`v1/services/{serviceName}:check`).
    pub check_path: String,
    pub report_path: String,
    /// `ReportRequest.operations`' description: "the ReportRequest size should be no larger
    /// than 1MB". Read from that text, in bytes (1 MB = 1,000,000: the stricter reading).
    pub report_max_bytes: usize,
    /// `CheckError.code` enum; the fake's codes are checked to be in it.
    pub check_error_codes: Vec<String>,
}

/// What the fake Partner Procurement takes from its discovery document.
#[derive(Debug, Clone)]
pub struct ProcurementContract {
    pub revision: String,
    /// `parameters.name.pattern` of entitlements.get (`^providers/[^/]+/entitlements/[^/]+$`).
    pub entitlement_name: Regex,
    /// Of accounts.get (`^providers/[^/]+/accounts/[^/]+$`).
    pub account_name: Regex,
    /// `Entitlement.state`, `Account.state`, `Approval.state` enums.
    pub entitlement_states: Vec<String>,
    pub account_states: Vec<String>,
    pub approval_states: Vec<String>,
    /// The properties each request schema allows (Google refuses unknown names:
    /// "Invalid JSON payload received. Unknown name").
    pub request_properties: std::collections::BTreeMap<String, Vec<String>>,
    /// Method name (`entitlements.approve`) → its request schema (`ApproveEntitlementRequest`).
    pub method_requests: std::collections::BTreeMap<String, String>,
    /// The `Entitlement` and `Account` schemas' property names (what a GET may answer).
    pub entitlement_properties: Vec<String>,
    pub account_properties: Vec<String>,
}

/// What the fake SaaS Fulfillment API takes from the OpenAPI document.
#[derive(Debug, Clone)]
pub struct FulfillmentContract {
    pub base_path: String,
    pub api_versions: Vec<String>,
    /// `Subscription.saasSubscriptionStatus` enum.
    pub subscription_statuses: Vec<String>,
    /// `SaaSOperation.action` and `.status` enums.
    pub operation_actions: Vec<String>,
    pub operation_statuses: Vec<String>,
    /// `UpdateOperation.status` enum (Success, Failure).
    pub update_statuses: Vec<String>,
    /// Property names of `SubscriberPlan`, `UpdateOperation`, `Subscription`,
    /// `SaaSOperation`, `ResolvedSubscription`.
    pub subscriber_plan: Vec<String>,
    pub update_operation: Vec<String>,
    pub subscription: Vec<String>,
    pub operation: Vec<String>,
    pub resolved: Vec<String>,
    /// Every path of the document (`/saas/subscriptions/{subscriptionId}/activate`, …).
    pub paths: Vec<String>,
}

/// What the fake AWS SaaS services take from botocore's models.
#[derive(Debug, Clone)]
pub struct AwsSaasContract {
    /// `AWSMPMeteringService` (ResolveCustomer lives in the metering service).
    pub metering_target_prefix: String,
    /// `AWSMPEntitlementService`.
    pub entitlement_target_prefix: String,
    /// Both services' `signingName`.
    pub entitlement_signing_name: String,
    pub entitlement_json_version: String,
    /// `ResolveCustomerRequest.required`, `ResolveCustomerResult` members.
    pub resolve_required: Vec<String>,
    pub resolve_result_members: Vec<String>,
    /// `NonEmptyString` of the metering model (the RegistrationToken).
    pub registration_token: StringShape,
    /// ResolveCustomer's error shapes.
    pub resolve_errors: Vec<String>,
    /// `GetEntitlementsRequest.required`, members, `GetEntitlementFilterName` enum,
    /// `PageSizeInteger` min/max, `ProductCode` (entitlement model).
    pub entitlements_required: Vec<String>,
    pub entitlements_members: Vec<String>,
    pub filter_names: Vec<String>,
    pub page_min: usize,
    pub page_max: usize,
    pub product_code: StringShape,
    /// `Entitlement` members (what an answer may hold).
    pub entitlement_members: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Contracts {
    pub aws: AwsContract,
    pub azure: AzureContract,
    pub gcp: GcpContract,
    pub procurement: ProcurementContract,
    pub fulfillment: FulfillmentContract,
    pub aws_saas: AwsSaasContract,
}

/// The contracts, parsed once.
pub fn contracts() -> Result<&'static Contracts, FakeError> {
    static CONTRACTS: OnceLock<Result<Contracts, String>> = OnceLock::new();
    CONTRACTS
        .get_or_init(|| load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|message| FakeError::Contract(message.clone()))
}

fn load() -> Result<Contracts, FakeError> {
    let metering_model = parse(AWS_MODEL, "aws")?;
    Ok(Contracts {
        aws: load_aws(&metering_model)?,
        azure: load_azure(&parse(AZURE_OPENAPI, "azure")?)?,
        gcp: load_gcp(&parse(GCP_DISCOVERY, "gcp")?)?,
        procurement: load_procurement(&parse(PROCUREMENT_DISCOVERY, "procurement")?)?,
        fulfillment: load_fulfillment(&parse(SAAS_OPENAPI, "saas")?)?,
        aws_saas: load_aws_saas(&metering_model, &parse(ENTITLEMENT_MODEL, "entitlement")?)?,
    })
}

fn keys_at(doc: &Value, path: &[&str]) -> Result<Vec<String>, FakeError> {
    match at(doc, path)? {
        Value::Object(map) => Ok(map.keys().cloned().collect()),
        _ => Err(FakeError::Contract(format!(
            "{} is not an object",
            path.join(".")
        ))),
    }
}

fn regex_at(doc: &Value, path: &[&str]) -> Result<Regex, FakeError> {
    let pattern = str_at(doc, path)?;
    Regex::new(&pattern).map_err(|e| FakeError::Contract(format!("{}: {e}", path.join("."))))
}

fn load_procurement(d: &Value) -> Result<ProcurementContract, FakeError> {
    let providers = at(d, &["resources", "providers", "resources"])?;
    let mut method_requests = std::collections::BTreeMap::new();
    for collection in ["accounts", "entitlements"] {
        if let Value::Object(methods) = at(providers, &[collection, "methods"])? {
            for (name, method) in methods {
                if let Some(request) = method
                    .get("request")
                    .and_then(|r| r.get("$ref"))
                    .and_then(Value::as_str)
                {
                    method_requests.insert(format!("{collection}.{name}"), request.to_owned());
                }
            }
        }
    }
    let mut request_properties = std::collections::BTreeMap::new();
    for schema in method_requests.values() {
        let props = match at(d, &["schemas", schema, "properties"]) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        request_properties.insert(schema.clone(), props);
    }
    Ok(ProcurementContract {
        revision: str_at(d, &["revision"])?,
        entitlement_name: regex_at(
            providers,
            &[
                "entitlements",
                "methods",
                "get",
                "parameters",
                "name",
                "pattern",
            ],
        )?,
        account_name: regex_at(
            providers,
            &[
                "accounts",
                "methods",
                "get",
                "parameters",
                "name",
                "pattern",
            ],
        )?,
        entitlement_states: strings_at(
            d,
            &["schemas", "Entitlement", "properties", "state", "enum"],
        )?,
        account_states: strings_at(d, &["schemas", "Account", "properties", "state", "enum"])?,
        approval_states: strings_at(d, &["schemas", "Approval", "properties", "state", "enum"])?,
        request_properties,
        method_requests,
        entitlement_properties: keys_at(d, &["schemas", "Entitlement", "properties"])?,
        account_properties: keys_at(d, &["schemas", "Account", "properties"])?,
    })
}

fn load_fulfillment(doc: &Value) -> Result<FulfillmentContract, FakeError> {
    let server = str_at(doc, &["servers", "0", "url"])?;
    let base_path = server
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_default();
    let schemas = at(doc, &["components", "schemas"])?;
    Ok(FulfillmentContract {
        base_path,
        api_versions: strings_at(schemas, &["ApiVersion", "enum"])?,
        subscription_statuses: strings_at(
            schemas,
            &[
                "Subscription",
                "properties",
                "saasSubscriptionStatus",
                "enum",
            ],
        )?,
        operation_actions: strings_at(schemas, &["SaaSOperation", "properties", "action", "enum"])?,
        operation_statuses: strings_at(
            schemas,
            &["SaaSOperation", "properties", "status", "enum"],
        )?,
        update_statuses: strings_at(
            schemas,
            &["UpdateOperation", "properties", "status", "enum"],
        )?,
        subscriber_plan: keys_at(schemas, &["SubscriberPlan", "properties"])?,
        update_operation: keys_at(schemas, &["UpdateOperation", "properties"])?,
        subscription: keys_at(schemas, &["Subscription", "properties"])?,
        operation: keys_at(schemas, &["SaaSOperation", "properties"])?,
        resolved: keys_at(schemas, &["ResolvedSubscription", "properties"])?,
        paths: keys_at(doc, &["paths"])?,
    })
}

fn load_aws_saas(metering: &Value, e: &Value) -> Result<AwsSaasContract, FakeError> {
    let resolve_errors = match at(metering, &["operations", "ResolveCustomer", "errors"])? {
        Value::Array(items) => items
            .iter()
            .filter_map(|e| e.get("shape").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(AwsSaasContract {
        metering_target_prefix: str_at(metering, &["metadata", "targetPrefix"])?,
        entitlement_target_prefix: str_at(e, &["metadata", "targetPrefix"])?,
        entitlement_signing_name: str_at(e, &["metadata", "signingName"])?,
        entitlement_json_version: str_at(e, &["metadata", "jsonVersion"])?,
        resolve_required: strings_at(metering, &["shapes", "ResolveCustomerRequest", "required"])?,
        resolve_result_members: keys_at(metering, &["shapes", "ResolveCustomerResult", "members"])?,
        registration_token: aws_string(metering, "NonEmptyString")?,
        resolve_errors,
        entitlements_required: strings_at(e, &["shapes", "GetEntitlementsRequest", "required"])?,
        entitlements_members: keys_at(e, &["shapes", "GetEntitlementsRequest", "members"])?,
        filter_names: strings_at(e, &["shapes", "GetEntitlementFilterName", "enum"])?,
        page_min: usize_at(e, &["shapes", "PageSizeInteger", "min"])?,
        page_max: usize_at(e, &["shapes", "PageSizeInteger", "max"])?,
        product_code: aws_string(e, "ProductCode")?,
        entitlement_members: keys_at(e, &["shapes", "Entitlement", "members"])?,
    })
}

fn parse(text: &str, which: &str) -> Result<Value, FakeError> {
    serde_json::from_str(text).map_err(|e| FakeError::Contract(format!("{which}: {e}")))
}

fn at<'a>(doc: &'a Value, path: &[&str]) -> Result<&'a Value, FakeError> {
    let mut v = doc;
    for key in path {
        v = match v {
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => v.get(*key),
        }
        .ok_or_else(|| FakeError::Contract(format!("missing {}", path.join("."))))?;
    }
    Ok(v)
}

fn str_at(doc: &Value, path: &[&str]) -> Result<String, FakeError> {
    at(doc, path)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| FakeError::Contract(format!("{} is not a string", path.join("."))))
}

fn usize_at(doc: &Value, path: &[&str]) -> Result<usize, FakeError> {
    at(doc, path)?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| FakeError::Contract(format!("{} is not a count", path.join("."))))
}

fn strings_at(doc: &Value, path: &[&str]) -> Result<Vec<String>, FakeError> {
    match at(doc, path) {
        Ok(Value::Array(items)) => Ok(items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()),
        Ok(_) => Err(FakeError::Contract(format!(
            "{} is not a list",
            path.join(".")
        ))),
        Err(e) => Err(e),
    }
}

fn aws_string(model: &Value, shape: &str) -> Result<StringShape, FakeError> {
    let s = at(model, &["shapes", shape])?;
    let pattern = match s.get("pattern").and_then(Value::as_str) {
        Some(p) => {
            Some(Regex::new(p).map_err(|e| FakeError::Contract(format!("{shape}.pattern: {e}")))?)
        }
        None => None,
    };
    let len = |k: &str| {
        s.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    Ok(StringShape {
        name: shape.to_owned(),
        min: len("min"),
        max: len("max"),
        pattern,
    })
}

fn load_aws(m: &Value) -> Result<AwsContract, FakeError> {
    let errors = match at(m, &["operations", "BatchMeterUsage", "errors"])? {
        Value::Array(items) => items
            .iter()
            .filter_map(|e| e.get("shape").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let quantity = at(m, &["shapes", "UsageQuantity"])?;
    Ok(AwsContract {
        target_prefix: str_at(m, &["metadata", "targetPrefix"])?,
        signing_name: str_at(m, &["metadata", "signingName"])?,
        json_version: str_at(m, &["metadata", "jsonVersion"])?,
        records_min: usize_at(m, &["shapes", "UsageRecordList", "min"])?,
        records_max: usize_at(m, &["shapes", "UsageRecordList", "max"])?,
        request_required: strings_at(m, &["shapes", "BatchMeterUsageRequest", "required"])?,
        record_required: strings_at(m, &["shapes", "UsageRecord", "required"])?,
        product_code: aws_string(m, "ProductCode")?,
        customer_identifier: aws_string(m, "CustomerIdentifier")?,
        customer_account_id: aws_string(m, "CustomerAWSAccountId")?,
        license_arn: aws_string(m, "LicenseArn")?,
        dimension: aws_string(m, "UsageDimension")?,
        quantity_decimal: aws_string(m, "UsageQuantityAsDecimalString")?,
        quantity_min: quantity.get("min").and_then(Value::as_i64).unwrap_or(0),
        quantity_max: quantity
            .get("max")
            .and_then(Value::as_i64)
            .unwrap_or(i64::from(i32::MAX)),
        allocations_min: usize_at(m, &["shapes", "UsageAllocations", "min"])?,
        allocations_max: usize_at(m, &["shapes", "UsageAllocations", "max"])?,
        tags_min: usize_at(m, &["shapes", "TagList", "min"])?,
        tags_max: usize_at(m, &["shapes", "TagList", "max"])?,
        tag_key: aws_string(m, "TagKey")?,
        tag_value: aws_string(m, "TagValue")?,
        result_statuses: strings_at(m, &["shapes", "UsageRecordResultStatus", "enum"])?,
        errors,
    })
}

fn load_azure(doc: &Value) -> Result<AzureContract, FakeError> {
    let server = str_at(doc, &["servers", "0", "url"])?;
    // "https://marketplaceapi.microsoft.com/api" → "/api"
    let base_path = server
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_default();
    let schemas = at(doc, &["components", "schemas"])?;
    let event_properties = match at(schemas, &["UsageEvent", "properties"])? {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let mut event_required = strings_at(schemas, &["UsageEvent", "required"]).unwrap_or_default();
    for prose in ["quantity", "dimension", "effectiveStartTime", "planId"] {
        if !event_required.iter().any(|r| r == prose) {
            event_required.push(prose.to_owned());
        }
    }
    for name in &event_required {
        if !event_properties.contains(name) {
            return Err(FakeError::Contract(format!(
                "UsageEvent has no property {name}"
            )));
        }
    }
    Ok(AzureContract {
        base_path,
        api_versions: strings_at(schemas, &["ApiVersion", "enum"])?,
        batch_min: usize_at(
            schemas,
            &["BatchUsageEvent", "properties", "request", "minItems"],
        )?,
        batch_max: usize_at(
            schemas,
            &["BatchUsageEvent", "properties", "request", "maxItems"],
        )?,
        event_properties,
        event_required,
        statuses: strings_at(schemas, &["StatusEnum", "enum"])?,
        recon_statuses: strings_at(schemas, &["ReconStatus", "enum"])?,
    })
}

fn load_gcp(doc: &Value) -> Result<GcpContract, FakeError> {
    let methods = at(doc, &["resources", "services", "methods"])?;
    let description = str_at(
        doc,
        &[
            "schemas",
            "ReportRequest",
            "properties",
            "operations",
            "description",
        ],
    )?;
    let limit = Regex::new(r"no larger than (\d+)\s*MB")
        .map_err(|e| FakeError::Contract(e.to_string()))?
        .captures(&description)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().parse::<usize>().ok())
        .ok_or_else(|| FakeError::Contract("ReportRequest size limit not found".into()))?;
    let check_error_codes = strings_at(
        doc,
        &["schemas", "CheckError", "properties", "code", "enum"],
    )?;
    for code in [
        "CONSUMER_INVALID",
        "SERVICE_NOT_ACTIVATED",
        "BILLING_DISABLED",
    ] {
        if !check_error_codes.iter().any(|c| c == code) {
            return Err(FakeError::Contract(format!(
                "CheckError.code has no {code}"
            )));
        }
    }
    Ok(GcpContract {
        revision: str_at(doc, &["revision"])?,
        check_path: str_at(methods, &["check", "path"])?,
        report_path: str_at(methods, &["report", "path"])?,
        report_max_bytes: limit * 1_000_000,
        check_error_codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_load_with_the_documented_limits() {
        let c = contracts().unwrap();
        assert_eq!(c.aws.records_max, 25);
        assert_eq!(c.aws.target_prefix, "AWSMPMeteringService");
        assert_eq!(c.aws.signing_name, "aws-marketplace");
        assert_eq!(c.aws.record_required, vec!["Timestamp", "Dimension"]);
        assert!(c.aws.quantity_decimal.violation("17.5", "q").is_none());
        assert!(c.aws.quantity_decimal.violation("017", "q").is_some());
        assert!(c.aws.quantity_decimal.violation("1.1234567", "q").is_some());
        assert!(c.aws.customer_account_id.violation("12a", "a").is_some());
        assert!(c.aws.tag_key.violation("team", "k").is_none());
        assert_eq!(c.azure.base_path, "/api");
        assert_eq!((c.azure.batch_min, c.azure.batch_max), (1, 25));
        assert_eq!(c.azure.api_versions, vec!["2018-08-31"]);
        assert!(c.azure.statuses.iter().any(|s| s == "Duplicate"));
        assert_eq!(c.gcp.report_max_bytes, 1_000_000);
        assert_eq!(c.gcp.report_path, "v1/services/{serviceName}:report");
    }

    #[test]
    fn subscription_contracts_load() {
        let c = contracts().unwrap();
        let p = &c.procurement;
        assert!(
            p.entitlement_name
                .is_match("providers/acme/entitlements/e-1")
        );
        assert!(
            !p.entitlement_name
                .is_match("providers/acme/entitlements/e/1")
        );
        assert!(
            p.entitlement_states
                .iter()
                .any(|s| s == "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL")
        );
        assert_eq!(
            p.method_requests
                .get("entitlements.approvePlanChange")
                .map(String::as_str),
            Some("ApproveEntitlementPlanChangeRequest")
        );
        assert_eq!(
            p.request_properties["ApproveEntitlementPlanChangeRequest"],
            vec!["pendingPlanName"]
        );
        let f = &c.fulfillment;
        assert_eq!(f.base_path, "/api");
        assert_eq!(f.update_statuses, vec!["Success", "Failure"]);
        assert!(f.paths.iter().any(|p| p == "/saas/subscriptions/resolve"));
        let a = &c.aws_saas;
        assert_eq!(a.entitlement_target_prefix, "AWSMPEntitlementService");
        assert_eq!(a.entitlement_signing_name, "aws-marketplace");
        assert_eq!((a.page_min, a.page_max), (1, 25));
        assert!(a.filter_names.iter().any(|f| f == "LICENSE_ARN"));
        assert!(a.resolve_result_members.iter().any(|m| m == "LicenseArn"));
        assert!(
            a.resolve_errors
                .iter()
                .any(|e| e == "ExpiredTokenException")
        );
    }
}
