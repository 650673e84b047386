//! The API reference page, rendered from the same OpenAPI document as `/openapi.json`.

use askama::Template;
use axum::response::Response;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;

use super::{Chrome, render};

struct OperationView {
    anchor: String,
    method: &'static str,
    path: String,
    summary: String,
    parameters: Vec<String>,
    request_body: Option<String>,
    responses: Vec<String>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct DocsPage {
    chrome: Chrome,
    title: String,
    version: String,
    description: String,
    openapi_version: String,
    operations: Vec<OperationView>,
}

pub fn reference(spec: &OpenApi) -> Response {
    let mut operations = Vec::new();
    for (path, item) in &spec.paths.paths {
        let methods: [(&'static str, &Option<Operation>); 5] = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in methods {
            let Some(operation) = operation else { continue };
            let summary = [
                operation.summary.as_deref(),
                operation.description.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            let parameters = operation
                .parameters
                .iter()
                .flatten()
                .map(|p| p.name.clone())
                .collect();
            let request_body = operation
                .request_body
                .as_ref()
                .map(|body| body.content.keys().cloned().collect::<Vec<_>>().join(", "));
            let responses = operation.responses.responses.keys().cloned().collect();
            operations.push(OperationView {
                anchor: format!(
                    "{}-{}",
                    method.to_lowercase(),
                    path.replace(['/', '{', '}'], "-")
                ),
                method,
                path: path.clone(),
                summary,
                parameters,
                request_body,
                responses,
            });
        }
    }
    render(&DocsPage {
        chrome: Chrome::anonymous(),
        title: spec.info.title.clone(),
        version: spec.info.version.clone(),
        description: spec.info.description.clone().unwrap_or_default(),
        openapi_version: "3.1".into(),
        operations,
    })
}
