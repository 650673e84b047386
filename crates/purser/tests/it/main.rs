//! Purser as its users run it: the `purser` binary as processes, and the pages in a
//! real browser. Unit and storage tests live beside their crates; this binary holds
//! what needs whole processes.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod erp_crm;
mod marketplace;
mod metering;
mod processes;
mod support;
