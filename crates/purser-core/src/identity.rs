//! Users, roles and what each role may do.
//!
//! The permission table ([`Role::permissions`]) is the one statement of who may do
//! what; handlers ask [`Principal::can`] and never match on roles themselves. What a
//! user may *see* of account data is a separate question, answered by boundaries
//! (see [`crate::scope`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::boundary::{BoundaryName, Country};
use crate::validation::{self, ValidationErrors};

/// A job a person does with Purser.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Finance,
    Support,
    Sre,
    Csm,
    Auditor,
    Viewer,
    /// The platform's telemetry service: sends usage events and nothing else.
    Telemetry,
}

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See accounts (within the caller's boundaries).
    ReadAccounts,
    /// Create and change accounts.
    WriteAccounts,
    /// Create users, change their roles and clearances, revoke anyone's tokens.
    ManageUsers,
    /// Define data boundaries.
    ManageBoundaries,
    /// Read the audit log.
    ReadAudit,
    /// See periodic job runs and their leases.
    ReadJobs,
    /// Create and revoke one's own API tokens.
    ManageOwnTokens,
    /// Define offers and record entitlements: what was sold.
    ManageCommercial,
    /// Send usage events (`POST /v1/events`), for the accounts one may see.
    IngestUsage,
    /// See metering: meters, ingest, closed hours, the quarantine, usage.
    ReadMetering,
    /// Define meters and replay the quarantine.
    ManageMetering,
    /// Read the ERP export: invoice lines and their totals.
    ExportInvoices,
    /// Import accounts, offers and entitlements from the CRM and export usage to it.
    SyncCrm,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::Finance,
        Role::Support,
        Role::Sre,
        Role::Csm,
        Role::Auditor,
        Role::Viewer,
        Role::Telemetry,
    ];

    /// The permission table. Everything a role may do is written here and nowhere else.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                ReadAccounts,
                WriteAccounts,
                ManageUsers,
                ManageBoundaries,
                ReadAudit,
                ReadJobs,
                ManageOwnTokens,
                ManageCommercial,
                IngestUsage,
                ReadMetering,
                ManageMetering,
                ExportInvoices,
                SyncCrm,
            ],
            // Finance owns what was sold and what is billed: offers, entitlements,
            // meters, the ERP export, and the CRM sync that books what sales sold.
            Role::Finance => &[
                ReadAccounts,
                ManageOwnTokens,
                ManageCommercial,
                ReadMetering,
                ManageMetering,
                ExportInvoices,
                SyncCrm,
            ],
            Role::Support => &[ReadAccounts, ManageOwnTokens],
            Role::Sre => &[ReadAccounts, ReadJobs, ManageOwnTokens, ReadMetering],
            // Customer success owns the lifecycle: owners, status, CRM links.
            Role::Csm => &[ReadAccounts, WriteAccounts, ManageOwnTokens, ReadMetering],
            Role::Auditor => &[
                ReadAccounts,
                ReadAudit,
                ManageOwnTokens,
                ReadMetering,
                ExportInvoices,
            ],
            Role::Viewer => &[ReadAccounts, ManageOwnTokens],
            // The platform's telemetry service (Polaris): sends usage for the
            // accounts its clearances reach, and reads nothing.
            Role::Telemetry => &[IngestUsage, ManageOwnTokens],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Support => "support",
            Role::Sre => "sre",
            Role::Csm => "csm",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
            Role::Telemetry => "telemetry",
        }
    }

    pub fn parse(value: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value.trim())
            .ok_or_else(|| {
                format!(
                    "`{value}` is not a role (one of {})",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: a signed-in user, or a user acting through one of their API tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub roles: BTreeSet<Role>,
    pub clearances: BTreeSet<String>,
    pub residency: Option<Country>,
    /// The API token's name when the call came with a token, for the audit log.
    pub via_token: Option<String>,
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.roles
            .iter()
            .any(|role| role.permissions().contains(&permission))
    }

    /// How this caller appears in the audit log.
    pub fn audit_actor(&self) -> String {
        match &self.via_token {
            Some(token) => format!("user:{} (token {token})", self.username),
            None => format!("user:{}", self.username),
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub roles: BTreeSet<Role>,
    pub clearances: BTreeSet<String>,
    pub residency: Option<Country>,
    pub disabled_at: Option<jiff::Timestamp>,
    pub created_at: jiff::Timestamp,
}

impl User {
    /// The caller this user is, directly or through the named token.
    pub fn principal(&self, via_token: Option<String>) -> Principal {
        Principal {
            user_id: self.id.clone(),
            username: self.username.clone(),
            roles: self.roles.clone(),
            clearances: self.clearances.clone(),
            residency: self.residency,
            via_token,
        }
    }
}

/// A user as an administrator creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub roles: BTreeSet<Role>,
    pub clearances: BTreeSet<String>,
    pub residency: Option<Country>,
}

/// The fewest characters a password may have. Length beats composition rules
/// (NIST SP 800-63B, section 5.1.1).
pub const MIN_PASSWORD_CHARS: usize = 12;

impl NewUser {
    /// Validates the fields of a new user, naming each field that is wrong.
    pub fn validate(
        username: &str,
        display_name: &str,
        roles: &[String],
        clearances: &[String],
        residency: Option<&str>,
    ) -> Result<NewUser, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let username = username.trim().to_lowercase();
        let username_ok = (2..=64).contains(&username.len())
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !username_ok {
            errors.add(
                "username",
                "must be 2 to 64 characters of letters, digits, `.`, `_`, `-` or `@`",
            );
        }
        let display_name = validation::text(&mut errors, "display_name", display_name, false, 120)
            .unwrap_or_else(|| username.clone());
        let mut role_set = BTreeSet::new();
        for (index, role) in roles.iter().enumerate() {
            match Role::parse(role) {
                Ok(role) => {
                    role_set.insert(role);
                }
                Err(reason) => errors.add(format!("roles[{index}]"), reason),
            }
        }
        if roles.is_empty() {
            errors.add("roles", "at least one role is required");
        }
        let mut clearance_set = BTreeSet::new();
        for (index, clearance) in clearances.iter().enumerate() {
            match BoundaryName::parse(clearance.trim()) {
                Ok(name) => {
                    clearance_set.insert(name.as_str().to_owned());
                }
                Err(reason) => errors.add(format!("clearances[{index}]"), reason),
            }
        }
        let residency = match residency.map(str::trim) {
            None | Some("") => None,
            Some(code) => Country::parse(code)
                .map_err(|reason| errors.add("residency", reason))
                .ok(),
        };
        errors.into_result(NewUser {
            username,
            display_name,
            roles: role_set,
            clearances: clearance_set,
            residency,
        })
    }
}

/// Checks a password against the length policy.
pub fn check_password(password: &str) -> Result<(), ValidationErrors> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ValidationErrors::single(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// The stored form of a bearer secret (API token or session id). A plain SHA-256 is
/// right here, unlike for passwords: these secrets are 256 random bits, so there is
/// nothing to brute-force, and the lookup must be a fast indexed equality.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role]) -> Principal {
        Principal {
            user_id: "u1".into(),
            username: "ana".into(),
            roles: roles.iter().copied().collect(),
            clearances: BTreeSet::new(),
            residency: None,
            via_token: None,
        }
    }

    #[test]
    fn only_admin_manages_users_and_only_admin_and_auditor_read_audit() {
        for role in Role::ALL {
            let p = principal(&[role]);
            assert_eq!(
                p.can(Permission::ManageUsers),
                role == Role::Admin,
                "{role}"
            );
            assert_eq!(
                p.can(Permission::ReadAudit),
                matches!(role, Role::Admin | Role::Auditor),
                "{role}"
            );
            // The telemetry service sends usage and reads nothing.
            assert_eq!(
                p.can(Permission::ReadAccounts),
                role != Role::Telemetry,
                "{role}"
            );
            assert_eq!(
                p.can(Permission::IngestUsage),
                matches!(role, Role::Admin | Role::Telemetry),
                "{role}"
            );
            assert!(p.can(Permission::ManageOwnTokens), "{role}");
        }
    }

    #[test]
    fn roles_combine() {
        let p = principal(&[Role::Viewer, Role::Sre]);
        assert!(p.can(Permission::ReadJobs));
        assert!(!p.can(Permission::WriteAccounts));
        assert!(!principal(&[]).can(Permission::ReadAccounts));
    }

    #[test]
    fn new_user_validation_names_fields() {
        let err = NewUser::validate("a", "", &["root".into()], &["US GOV".into()], Some("USA"))
            .expect_err("invalid");
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["username", "roles[0]", "clearances[0]", "residency"]
        );

        let user = NewUser::validate(
            "Ana.Lima",
            "Ana Lima",
            &["support".into(), "viewer".into()],
            &["us-gov".into()],
            Some("us"),
        )
        .expect("valid");
        assert_eq!(user.username, "ana.lima");
        assert_eq!(user.roles.len(), 2);
        assert_eq!(user.residency.map(|c| c.to_string()), Some("US".into()));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());
    }

    #[test]
    fn secret_digest_is_stable_hex_sha256() {
        assert_eq!(
            secret_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
