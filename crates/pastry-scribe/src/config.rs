//! [`ScribeConfig`]: every interval and bound Scribe uses, documented, with defaults.
//!
//! Build one with [`ScribeConfig::default`], change fields, then call
//! [`ScribeConfig::validate`]; [`crate::Scribe::new`] refuses an invalid configuration.

use core::fmt;
use core::time::Duration;

use crate::wire::{MAX_PAYLOAD, MAX_VISIT};

/// Scribe's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScribeConfig {
    /// Period of Scribe's maintenance timer: heartbeats, refreshes, timeouts and retries are
    /// checked at this granularity. Default 1 s.
    pub tick_interval: Duration,
    /// A parent sends each child a heartbeat when it sent it nothing (no data) for this
    /// long; data messages stand in for heartbeats. Default 5 s.
    pub heartbeat_interval: Duration,
    /// A child that hears nothing from its parent for this long takes it for dead and
    /// subscribes again (routes towards the topic). Must exceed `heartbeat_interval`.
    /// Default 16 s (three missed heartbeats).
    pub parent_timeout: Duration,
    /// A child tells its parent it is still a child this often. Default 10 s.
    pub refresh_interval: Duration,
    /// A parent that hears nothing from a child for this long drops it. Must exceed
    /// `refresh_interval`. Default 32 s.
    pub child_timeout: Duration,
    /// Time to wait for a subscription's answer before trying again. Default 4 s.
    pub subscribe_timeout: Duration,
    /// Longest wait between subscription attempts: the wait doubles from
    /// `subscribe_timeout` after each failed attempt up to this. Default 30 s.
    pub subscribe_backoff_max: Duration,
    /// Time to wait for the root's acknowledgement of a publish before routing it again.
    /// Default 3 s.
    pub publish_timeout: Duration,
    /// Publish attempts before giving up with [`crate::ScribeEvent::PublishFailed`].
    /// Default 3.
    pub publish_attempts: u32,
    /// Time after which an anycast without an answer is reported failed. Default 10 s.
    pub anycast_timeout: Duration,
    /// Topics a node keeps state for (as member, forwarder or root), at most. Subscribes
    /// and adoptions beyond it are refused. Default 256.
    pub max_topics: usize,
    /// Children per topic at most; a full node pushes new children down to its children
    /// (the paper's push-down). Default 16.
    pub max_children_per_topic: usize,
    /// Children over all topics at most (the node's outgoing capacity). Default 256.
    pub max_children_total: usize,
    /// Published messages remembered per topic to suppress duplicates. Default 1024.
    pub dedup_window: usize,
    /// Recent messages each tree node keeps per topic, so that a child that lost its
    /// parent gets, from its new parent, those published while it had none (Scribe proper
    /// is best effort and loses them). 0 turns replay off. Default 64.
    pub replay_messages: usize,
    /// Payload bytes of those recent messages per topic, at most. Default 256 KiB.
    pub replay_bytes: usize,
    /// Publishes awaiting the root's acknowledgement, at most; `publish` fails beyond it.
    /// Default 256.
    pub max_pending_publishes: usize,
    /// Anycasts awaiting an answer, at most; `anycast` fails beyond it. Default 256.
    pub max_pending_anycasts: usize,
    /// Nodes a push-down or anycast search visits at most before it gives up (at most
    /// [`MAX_VISIT`]). Default 64.
    pub max_search_visits: usize,
    /// Largest payload `publish` and `anycast` accept (at most [`MAX_PAYLOAD`]). Default
    /// 64 KiB.
    pub max_payload_bytes: usize,
    /// Seed of Scribe's random choices (which child to try first, jitter). Hosts give each
    /// node its own. Default 0.
    pub seed: u64,
}

impl Default for ScribeConfig {
    fn default() -> Self {
        ScribeConfig {
            tick_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            parent_timeout: Duration::from_secs(16),
            refresh_interval: Duration::from_secs(10),
            child_timeout: Duration::from_secs(32),
            subscribe_timeout: Duration::from_secs(4),
            subscribe_backoff_max: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(3),
            publish_attempts: 3,
            anycast_timeout: Duration::from_secs(10),
            max_topics: 256,
            max_children_per_topic: 16,
            max_children_total: 256,
            dedup_window: 1024,
            replay_messages: 64,
            replay_bytes: 256 << 10,
            max_pending_publishes: 256,
            max_pending_anycasts: 256,
            max_search_visits: 64,
            max_payload_bytes: 64 << 10,
            seed: 0,
        }
    }
}

/// A configuration value out of its allowed range (the string names the field and rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScribeConfigError(pub &'static str);

impl fmt::Display for ScribeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scribe configuration: {}", self.0)
    }
}

impl std::error::Error for ScribeConfigError {}

impl ScribeConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// [`ScribeConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ScribeConfigError> {
        let e = |s| Err(ScribeConfigError(s));
        if self.tick_interval.is_zero() {
            return e("tick_interval must be positive");
        }
        if self.heartbeat_interval < self.tick_interval {
            return e("heartbeat_interval must be at least tick_interval");
        }
        if self.parent_timeout <= self.heartbeat_interval {
            return e("parent_timeout must exceed heartbeat_interval");
        }
        if self.refresh_interval < self.tick_interval {
            return e("refresh_interval must be at least tick_interval");
        }
        if self.child_timeout <= self.refresh_interval {
            return e("child_timeout must exceed refresh_interval");
        }
        if self.subscribe_timeout.is_zero() || self.subscribe_backoff_max < self.subscribe_timeout {
            return e("subscribe_timeout must be positive and at most subscribe_backoff_max");
        }
        if self.publish_timeout.is_zero() || self.publish_attempts == 0 {
            return e("publish_timeout and publish_attempts must be positive");
        }
        if self.anycast_timeout.is_zero() {
            return e("anycast_timeout must be positive");
        }
        if self.max_topics == 0 || self.max_topics > 65_536 {
            return e("max_topics must be in 1..=65536");
        }
        if self.max_children_per_topic == 0 || self.max_children_per_topic > 4096 {
            return e("max_children_per_topic must be in 1..=4096");
        }
        if self.max_children_total == 0 || self.max_children_total > 65_536 {
            return e("max_children_total must be in 1..=65536");
        }
        if self.dedup_window == 0 || self.dedup_window > 1 << 20 {
            return e("dedup_window must be in 1..=1048576");
        }
        if self.replay_messages > 4096 || self.replay_bytes > 64 << 20 {
            return e("replay_messages must be at most 4096 and replay_bytes at most 64 MiB");
        }
        if self.max_pending_publishes == 0 || self.max_pending_anycasts == 0 {
            return e("max_pending_publishes and max_pending_anycasts must be positive");
        }
        if self.max_search_visits == 0 || self.max_search_visits > MAX_VISIT {
            return e("max_search_visits must be in 1..=256");
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > MAX_PAYLOAD {
            return e("max_payload_bytes must be in 1..=1 MiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert_eq!(ScribeConfig::default().validate(), Ok(()));
        let c = ScribeConfig {
            parent_timeout: Duration::from_secs(1),
            ..ScribeConfig::default()
        };
        assert!(c.validate().unwrap_err().0.contains("parent_timeout"));
        let c = ScribeConfig {
            max_search_visits: 1000,
            ..ScribeConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
