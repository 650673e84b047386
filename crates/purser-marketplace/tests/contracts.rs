//! The requests the clients build, checked against the vendored contracts.

// Test helpers outside #[test] functions may fail loudly too (clippy.toml only covers
// the test functions themselves).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
use std::path::Path;
use std::str::FromStr;

use jiff::Timestamp;
use purser_core::account::Marketplace;
use purser_core::marketplace::record_key;
use purser_marketplace::testing;
use purser_marketplace::{Binding, UsageRecord};
use regex::Regex;
use rust_decimal::Decimal;
use serde_json::Value;

fn contract(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contracts")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(full).expect("contract")).expect("json")
}

fn record(m: Marketplace, dim: &str, q: &str, binding: Binding) -> UsageRecord {
    let hour: Timestamp = "2026-11-10T13:00:00Z".parse().expect("hour");
    UsageRecord {
        key: record_key(m, "acc", dim, hour),
        account_id: "acc".into(),
        dimension: dim.into(),
        marketplace_dimension: dim.into(),
        hour,
        quantity: Decimal::from_str(q).expect("d"),
        binding,
        whole_units: false,
    }
}

/// Walks `value` against botocore shape `name`: required members, unknown members,
/// min/max (length or count), pattern, types.
fn check_shape(model: &Value, name: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
    let shape = &model["shapes"][name];
    let kind = shape["type"].as_str().unwrap_or("");
    match kind {
        "structure" => {
            let Some(obj) = value.as_object() else {
                errors.push(format!("{at}: not an object"));
                return;
            };
            for req in shape["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap_or("");
                if !obj.contains_key(req) {
                    errors.push(format!("{at}.{req}: required"));
                }
            }
            for (k, v) in obj {
                match shape["members"].get(k) {
                    Some(member) => {
                        if member.get("deprecated").and_then(Value::as_bool) == Some(true) {
                            errors.push(format!("{at}.{k}: deprecated member sent"));
                        }
                        check_shape(
                            model,
                            member["shape"].as_str().unwrap_or(""),
                            v,
                            &format!("{at}.{k}"),
                            errors,
                        )
                    }
                    None => errors.push(format!("{at}.{k}: not in the model")),
                }
            }
        }
        "list" => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{at}: not a list"));
                return;
            };
            if let Some(max) = shape["max"].as_u64()
                && items.len() as u64 > max
            {
                errors.push(format!("{at}: {} items > {max}", items.len()));
            }
            for (i, item) in items.iter().enumerate() {
                check_shape(
                    model,
                    shape["member"]["shape"].as_str().unwrap_or(""),
                    item,
                    &format!("{at}[{i}]"),
                    errors,
                );
            }
        }
        "string" => {
            let Some(s) = value.as_str() else {
                errors.push(format!("{at}: not a string"));
                return;
            };
            let len = s.chars().count() as u64;
            if shape["min"].as_u64().is_some_and(|m| len < m)
                || shape["max"].as_u64().is_some_and(|m| len > m)
            {
                errors.push(format!("{at}: length {len} out of range"));
            }
            if let Some(p) = shape["pattern"].as_str()
                && !Regex::new(p).expect("pattern").is_match(s)
            {
                errors.push(format!("{at}: {s:?} does not match {p}"));
            }
        }
        "timestamp" => {
            if !value.is_number() {
                errors.push(format!("{at}: JSON 1.1 timestamps are epoch seconds"));
            }
        }
        "integer" | "long" | "double" => {
            if !value.is_number() {
                errors.push(format!("{at}: not a number"));
            }
            if let Some(n) = value.as_i64()
                && (shape["min"].as_i64().is_some_and(|m| n < m)
                    || shape["max"].as_i64().is_some_and(|m| n > m))
            {
                errors.push(format!("{at}: {n} out of range"));
            }
        }
        "map" => {
            let Some(obj) = value.as_object() else {
                errors.push(format!("{at}: not a map"));
                return;
            };
            let key_shape = shape["key"]["shape"].as_str().unwrap_or("");
            for (k, v) in obj {
                check_shape(
                    model,
                    key_shape,
                    &Value::String(k.clone()),
                    &format!("{at}.<key {k}>"),
                    errors,
                );
                if let Some(allowed) = model["shapes"][key_shape]["enum"].as_array()
                    && !allowed.iter().any(|a| a.as_str() == Some(k))
                {
                    errors.push(format!("{at}: key {k} not in the enum"));
                }
                check_shape(
                    model,
                    shape["value"]["shape"].as_str().unwrap_or(""),
                    v,
                    &format!("{at}.{k}"),
                    errors,
                );
            }
        }
        other => errors.push(format!("{at}: unhandled shape type {other}")),
    }
}

#[test]
fn aws_requests_validate_against_the_botocore_model() {
    let model = contract("aws/meteringmarketplace.service-2.json");
    let license = Binding::Aws {
        customer_aws_account_id: "123456789012".into(),
        license_arn: "arn:aws:license-manager::123456789012:license:l-0abc".into(),
    };
    let legacy = Binding::AwsLegacy {
        customer_identifier: "cust-1".into(),
        product_code: "prod-1".into(),
    };
    let mut records: Vec<UsageRecord> = (0..30)
        .map(|i| record(Marketplace::Aws, &format!("d{i}"), "1.5", license.clone()))
        .collect();
    records.push(record(Marketplace::Aws, "legacy", "0", legacy));
    records.push(record(
        Marketplace::Aws,
        "big",
        "9999999999.123456",
        license,
    ));
    let bodies = testing::aws_bodies(&records);
    // 31 license records → 25 + 6; the legacy one alone.
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for body in &bodies {
        let value: Value = serde_json::from_str(body).expect("json");
        let mut errors = Vec::new();
        check_shape(
            &model,
            "BatchMeterUsageRequest",
            &value,
            "request",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}\n{body}");
        let recs = value["UsageRecords"].as_array().expect("records");
        let legacy = recs.iter().any(|r| r.get("CustomerIdentifier").is_some());
        assert_eq!(legacy, value.get("ProductCode").is_some());
        assert!(
            recs.iter()
                .all(|r| r.get("CustomerIdentifier").is_some() == legacy)
        );
        assert!(recs.iter().all(|r| r["Timestamp"] == 1_794_315_600i64));
    }
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"QuantityAsDecimal\":\"9999999999.123456\""))
    );
}

#[test]
fn aws_quantities_outside_the_pattern_are_not_sent() {
    let license = Binding::Aws {
        customer_aws_account_id: "123456789012".into(),
        license_arn: "arn:aws:license-manager::123456789012:license:l-0abc".into(),
    };
    for q in ["1.1234567", "-1", "10000000000"] {
        let r = record(Marketplace::Aws, "d", q, license.clone());
        assert!(testing::aws_bodies(&[r]).is_empty(), "{q}");
    }
}

#[test]
fn azure_requests_validate_against_the_openapi_schema() {
    let doc = contract("azure/meteringapi.v1.json");
    let schemas = &doc["components"]["schemas"];
    let batch = &schemas["BatchUsageEvent"];
    let event = &schemas["UsageEvent"];
    let records: Vec<UsageRecord> = (0..30)
        .map(|i| {
            record(
                Marketplace::Azure,
                &format!("d{i}"),
                "0.000001",
                Binding::Azure {
                    resource_id: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
                    plan_id: "gold".into(),
                },
            )
        })
        .collect();
    let bodies = testing::azure_bodies(&records);
    assert_eq!(bodies.len(), 2);
    let max = batch["properties"]["request"]["maxItems"]
        .as_u64()
        .expect("maxItems");
    for body in &bodies {
        let value: Value = serde_json::from_str(body).expect("json");
        for req in batch["required"].as_array().into_iter().flatten() {
            assert!(value.get(req.as_str().expect("s")).is_some());
        }
        let items = value["request"].as_array().expect("request");
        assert!(!items.is_empty() && items.len() as u64 <= max);
        for item in items {
            for req in event["required"].as_array().into_iter().flatten() {
                assert!(item.get(req.as_str().expect("s")).is_some(), "{req}");
            }
            for (k, v) in item.as_object().expect("object") {
                let prop = &event["properties"][k];
                assert!(!prop.is_null(), "{k} is not in UsageEvent");
                match prop["type"].as_str() {
                    Some("number") => assert!(v.is_number(), "{k}"),
                    Some("string") => assert!(v.is_string(), "{k}"),
                    _ => {}
                }
                if prop["format"] == "date-time" {
                    assert!(v.as_str().expect("s").parse::<Timestamp>().is_ok());
                }
            }
            // The quantity's exact text, not a float rendering.
            assert!(body.contains("\"quantity\":0.000001"), "{body}");
        }
    }
}

#[test]
fn gcp_requests_use_only_fields_the_discovery_document_defines() {
    let doc = contract("gcp/servicecontrol.v1.json");
    let schemas = &doc["schemas"];
    fn walk(schemas: &Value, schema: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
        let props = &schemas[schema]["properties"];
        for (k, v) in value.as_object().into_iter().flatten() {
            let prop = &props[k];
            if prop.is_null() {
                errors.push(format!("{at}.{k} not in {schema}"));
                continue;
            }
            let target = prop["$ref"].as_str().or(prop["items"]["$ref"].as_str());
            match (prop["type"].as_str(), target) {
                (Some("array"), Some(t)) => {
                    for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                        walk(schemas, t, item, &format!("{at}.{k}[{i}]"), errors);
                    }
                }
                (_, Some(t)) => walk(schemas, t, v, &format!("{at}.{k}"), errors),
                (Some("string"), _) if !v.is_string() => {
                    errors.push(format!("{at}.{k} must be a string"));
                }
                (Some("number"), _) if !v.is_number() => {
                    errors.push(format!("{at}.{k} must be a number"));
                }
                _ => {}
            }
        }
    }
    let binding = Binding::Gcp {
        service_name: "product.endpoints.proj.cloud.goog".into(),
        usage_reporting_id: "project_number:1".into(),
    };
    // A whole-unit dimension is an INT64 metric; any other is DOUBLE, even when its
    // quantity happens to be whole.
    let mut whole = record(Marketplace::Gcp, "whole", "17", binding.clone());
    whole.whole_units = true;
    let records = vec![
        whole,
        record(Marketplace::Gcp, "frac", "2.5", binding.clone()),
        record(Marketplace::Gcp, "round", "3", binding),
    ];
    let (check, report) = testing::gcp_bodies(&records);
    let mut errors = Vec::new();
    walk(
        schemas,
        "CheckRequest",
        &serde_json::from_str(&check).expect("json"),
        "check",
        &mut errors,
    );
    walk(
        schemas,
        "ReportRequest",
        &serde_json::from_str(&report).expect("json"),
        "report",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(report.contains("\"int64Value\":\"17\""), "{report}");
    assert!(report.contains("\"doubleValue\":2.5"), "{report}");
    assert!(report.contains("\"doubleValue\":3"), "{report}");
    assert!(
        report.contains(
            "\"startTime\":\"2026-11-10T13:00:00Z\",\"endTime\":\"2026-11-10T14:00:00Z\""
        )
    );
    assert!(report.contains("\"metricName\":\"product.endpoints.proj.cloud.goog/whole\""));
}

/// Walks `value` against an OpenAPI / discovery-style schema: only declared properties,
/// and each property's JSON type and enum.
fn check_json_schema(
    schemas: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
    ref_prefix: &str,
) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &schemas[r.trim_start_matches(ref_prefix)],
        None => schema,
    };
    match schema["type"].as_str().unwrap_or("object") {
        "object" => {
            let Some(obj) = value.as_object() else {
                errors.push(format!("{at}: not an object"));
                return;
            };
            let props = &schema["properties"];
            if props.is_null() {
                return;
            }
            for (k, v) in obj {
                match props.get(k) {
                    None => errors.push(format!("{at}.{k}: not in the schema")),
                    Some(p) => {
                        if p.get("deprecated").and_then(Value::as_bool) == Some(true)
                            && v == &Value::Bool(false)
                        {
                            errors.push(format!("{at}.{k}: deprecated member sent at its default"));
                        }
                        check_json_schema(schemas, p, v, &format!("{at}.{k}"), errors, ref_prefix)
                    }
                }
            }
        }
        "array" => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_json_schema(
                        schemas,
                        &schema["items"],
                        item,
                        &format!("{at}[{i}]"),
                        errors,
                        ref_prefix,
                    );
                }
            }
            None => errors.push(format!("{at}: not an array")),
        },
        "string" => match value.as_str() {
            None => errors.push(format!("{at}: not a string")),
            Some(s) => {
                if let Some(allowed) = schema["enum"].as_array()
                    && !allowed.iter().any(|a| a.as_str() == Some(s))
                {
                    errors.push(format!("{at}: {s:?} not in {allowed:?}"));
                }
                if schema["format"] == "byte" && base64_is_invalid(s) {
                    errors.push(format!("{at}: not base64"));
                }
            }
        },
        "integer" => {
            if !(value.is_i64() || value.is_u64()) {
                errors.push(format!("{at}: not an integer"));
            }
        }
        "boolean" => {
            if !value.is_boolean() {
                errors.push(format!("{at}: not a boolean"));
            }
        }
        other => errors.push(format!("{at}: unhandled type {other}")),
    }
}

fn base64_is_invalid(s: &str) -> bool {
    !s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[test]
fn procurement_requests_match_the_discovery_document() {
    let doc = contract("gcp/cloudcommerceprocurement.v1.json");
    let providers = &doc["resources"]["providers"]["resources"];
    let method = |id: &str| {
        let (collection, name) = id.split_once('.').expect("id");
        providers[collection]["methods"][name].clone()
    };
    for (id, http_method, path) in testing::procurement_paths() {
        let m = method(id);
        assert_eq!(m["httpMethod"], http_method, "{id}");
        assert_eq!(m["path"], path, "{id}");
    }
    let mut errors = Vec::new();
    for (id, body) in testing::procurement_bodies() {
        let m = method(id);
        let schema_name = m["request"]["$ref"].as_str().expect("request schema");
        let schema = &doc["schemas"][schema_name];
        check_json_schema(&doc["schemas"], schema, &body, id, &mut errors, "");
        // Members the schema calls "Required." are sent.
        for (name, property) in schema["properties"].as_object().expect("properties") {
            let required = property["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Required."));
            if required && body.get(name).is_none() {
                errors.push(format!("{id}.{name}: required"));
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    // Names the client builds match the methods' name patterns.
    let config = purser_marketplace::procurement::ProcurementConfig::new(
        "acme",
        purser_marketplace::gcp::GcpCredentials::Token {
            token: purser_marketplace::SecretSource::Inline(purser_marketplace::Secret::new("t")),
        },
    );
    let client = purser_marketplace::procurement::ProcurementClient::new(&config).expect("client");
    let pattern = |collection: &str| {
        Regex::new(
            providers[collection]["methods"]["get"]["parameters"]["name"]["pattern"]
                .as_str()
                .expect("pattern"),
        )
        .expect("regex")
    };
    for name in [
        client.entitlement_name("e-1").unwrap(),
        client
            .entitlement_name("providers/acme/entitlements/e-1")
            .unwrap(),
    ] {
        assert!(pattern("entitlements").is_match(&name), "{name}");
    }
    for name in [
        client.account_name("a-1").unwrap(),
        client.account_name("accounts/a-1").unwrap(),
    ] {
        assert!(pattern("accounts").is_match(&name), "{name}");
    }
}

#[test]
fn pubsub_requests_match_the_discovery_document() {
    let doc = contract("gcp/pubsub.v1.json");
    let resources = &doc["resources"]["projects"]["resources"];
    let mut errors = Vec::new();
    for (id, http_method, path, schema, body) in testing::pubsub_requests() {
        let (resource, name) = id.split_once('.').expect("id");
        let m = &resources[resource]["methods"][name];
        assert_eq!(m["httpMethod"], http_method, "{id}");
        assert_eq!(m["path"], path, "{id}");
        assert_eq!(m["request"]["$ref"], schema, "{id}");
        check_json_schema(
            &doc["schemas"],
            &doc["schemas"][schema],
            &body,
            id,
            &mut errors,
            "",
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn fulfillment_requests_match_the_openapi_document() {
    let doc = contract("azure/saasapi.v2.json");
    for (method, path) in testing::fulfillment_paths() {
        let operation = &doc["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} is not in the contract"
        );
        let params = operation["parameters"].as_array().expect("parameters");
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "api-version" && p["required"] == true),
            "{path}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let mut errors = Vec::new();
    for (schema, body) in testing::fulfillment_bodies() {
        check_json_schema(
            schemas,
            &schemas[schema],
            &body,
            schema,
            &mut errors,
            "#/components/schemas/",
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
    // The activation and operation bodies are what the operations' requestBody names.
    let body_schema = |path: &str, method: &str| {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        body_schema("/saas/subscriptions/{subscriptionId}/activate", "post"),
        "#/components/schemas/SubscriberPlan"
    );
    assert_eq!(
        body_schema(
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            "patch"
        ),
        "#/components/schemas/UpdateOperation"
    );
    // The token's resource is the one the contract's ApiVersion note names.
    let note = schemas["ApiVersion"]["description"].as_str().expect("note");
    assert!(note.contains(purser_marketplace::azure::METERING_RESOURCE));
}

#[test]
fn aws_saas_requests_validate_against_the_botocore_models() {
    let metering = contract("aws/meteringmarketplace.service-2.json");
    let entitlement = contract("aws/marketplace-entitlement.service-2.json");
    let (resolve_target, entitlements_target, signing_name) = testing::aws_saas_targets();
    assert_eq!(
        resolve_target,
        format!(
            "{}.ResolveCustomer",
            metering["metadata"]["targetPrefix"].as_str().unwrap()
        )
    );
    assert!(metering["operations"]["ResolveCustomer"].is_object());
    assert_eq!(
        entitlements_target,
        format!(
            "{}.GetEntitlements",
            entitlement["metadata"]["targetPrefix"].as_str().unwrap()
        )
    );
    assert_eq!(metering["metadata"]["signingName"], signing_name);
    assert_eq!(entitlement["metadata"]["signingName"], signing_name);
    assert!(
        entitlement["metadata"]["protocols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "json"),
        "the entitlement service must still take JSON"
    );
    let (resolve, entitlements) = testing::aws_saas_bodies();
    let mut errors = Vec::new();
    check_shape(
        &metering,
        "ResolveCustomerRequest",
        &serde_json::from_str(&resolve).unwrap(),
        "ResolveCustomer",
        &mut errors,
    );
    check_shape(
        &entitlement,
        "GetEntitlementsRequest",
        &serde_json::from_str(&entitlements).unwrap(),
        "GetEntitlements",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:#?}");
}
