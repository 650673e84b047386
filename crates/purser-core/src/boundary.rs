//! Data boundaries: the sovereignty class of an account, and the rule that says who
//! may see its data.
//!
//! A boundary's rule has two parts, both of which must hold: a clearance the user must
//! hold (none for `standard`) and the countries a user must reside in (any, when the
//! list is empty). Roles never override a boundary: an administrator without the
//! clearance sees a sovereign account no more than a viewer does.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// The name of a data boundary (`standard`, `us-gov`, `sg-gov`, `eu-sovereign`, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundaryName(String);

impl BoundaryName {
    pub const STANDARD: &'static str = "standard";

    /// Boundary names are lowercase slugs so they read the same in URLs, SQL and logs.
    pub fn parse(value: &str) -> Result<Self, String> {
        let valid = !value.is_empty()
            && value.len() <= 40
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "`{value}` is not a boundary name (lowercase letters, digits and inner dashes, at most 40)"
            ))
        }
    }

    pub fn standard() -> Self {
        Self(Self::STANDARD.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BoundaryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 3166-1 alpha-2 country code, uppercase (`US`, `SG`, `DE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(value: &str) -> Result<Self, String> {
        let upper = value.trim().to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() == 2 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1]]))
        } else {
            Err(format!(
                "`{value}` is not a country code (two letters, ISO 3166-1 alpha-2, e.g. US)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII uppercase letters, checked in `parse`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Country {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Country> for String {
    fn from(value: Country) -> String {
        value.as_str().to_owned()
    }
}

/// The 27 member states of the European Union, for `eu-sovereign`.
pub const EU_MEMBER_STATES: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// Who may see the data of accounts within one boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoundaryRule {
    #[schema(value_type = String, example = "us-gov")]
    pub name: BoundaryName,
    pub description: String,
    /// The clearance a user must hold; `None` means no clearance is needed.
    pub required_clearance: Option<String>,
    /// Where a user must reside; empty means anywhere.
    #[schema(value_type = Vec<String>, example = json!(["US"]))]
    pub allowed_residencies: Vec<Country>,
}

impl BoundaryRule {
    /// Whether a user holding `clearances` and residing in `residency` may see data in
    /// this boundary.
    pub fn permits(&self, clearances: &BTreeSet<String>, residency: Option<Country>) -> bool {
        let cleared = match &self.required_clearance {
            Some(required) => clearances.contains(required),
            None => true,
        };
        let resident = self.allowed_residencies.is_empty()
            || residency.is_some_and(|country| self.allowed_residencies.contains(&country));
        cleared && resident
    }

    /// A boundary that is not `standard` is restricted: reads of its data are audited.
    pub fn is_restricted(&self) -> bool {
        self.required_clearance.is_some() || !self.allowed_residencies.is_empty()
    }

    /// Validates a rule as an administrator would define it.
    pub fn new(
        name: &str,
        description: &str,
        required_clearance: Option<&str>,
        allowed_residencies: &[String],
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = BoundaryName::parse(name)
            .map_err(|reason| errors.add("name", reason))
            .ok();
        let description =
            crate::validation::text(&mut errors, "description", description, false, 200)
                .unwrap_or_default();
        let required_clearance = match required_clearance.map(str::trim) {
            None | Some("") => None,
            Some(clearance) => match BoundaryName::parse(clearance) {
                Ok(_) => Some(clearance.to_owned()),
                Err(_) => {
                    errors.add(
                        "required_clearance",
                        "must be a lowercase slug such as `us-gov`",
                    );
                    None
                }
            },
        };
        let mut residencies = Vec::new();
        for (index, code) in allowed_residencies.iter().enumerate() {
            match Country::parse(code) {
                Ok(country) => residencies.push(country),
                Err(reason) => errors.add(format!("allowed_residencies[{index}]"), reason),
            }
        }
        match name {
            Some(name) => errors.into_result(Self {
                name,
                description,
                required_clearance,
                allowed_residencies: residencies,
            }),
            None => Err(errors),
        }
    }

    /// The boundaries every Purser database starts with. More can be added.
    pub fn built_in() -> Vec<BoundaryRule> {
        let countries = |codes: &[&str]| -> Vec<Country> {
            codes
                .iter()
                .filter_map(|c| Country::parse(c).ok())
                .collect()
        };
        vec![
            BoundaryRule {
                name: BoundaryName::standard(),
                description: "Commercial customers; any Purser user may see their data".into(),
                required_clearance: None,
                allowed_residencies: vec![],
            },
            BoundaryRule {
                name: BoundaryName("us-gov".into()),
                description: "US government: cleared staff residing in the United States".into(),
                required_clearance: Some("us-gov".into()),
                allowed_residencies: countries(&["US"]),
            },
            BoundaryRule {
                name: BoundaryName("sg-gov".into()),
                description: "Singapore government: cleared staff residing in Singapore".into(),
                required_clearance: Some("sg-gov".into()),
                allowed_residencies: countries(&["SG"]),
            },
            BoundaryRule {
                name: BoundaryName("eu-sovereign".into()),
                description: "EU sovereign cloud: cleared staff residing in an EU member state"
                    .into(),
                required_clearance: Some("eu-sovereign".into()),
                allowed_residencies: countries(&EU_MEMBER_STATES),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clearances(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rule(name: &str) -> BoundaryRule {
        BoundaryRule::built_in()
            .into_iter()
            .find(|r| r.name.as_str() == name)
            .expect("built-in boundary")
    }

    #[test]
    fn standard_is_open_to_everyone() {
        let standard = rule("standard");
        assert!(standard.permits(&clearances(&[]), None));
        assert!(!standard.is_restricted());
    }

    #[test]
    fn sovereign_boundaries_need_clearance_and_residency() {
        let us = Country::parse("US").ok();
        let de = Country::parse("de").ok();
        let us_gov = rule("us-gov");
        assert!(us_gov.permits(&clearances(&["us-gov"]), us));
        assert!(
            !us_gov.permits(&clearances(&["us-gov"]), de),
            "wrong residency"
        );
        assert!(!us_gov.permits(&clearances(&[]), us), "no clearance");
        assert!(
            !us_gov.permits(&clearances(&["us-gov"]), None),
            "unknown residency"
        );
        assert!(
            !us_gov.permits(&clearances(&["eu-sovereign"]), us),
            "other clearance"
        );

        let eu = rule("eu-sovereign");
        assert!(eu.permits(&clearances(&["eu-sovereign"]), de));
        assert!(!eu.permits(&clearances(&["eu-sovereign"]), us));
        assert!(eu.is_restricted());
    }

    #[test]
    fn new_rules_are_validated_field_by_field() {
        let err = BoundaryRule::new("UK Gov", "", Some("Not A Slug"), &["GBR".into()])
            .expect_err("three problems");
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "required_clearance", "allowed_residencies[0]"]
        );
        let ok = BoundaryRule::new("uk-gov", "UK government", Some("uk-gov"), &["gb".into()])
            .expect("valid");
        assert_eq!(ok.allowed_residencies[0].as_str(), "GB");
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert!(Country::parse("U1").is_err());
        assert!(Country::parse("USA").is_err());
        assert_eq!(
            Country::parse(" sg ").map(|c| c.to_string()),
            Ok("SG".into())
        );
    }
}
