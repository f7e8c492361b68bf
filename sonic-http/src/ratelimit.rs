//! A token bucket per tenant key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sonic_storage::TenantId;

/// Requests a key may make: `per_second` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell (>= 1).
    pub burst: u32,
}

impl Default for RateLimit {
    /// 20 requests per second, bursts of 40.
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every tenant seen.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit: RateLimit {
                per_second: if limit.per_second.is_finite() && limit.per_second > 0.0 {
                    limit.per_second
                } else {
                    1.0
                },
                burst: limit.burst.max(1),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `tenant`'s bucket at `now`, or says how long until one is there.
    pub(crate) fn take(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.limit.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_tenants_are_apart() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.take(&acme, t0).unwrap();
        }
        let wait = limiter.take(&acme, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        limiter.take(&globex, t0).unwrap();
        limiter
            .take(&acme, t0 + Duration::from_millis(100))
            .unwrap();
        assert!(
            limiter
                .take(&acme, t0 + Duration::from_millis(100))
                .is_err()
        );
    }
}
