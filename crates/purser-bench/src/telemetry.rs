//! A deterministic generator of telemetry-shaped CloudEvents (NDJSON).
//!
//! Shape, per cluster and five-minute interval:
//! - `storage.capacity.sampled`: `data.bytes_stored`, a gauge that drifts slowly;
//! - `storage.io.counted`: `data.bytes_written` and `data.bytes_read` for the interval.
//!
//! Arrival order is what a fleet produces: most events arrive within a minute, a few
//! percent up to two hours late; a share (3% by default) is sent twice, the second copy
//! later. The same seed gives the same stream, byte for byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct Shape {
    pub accounts: u32,
    pub clusters_per_account: u32,
    pub start: Timestamp,
    pub days: u32,
    /// Share of events sent twice, e.g. 0.03.
    pub resend_share: f64,
    /// Share of events delayed by up to `max_delay` rather than up to a minute.
    pub late_share: f64,
    pub max_delay: SignedDuration,
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            accounts: 1_000,
            clusters_per_account: 1,
            start: Timestamp::from_second(1_794_787_200).unwrap_or(Timestamp::UNIX_EPOCH), // 2026-11-16T00:00:00Z
            days: 7,
            resend_share: 0.03,
            late_share: 0.05,
            max_delay: SignedDuration::from_hours(2),
            seed: 1,
        }
    }
}

const INTERVAL_SECONDS: i64 = 300;

/// What was written: for the benchmark's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub events: u64,
    pub resent: u64,
    pub bytes: u64,
}

struct Pending {
    arrival: i64,
    order: u64,
    line: String,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.order) == (other.arrival, other.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.arrival, self.order).cmp(&(other.arrival, other.order))
    }
}

/// Writes the stream in arrival order. Memory stays bounded by the events in flight
/// within the largest delay (two hours of the fleet's events).
pub fn generate(shape: &Shape, out: &mut impl Write) -> std::io::Result<Written> {
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let n_clusters = (shape.accounts * shape.clusters_per_account) as usize;
    // A stored size per cluster, between 10 TiB and 2 PiB, drifting a little each sample.
    let mut stored: Vec<u64> = (0..n_clusters)
        .map(|_| rng.random_range(10u64 << 40..2u64 << 50))
        .collect();
    let mut seq: Vec<u64> = vec![0; n_clusters];
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut written = Written::default();
    let mut order = 0u64;
    let start = shape.start.as_second();
    let n_ticks = i64::from(shape.days) * 86_400 / INTERVAL_SECONDS;
    let max_delay = shape.max_delay.as_secs().max(1);
    for tick in 0..n_ticks {
        let now = start + tick * INTERVAL_SECONDS;
        for cluster in 0..n_clusters {
            let account = cluster as u32 / shape.clusters_per_account;
            let region = REGIONS[account as usize % REGIONS.len()];
            let drift = rng.random_range(0..(stored[cluster] / 2_000).max(1));
            stored[cluster] = if rng.random_bool(0.5) {
                stored[cluster] + drift
            } else {
                stored[cluster].saturating_sub(drift)
            };
            let written_bytes: u64 = rng.random_range(0..64u64 << 30);
            let read_bytes: u64 = rng.random_range(0..256u64 << 30);
            let time = Timestamp::from_second(now + rng.random_range(0..30)).unwrap_or(shape.start);
            let events = [
                (
                    "storage.capacity.sampled",
                    format!(
                        r#"{{"cluster_id":"c-{cluster:05}","bytes_stored":{},"tier":"hot"}}"#,
                        stored[cluster]
                    ),
                ),
                (
                    "storage.io.counted",
                    format!(
                        r#"{{"cluster_id":"c-{cluster:05}","bytes_written":{written_bytes},"bytes_read":{read_bytes},"interval_seconds":{INTERVAL_SECONDS}}}"#
                    ),
                ),
            ];
            for (event_type, data) in events {
                seq[cluster] += 1;
                let line = format!(
                    r#"{{"specversion":"1.0","id":"c-{cluster:05}-{}","source":"polaris://{region}/clusters/c-{cluster:05}","type":"{event_type}","subject":"acct-{account:05}","time":"{time}","datacontenttype":"application/json","data":{data}}}"#,
                    seq[cluster]
                );
                let delay = if rng.random_bool(shape.late_share) {
                    rng.random_range(60..=max_delay)
                } else {
                    rng.random_range(0..60)
                };
                let arrival = time.as_second() + delay;
                if rng.random_bool(shape.resend_share) {
                    order += 1;
                    let again = arrival + rng.random_range(1..600);
                    heap.push(Reverse(Pending {
                        arrival: again,
                        order,
                        line: line.clone(),
                    }));
                    written.resent += 1;
                }
                order += 1;
                heap.push(Reverse(Pending {
                    arrival,
                    order,
                    line,
                }));
            }
        }
        // Everything due to arrive before the next tick leaves now, in arrival order.
        let horizon = now + INTERVAL_SECONDS;
        while heap.peek().is_some_and(|Reverse(p)| p.arrival < horizon) {
            if let Some(Reverse(pending)) = heap.pop() {
                emit(out, &pending.line, &mut written)?;
            }
        }
    }
    while let Some(Reverse(pending)) = heap.pop() {
        emit(out, &pending.line, &mut written)?;
    }
    Ok(written)
}

fn emit(out: &mut impl Write, line: &str, written: &mut Written) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    written.events += 1;
    written.bytes += line.len() as u64 + 1;
    Ok(())
}

const REGIONS: [&str; 6] = [
    "us-east-1",
    "us-central1",
    "europe-west4",
    "eastus",
    "westeurope",
    "asia-southeast1",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Shape {
        Shape {
            accounts: 5,
            days: 1,
            ..Shape::default()
        }
    }

    #[test]
    fn the_stream_is_deterministic_and_sized_as_asked() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let written = generate(&small(), &mut a).expect("write");
        generate(&small(), &mut b).expect("write");
        assert_eq!(a, b, "same seed, same bytes");
        let originals = 5 * 288 * 2;
        assert_eq!(written.events, originals + written.resent);
        let share = written.resent as f64 / originals as f64;
        assert!((0.015..0.05).contains(&share), "about 3% resent: {share}");
        assert_eq!(
            a.iter().filter(|b| **b == b'\n').count() as u64,
            written.events
        );
    }

    #[test]
    fn events_arrive_out_of_order_but_never_more_than_the_delay_late() {
        let mut out = Vec::new();
        generate(&small(), &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let times: Vec<Timestamp> = text
            .lines()
            .map(|line| {
                let start = line.find(r#""time":""#).expect("time") + 8;
                line[start..start + 20].parse().expect("RFC 3339")
            })
            .collect();
        let mut latest = times[0];
        let mut n_out_of_order = 0;
        for time in &times {
            if *time < latest {
                n_out_of_order += 1;
                let late = latest.duration_since(*time);
                assert!(
                    late <= SignedDuration::from_hours(2) + SignedDuration::from_mins(15),
                    "{late:?}"
                );
            }
            latest = latest.max(*time);
        }
        assert!(n_out_of_order > 0, "some events arrive out of order");
    }
}
