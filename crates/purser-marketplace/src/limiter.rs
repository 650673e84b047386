//! A client-side request-rate limit, shared by every caller of one client.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Fixed pacing: requests start at least `interval` apart. Simpler than a token
/// bucket and never bursts above the quota, which is what AWS's published rate
/// (10 requests a second per account and region) asks for.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `None` for a marketplace without a published rate: no waiting.
    pub fn per_second(rate: Option<u32>) -> Pacer {
        let interval = match rate {
            Some(rate) if rate > 0 => Duration::from_secs(1) / rate,
            _ => Duration::ZERO,
        };
        Pacer {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's turn. The slot is reserved under the lock and the
    /// wait happens outside it, so concurrent callers queue in order.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let pacer = Arc::new(Pacer::per_second(Some(10)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..21 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                pacer.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.expect("task"));
        }
        times.sort();
        // 21 requests at 10/s: the last starts two seconds after the first.
        assert_eq!(times[0], start);
        assert_eq!(*times.last().expect("last") - start, Duration::from_secs(2));
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(100));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_rate_means_no_wait() {
        let pacer = Pacer::per_second(None);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.acquire().await;
        }
        assert_eq!(Instant::now(), start);
    }
}
