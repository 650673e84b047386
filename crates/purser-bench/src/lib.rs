//! Benchmark inputs. [`telemetry`] generates a stream of usage events shaped like what
//! the platform's telemetry service (Polaris) sends: per cluster, a capacity gauge every
//! five minutes and I/O counters for the same interval, with a share of events resent
//! and events arriving up to two hours out of order, as a fleet of clusters does.
//! [`core_pipeline`] runs Purser's metering core over such a stream in memory (parse,
//! validate, deduplicate, aggregate per hour) for `bench-core`.

pub mod core_pipeline;
pub mod telemetry;
