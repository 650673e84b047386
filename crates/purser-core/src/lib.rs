//! Purser's domain core: the types and rules every capability shares.
//!
//! This crate does no I/O. It knows nothing of SQL, HTTP or files: storage and the
//! HTTP surface translate to and from these types at their edges. Time is always an
//! argument (never read from the clock here) so rules can be tested at any instant.
//!
//! Reading order: [`validation`] (how bad input is described), [`account`],
//! [`boundary`] and [`identity`] (who may see what), [`scope`] (the one place that
//! decision is made), [`audit`] (the hash chain), [`money`] and [`time`].

pub mod account;
pub mod audit;
pub mod boundary;
pub mod chain;
pub mod closing;
pub mod commercial;
pub mod crm;
pub mod events;
pub mod evidence;
pub mod identity;
pub mod invoice;
pub mod marketplace;
pub mod meter;
pub mod money;
pub mod scope;
pub mod time;
pub mod validation;

pub use account::{Account, AccountId, AccountStatus, Marketplace, NewAccount, Owners};
pub use boundary::{BoundaryName, BoundaryRule, Country};
pub use identity::{NewUser, Permission, Principal, Role, User};
pub use scope::AccountScope;
pub use validation::{FieldError, ValidationErrors};
