//! Purser as its users run it: the `purser` binary as processes, and the pages in a
//! real browser. Unit and storage tests live beside their crates; this binary holds
//! what needs whole processes.

mod browser;
mod processes;
mod support;
