//! How bad input is described: which field, and why.
//!
//! Every validation in Purser reports all problems it finds at once, each naming the
//! field in the caller's own words, so that a form or an API client can fix them in
//! one round trip.

use serde::Serialize;

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field as the caller named it (`owners.csm`, `marketplace_account_id`).
    pub field: String,
    /// Why the value was refused, in a sentence a person can act on.
    pub reason: String,
}

/// All problems found in one input; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, reason);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(value)` when nothing was found wrong, the errors otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    fn summary(&self) -> String {
        self.errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks a free-text field: trimmed, non-empty when required, at most `max` characters,
/// no control characters. Returns the trimmed value.
pub fn text(
    errors: &mut ValidationErrors,
    field: &str,
    value: &str,
    required: bool,
    max: usize,
) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        if required {
            errors.add(field, "is required and may not be blank");
        }
        return None;
    }
    if trimmed.chars().count() > max {
        errors.add(field, format!("is longer than {max} characters"));
        return None;
    }
    if trimmed.chars().any(char::is_control) {
        errors.add(field, "may not contain control characters");
        return None;
    }
    Some(trimmed.to_owned())
}

/// A plausible e-mail address: one `@`, something on each side, a dot in the domain.
/// Deliverability is not Purser's to judge; typos like a missing `@` are.
pub fn email(errors: &mut ValidationErrors, field: &str, value: &str) -> Option<String> {
    let value = text(errors, field, value, false, 254)?;
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    };
    if valid {
        Some(value.to_lowercase())
    } else {
        errors.add(
            field,
            "is not an e-mail address (expected name@example.com)",
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reports_blank_long_and_control_characters() {
        let mut errors = ValidationErrors::new();
        assert_eq!(
            text(&mut errors, "name", "  Acme  ", true, 10),
            Some("Acme".into())
        );
        assert_eq!(text(&mut errors, "name", "   ", true, 10), None);
        assert_eq!(text(&mut errors, "name", "abcdefghijk", true, 10), None);
        assert_eq!(text(&mut errors, "name", "a\u{7}b", true, 10), None);
        assert_eq!(text(&mut errors, "optional", "", false, 10), None);
        let reasons: Vec<_> = errors.errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "is required and may not be blank",
                "is longer than 10 characters",
                "may not contain control characters"
            ]
        );
    }

    #[test]
    fn email_accepts_addresses_and_names_the_field_otherwise() {
        let mut errors = ValidationErrors::new();
        assert_eq!(
            email(&mut errors, "owners.csm", "Ana@Example.com"),
            Some("ana@example.com".into())
        );
        for bad in [
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
        ] {
            assert_eq!(email(&mut errors, "owners.csm", bad), None, "{bad}");
        }
        assert_eq!(errors.errors.len(), 5);
        assert!(errors.errors.iter().all(|e| e.field == "owners.csm"));
    }
}
