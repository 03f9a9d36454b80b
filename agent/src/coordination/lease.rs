//! How long a leadership is certainly alive, on this process's monotonic clock.

use std::time::{Duration, Instant};

/// Destructive work stops this long before the lease could have expired: room for a delete
/// request already on its way and for the two clocks' rates to differ.
const DESTROY_MARGIN: Duration = Duration::from_secs(3);

/// Tracks the latest moment the jobs lease is certainly alive at etcd. A renewal sent at instant
/// `t` and acknowledged keeps the lease until at least `t + TTL` at etcd (etcd counts from when it
/// received it, which is later), so work that must not outlive the lease stops before
/// `t + TTL - margin` on this process's monotonic clock. A paused or partitioned process simply
/// finds the deadline passed when it resumes.
pub struct LeaseClock {
    /// None: no lease, the holder can never be deposed (a sole writer).
    ttl: Option<Duration>,
    renewed_at: std::sync::Mutex<Instant>,
}

impl LeaseClock {
    /// `granted_at`: when the request that created the lease was sent.
    pub fn new(ttl: Duration, granted_at: Instant) -> Self {
        Self { ttl: Some(ttl), renewed_at: std::sync::Mutex::new(granted_at) }
    }

    /// For the journal's only writer: there is no lease to lose.
    pub fn unbounded() -> Self {
        Self { ttl: None, renewed_at: std::sync::Mutex::new(Instant::now()) }
    }

    /// A renewal sent at `sent_at` was acknowledged with a live TTL.
    pub fn renewed(&self, sent_at: Instant) {
        let mut renewed_at = self.renewed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *renewed_at = (*renewed_at).max(sent_at);
    }

    /// Whether destructive work may start now.
    pub fn may_destroy_at(&self, now: Instant) -> bool {
        let Some(ttl) = self.ttl else { return true };
        let renewed_at = *self.renewed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        now < renewed_at + ttl.saturating_sub(DESTROY_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destruction_stops_before_the_lease_could_expire_counting_from_the_last_renewal_sent() {
        let granted = Instant::now();
        let clock = LeaseClock::new(Duration::from_secs(10), granted);
        assert!(clock.may_destroy_at(granted + Duration::from_secs(6)));
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(7)), "within the margin of the TTL");
        clock.renewed(granted + Duration::from_secs(4));
        assert!(clock.may_destroy_at(granted + Duration::from_secs(10)));
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(11)));
        // A late acknowledgement of an older renewal never moves the deadline back.
        clock.renewed(granted + Duration::from_secs(1));
        assert!(clock.may_destroy_at(granted + Duration::from_secs(10)));
        // A process paused for a minute finds the deadline long passed when it resumes.
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(70)));
        // The sole writer of a journal has no lease to lose.
        assert!(LeaseClock::unbounded().may_destroy_at(granted + Duration::from_secs(1_000_000)));
    }
}
