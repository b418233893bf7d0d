//! Protocol parameters: every interval and bound the node uses, with the paper's defaults.
//!
//! The defaults aim at: a dead node's key range re-owned within about 10 s while an idle
//! node sends at most about 0.2 maintenance messages per second (see DESIGN.md for the
//! arithmetic). One `Config` is shared by every node of a process (`Arc<Config>`).

use core::fmt;
use core::time::Duration;

/// Node configuration. Build with [`Config::default`], change fields, then [`Config::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Bits per digit, `b` (1..=8). Routing tables have 2^b columns and routes take about
    /// log_{2^b} N hops. Default 4.
    pub b: u8,
    /// Leaf-set size |L|: |L|/2 members a side. Even, 2..=64. Default 16.
    pub leaf_set_size: usize,
    /// Neighbourhood-set size |M| (nearest nodes by RTT). Up to 256. Default 32.
    pub neighborhood_size: usize,

    /// How often a ready node sends its leaf set to its left neighbour as a heartbeat.
    /// Default 20 s (give or take 10%), FreePastry's: it is about a third of all
    /// control traffic under churn.
    pub heartbeat_interval: Duration,
    /// Silence from the right neighbour after which it is probed. Must exceed
    /// `heartbeat_interval` by more than 10%. Default 24 s.
    pub heartbeat_timeout: Duration,
    /// Probe and per-hop ack timeout for a node whose RTT was never measured. Default 1 s.
    pub probe_timeout_initial: Duration,
    /// Lower bound of RTT-derived timeouts (srtt + 4·rttvar). Default 200 ms.
    pub probe_timeout_min: Duration,
    /// Upper bound of RTT-derived timeouts. Default 2 s.
    pub probe_timeout_max: Duration,
    /// Probe retransmissions before a node is declared dead (attempts = retries + 1).
    /// Default 2.
    pub probe_retries: u32,
    /// Floor of a routed hop's ack timeout (the RTT estimate's srtt + 4 x rttvar, else
    /// `probe_timeout_initial`, capped at `probe_timeout_max`). Lower than
    /// `probe_timeout_min` because a late ack costs only a rerouted copy, while every dead
    /// routing-table entry a route meets costs it this long. Default 40 ms.
    pub ack_timeout_min: Duration,
    /// Other leaf-set members asked to probe a suspected member when our first probe of it
    /// goes unanswered, while our retries go on (SWIM's indirect probes): a live member
    /// whose probes were lost on one path is kept. 0: our own probes alone decide.
    /// Default 3.
    pub indirect_probes: usize,
    /// Outstanding probes at most; candidates beyond are skipped (liveness checks of
    /// current members may use twice as many). Default 256.
    pub max_outstanding_probes: usize,

    /// Times a message is rerouted around unresponsive next hops before it is dropped with
    /// a route failure. At least |L|/2, so that a message survives the failure of a whole
    /// leaf-set side (those nodes are often tried one after the other). Default 12.
    pub max_reroutes: u8,
    /// Hops after which a message is dropped as looping. Default 40.
    pub max_hops: u8,
    /// Forwarded messages awaiting a per-hop ack, at most; beyond it a message is sent
    /// without reroute protection (and counted). Default 4096.
    pub max_pending_acks: usize,
    /// Messages held while joining or while a suspected closer node is checked, at most;
    /// beyond it they are dropped (and counted). Default 512.
    pub max_held_messages: usize,
    /// Largest application payload accepted from applications and the network. Default
    /// 2 MiB (the codec's frame limit is 4 MiB).
    pub max_payload_bytes: usize,

    /// Time to wait for the join reply before trying again. Default 5 s.
    pub join_timeout: Duration,
    /// Join attempts (cycling through the bootstrap addresses) before giving up. Default 4.
    pub join_attempts: u32,
    /// After joining, tell the measured nodes (`announce_max`, nearest first) the RTT
    /// measured to them so they can use the new node if nearer (the paper's state
    /// announcement); also those probed in the minute after. Default true.
    pub announce: bool,
    /// How many measured nodes, nearest first, a new node announces itself to. Existing
    /// nodes learn of nearby newcomers only this way: proximity (relative delay penalty)
    /// depends on it. Default 64.
    pub announce_max: usize,
    /// Routing-table candidates a joining node probes per table slot, at most (it keeps
    /// the nearest). More gives better proximity and costs two messages each; the second
    /// join phase's row requests find nearer ones more cheaply. Default 1.
    pub join_probes_per_slot: usize,

    /// Period of routing-table maintenance: one row is fetched from a member of a random
    /// row (the nearest of three picked at random) and its better entries are probed.
    /// Default 300 s.
    pub rt_maintenance_interval: Duration,
    /// Candidates probed per row fetched by maintenance (beyond those for empty slots,
    /// which are all probed). Default 8.
    pub rt_maintenance_probes: usize,
    /// Candidates probed per row received otherwise: the join's second phase and the
    /// repair of a hole (beyond those for empty slots). Default 4.
    pub row_probes: usize,
    /// A route that takes the rare case because a routing-table slot is empty asks the
    /// next hop for that row, at most once per this interval. Default 1 s.
    pub rt_fill_interval: Duration,
    /// Nodes remembered as recently failed (ignored in gossip, announced to the leaf set).
    /// Default 32.
    pub failed_set_size: usize,
    /// How long a node stays in the failed set. Default 60 s.
    pub failed_set_ttl: Duration,
    /// Recent deliveries remembered (origin, request id) so that a message rerouted after
    /// a lost ack is not delivered twice. 0 turns de-duplication off. Default 64.
    pub dedup_window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            b: 4,
            leaf_set_size: 16,
            neighborhood_size: 32,
            heartbeat_interval: Duration::from_secs(20),
            heartbeat_timeout: Duration::from_secs(24),
            probe_timeout_initial: Duration::from_secs(1),
            probe_timeout_min: Duration::from_millis(200),
            probe_timeout_max: Duration::from_secs(2),
            probe_retries: 2,
            ack_timeout_min: Duration::from_millis(40),
            indirect_probes: 3,
            max_outstanding_probes: 256,
            max_reroutes: 12,
            max_hops: 40,
            max_pending_acks: 4096,
            max_held_messages: 512,
            max_payload_bytes: 2 << 20,
            join_timeout: Duration::from_secs(5),
            join_attempts: 4,
            announce: true,
            announce_max: 64,
            join_probes_per_slot: 1,
            rt_maintenance_interval: Duration::from_secs(300),
            rt_maintenance_probes: 8,
            row_probes: 4,
            rt_fill_interval: Duration::from_secs(1),
            failed_set_size: 32,
            failed_set_ttl: Duration::from_secs(60),
            dedup_window: 64,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: &'static str,
}

impl ConfigError {
    /// The offending field's name.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every field's range and the relations between fields.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if !(1..=8).contains(&self.b) {
            return err("b", "must be in 1..=8");
        }
        if self.leaf_set_size < 2
            || self.leaf_set_size > 64
            || !self.leaf_set_size.is_multiple_of(2)
        {
            return err("leaf_set_size", "must be even and in 2..=64");
        }
        if self.neighborhood_size > 256 {
            return err("neighborhood_size", "must be at most 256");
        }
        if self.heartbeat_interval.is_zero() {
            return err("heartbeat_interval", "must be positive");
        }
        if self.heartbeat_timeout <= self.heartbeat_interval.mul_f64(1.1) {
            return err(
                "heartbeat_timeout",
                "must exceed heartbeat_interval by more than 10% (its jitter)",
            );
        }
        if self.probe_timeout_min.is_zero() || self.probe_timeout_min > self.probe_timeout_max {
            return err(
                "probe_timeout_min",
                "must be positive and at most probe_timeout_max",
            );
        }
        if self.ack_timeout_min.is_zero() || self.ack_timeout_min > self.probe_timeout_max {
            return err(
                "ack_timeout_min",
                "must be positive and at most probe_timeout_max",
            );
        }
        if self.probe_retries > 10 {
            return err("probe_retries", "must be at most 10");
        }
        if self.indirect_probes > 16 {
            return err("indirect_probes", "must be at most 16");
        }
        if self.max_outstanding_probes < self.leaf_set_size {
            return err("max_outstanding_probes", "must be at least leaf_set_size");
        }
        if usize::from(self.max_reroutes) < self.leaf_set_size / 2 {
            return err("max_reroutes", "must be at least leaf_set_size / 2");
        }
        if self.max_hops < 8 {
            return err("max_hops", "must be at least 8");
        }
        if self.max_payload_bytes > crate::codec::MAX_FRAME_LEN - 64 * 1024 {
            return err(
                "max_payload_bytes",
                "must leave 64 KiB of the 4 MiB frame for headers",
            );
        }
        if self.join_timeout.is_zero() || self.join_attempts == 0 {
            return err(
                "join_timeout",
                "join_timeout and join_attempts must be positive",
            );
        }
        if self.rt_maintenance_interval.is_zero() {
            return err("rt_maintenance_interval", "must be positive");
        }
        if self.dedup_window > 4096 {
            return err("dedup_window", "must be at most 4096");
        }
        if self.failed_set_size > 1024 {
            return err("failed_set_size", "must be at most 1024");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = Config {
            b: 9,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "b");
        let bad = Config {
            leaf_set_size: 15,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "leaf_set_size");
        let bad = Config {
            heartbeat_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.field(), "heartbeat_timeout");
        assert!(e.to_string().contains("heartbeat_interval"));
    }
}
