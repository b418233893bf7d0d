//! Round-trip time estimates and the timeouts derived from them (Bamboo: srtt + 4·rttvar).

use core::time::Duration;

/// A smoothed RTT estimate (RFC 6298 gains), in microseconds; zero `srtt_us` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rtt {
    /// Smoothed round-trip time.
    pub srtt_us: u32,
    /// Smoothed mean deviation.
    pub rttvar_us: u32,
}

impl Rtt {
    /// No sample yet.
    pub const UNKNOWN: Rtt = Rtt {
        srtt_us: 0,
        rttvar_us: 0,
    };

    /// An estimate from one sample.
    pub fn from_sample(us: u32) -> Rtt {
        let us = us.max(1);
        Rtt {
            srtt_us: us,
            rttvar_us: us / 2,
        }
    }

    /// True when at least one sample was taken.
    pub fn is_known(self) -> bool {
        self.srtt_us != 0
    }

    /// Folds in a new sample.
    pub fn update(&mut self, us: u32) {
        if !self.is_known() {
            *self = Rtt::from_sample(us);
            return;
        }
        let us = us.max(1);
        let err = self.srtt_us.abs_diff(us);
        self.rttvar_us = ((3 * u64::from(self.rttvar_us) + u64::from(err)) / 4) as u32;
        self.srtt_us = ((7 * u64::from(self.srtt_us) + u64::from(us)) / 8).max(1) as u32;
    }

    /// The retransmission timeout: srtt + 4·rttvar within `[min, max]`, or `initial` when
    /// nothing was measured yet.
    pub fn timeout(self, initial: Duration, min: Duration, max: Duration) -> Duration {
        if !self.is_known() {
            return initial.clamp(min, max);
        }
        let us = u64::from(self.srtt_us) + 4 * u64::from(self.rttvar_us);
        Duration::from_micros(us).clamp(min, max)
    }

    /// The smoothed RTT for proximity comparisons; unknown sorts last.
    pub fn proximity(self) -> u32 {
        if self.is_known() {
            self.srtt_us
        } else {
            u32::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_bounds() {
        let mut r = Rtt::UNKNOWN;
        let (init, min, max) = (
            Duration::from_millis(500),
            Duration::from_millis(50),
            Duration::from_secs(2),
        );
        assert_eq!(r.timeout(init, min, max), init);
        for _ in 0..50 {
            r.update(10_000);
        }
        assert!(r.srtt_us.abs_diff(10_000) < 100, "{r:?}");
        // Steady samples shrink the variance, so the floor applies.
        assert_eq!(r.timeout(init, min, max), min);
        r.update(4_000_000);
        assert_eq!(r.timeout(init, min, max), max);
        assert_eq!(Rtt::UNKNOWN.proximity(), u32::MAX);
    }
}
