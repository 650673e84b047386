//! The account scope: which accounts' data a caller may see.
//!
//! A scope is built once per request from the caller and the boundary rules, then
//! handed to every storage read of account data, which filters by it in SQL. No
//! handler decides visibility on its own, so a capability added later inherits the
//! rule by taking a scope. A scope also carries who is asking, so that storage can
//! audit reads of restricted accounts and denied attempts in the same place.

use std::collections::BTreeSet;

use crate::audit::Actor;
use crate::boundary::{BoundaryName, BoundaryRule};
use crate::identity::{Permission, Principal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountScope {
    /// Who is asking, for the audit entries reads through this scope write.
    pub actor: Actor,
    visible: Visible,
    /// Boundaries whose reads are audited (every boundary that is not open to all).
    restricted: BTreeSet<BoundaryName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Visible {
    /// Purser's own periodic work, which must see every account to bill it.
    Everything,
    Boundaries(BTreeSet<BoundaryName>),
}

impl AccountScope {
    /// The scope of a user: the boundaries whose rule they satisfy, and none at all
    /// when their roles do not allow reading accounts.
    pub fn for_principal(
        principal: &Principal,
        rules: &[BoundaryRule],
        request_id: Option<String>,
    ) -> Self {
        Self::for_work(principal, rules, request_id, Permission::ReadAccounts)
    }

    /// The accounts a user may do `work` on (`IngestUsage`: report usage for): the
    /// boundaries whose rule they satisfy, none without the permission. Nothing read
    /// through such a scope may be shown beyond what `work` needs.
    pub fn for_work(
        principal: &Principal,
        rules: &[BoundaryRule],
        request_id: Option<String>,
        work: Permission,
    ) -> Self {
        let visible = if principal.can(work) {
            rules
                .iter()
                .filter(|rule| rule.permits(&principal.clearances, principal.residency))
                .map(|rule| rule.name.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        Self {
            actor: Actor::new(principal.audit_actor(), request_id),
            visible: Visible::Boundaries(visible),
            restricted: restricted(rules),
        }
    }

    /// Purser's own periodic work (closing hours, reporting usage). Never built from a
    /// request.
    pub fn system(job: &str, rules: &[BoundaryRule]) -> Self {
        Self {
            actor: Actor::new(format!("system:{job}"), None),
            visible: Visible::Everything,
            restricted: restricted(rules),
        }
    }

    pub fn permits(&self, boundary: &BoundaryName) -> bool {
        match &self.visible {
            Visible::Everything => true,
            Visible::Boundaries(set) => set.contains(boundary),
        }
    }

    /// The boundaries visible to this scope, or `None` for every boundary. Storage turns
    /// this into `boundary IN (…)`.
    pub fn visible_boundaries(&self) -> Option<Vec<&BoundaryName>> {
        match &self.visible {
            Visible::Everything => None,
            Visible::Boundaries(set) => Some(set.iter().collect()),
        }
    }

    pub fn is_restricted(&self, boundary: &BoundaryName) -> bool {
        self.restricted.contains(boundary)
    }
}

fn restricted(rules: &[BoundaryRule]) -> BTreeSet<BoundaryName> {
    rules
        .iter()
        .filter(|rule| rule.is_restricted())
        .map(|rule| rule.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::Country;
    use crate::identity::Role;

    fn user(roles: &[Role], clearances: &[&str], residency: &str) -> Principal {
        Principal {
            user_id: "u".into(),
            username: "u".into(),
            roles: roles.iter().copied().collect(),
            clearances: clearances.iter().map(|c| c.to_string()).collect(),
            residency: Country::parse(residency).ok(),
            via_token: None,
        }
    }

    fn names(scope: &AccountScope) -> Vec<String> {
        scope
            .visible_boundaries()
            .expect("a user's scope is bounded")
            .into_iter()
            .map(|b| b.to_string())
            .collect()
    }

    #[test]
    fn admin_without_clearance_sees_only_standard() {
        let rules = BoundaryRule::built_in();
        let scope = AccountScope::for_principal(&user(&[Role::Admin], &[], "US"), &rules, None);
        assert_eq!(names(&scope), ["standard"]);
    }

    #[test]
    fn cleared_resident_sees_their_boundary() {
        let rules = BoundaryRule::built_in();
        let scope = AccountScope::for_principal(
            &user(&[Role::Support], &["us-gov", "eu-sovereign"], "US"),
            &rules,
            None,
        );
        // Cleared for the EU too, but residing in the US: the EU boundary stays closed.
        assert_eq!(names(&scope), ["standard", "us-gov"]);
        assert!(scope.is_restricted(&BoundaryName::parse("us-gov").expect("name")));
        assert!(!scope.is_restricted(&BoundaryName::standard()));
    }

    #[test]
    fn no_read_permission_means_nothing_visible() {
        let rules = BoundaryRule::built_in();
        let scope = AccountScope::for_principal(&user(&[], &["us-gov"], "US"), &rules, None);
        assert!(names(&scope).is_empty());
        assert!(!scope.permits(&BoundaryName::standard()));
    }

    #[test]
    fn system_scope_sees_everything() {
        let rules = BoundaryRule::built_in();
        let scope = AccountScope::system("close-hours", &rules);
        assert!(scope.visible_boundaries().is_none());
        assert!(scope.permits(&BoundaryName::parse("sg-gov").expect("name")));
        assert_eq!(scope.actor.name, "system:close-hours");
    }
}
