//! [`PastConfig`]: every PAST parameter, documented, with defaults and validation.
//!
//! Defaults follow the PAST paper where it gives a value (k = 5, t_pri = 0.1,
//! t_div = 0.05, three file-diversion retries) and are otherwise chosen for rings of a
//! few thousand nodes with sub-second round-trip times.

use core::fmt;
use core::time::Duration;

/// PAST's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PastConfig {
    /// Replicas per object when the client does not say (the paper's k). Default 5.
    pub replicas: usize,
    /// Largest k a client may ask for. The replica set comes from the leaf set, so it is at
    /// most |L|/2 + 1 (9 with |L| = 16). Default 8.
    pub max_replicas: usize,
    /// Largest object content in bytes. Together with the message overhead it must fit in
    /// pastry-core's `max_payload_bytes` ([`PastConfig::validate_with`]). Default 1 MiB.
    pub max_object_bytes: usize,
    /// Bytes of replicas (primary and diverted) a node stores at most. Default 256 MiB.
    pub quota_bytes: u64,
    /// The paper's t_pri: a node refuses a primary replica of size S when
    /// S / free space > t_pri. Default 0.1.
    pub t_pri: f64,
    /// The paper's t_div: a node refuses a diverted replica when S / free space > t_div.
    /// Smaller than `t_pri`, so diverted replicas go to nodes with plenty of room. Default 0.05.
    pub t_div: f64,
    /// Leaf-set members a full replica node asks in turn to hold a diverted replica.
    /// Default 3.
    pub diversion_attempts: usize,
    /// Diversion pointers a node keeps at most. Default 65,536.
    pub max_pointers: usize,
    /// How many times a client retries a named insert under a new salt after `NoSpace`
    /// (file diversion). Default 3 (the paper's).
    pub file_diversion_retries: u32,
    /// Cache objects seen on lookups (route nodes and the client). Default true.
    pub caching: bool,
    /// Bytes of cached objects at most. Default 16 MiB.
    pub cache_capacity_bytes: u64,
    /// Cached objects at most. Default 4,096.
    pub cache_max_entries: usize,
    /// A cached object older than this is not served (owned objects may have changed).
    /// Default 10 min.
    pub cache_ttl: Duration,
    /// A node answering a lookup pushes the object into the caches of up to this many of
    /// the last nodes on the lookup's route. 0 caches only at the client. Default 2.
    pub cache_path_nodes: usize,
    /// A client request (insert, lookup, handles, fetch) is retried after this long without
    /// an answer. Default 6 s.
    pub request_timeout: Duration,
    /// Retries of a client request before it fails with `Timeout`. Default 2. An insert
    /// whose root reports a passing failure (a replica not responsible by its own view,
    /// `Busy`, a missed acknowledgement) is retried within the same budget.
    pub request_retries: u32,
    /// Wait before the first retry of such an insert, doubled for each further one.
    /// Default 500 ms.
    pub retry_backoff: Duration,
    /// How long the root of an insert waits for the replica nodes' acknowledgements.
    /// Default 3 s.
    pub replicate_timeout: Duration,
    /// How long a node waits for a diversion target's answer. Default 800 ms.
    pub diversion_timeout: Duration,
    /// Outstanding client requests per node at most. Default 1,024.
    pub max_pending_requests: usize,
    /// Inserts a root coordinates at once at most. Default 256.
    pub max_pending_inserts: usize,
    /// Replica diversions in progress at once at most. Default 256.
    pub max_pending_diversions: usize,
    /// Period of the replica-maintenance sweep over the node's key range. Default 60 s.
    pub sync_interval: Duration,
    /// Delay between maintenance rounds while a sweep is not finished (more keys than one
    /// digest holds). Default 1 s.
    pub sync_batch_delay: Duration,
    /// A maintenance round runs this long after a leaf-set change (debounced). Default 2 s.
    pub update_sync_delay: Duration,
    /// Keys per digest chunk and per hand-off offer. Default 256.
    pub sync_max_keys: usize,
    /// Object bytes one node sends one peer per maintenance round (at least one object).
    /// Default 1 MiB.
    pub sync_max_bytes: usize,
}

impl Default for PastConfig {
    fn default() -> Self {
        PastConfig {
            replicas: 5,
            max_replicas: 8,
            max_object_bytes: 1 << 20,
            quota_bytes: 256 << 20,
            t_pri: 0.1,
            t_div: 0.05,
            diversion_attempts: 3,
            max_pointers: 65_536,
            file_diversion_retries: 3,
            caching: true,
            cache_capacity_bytes: 16 << 20,
            cache_max_entries: 4096,
            cache_ttl: Duration::from_secs(600),
            cache_path_nodes: 2,
            request_timeout: Duration::from_secs(6),
            request_retries: 2,
            retry_backoff: Duration::from_millis(500),
            replicate_timeout: Duration::from_secs(3),
            diversion_timeout: Duration::from_millis(800),
            max_pending_requests: 1024,
            max_pending_inserts: 256,
            max_pending_diversions: 256,
            sync_interval: Duration::from_secs(60),
            sync_batch_delay: Duration::from_secs(1),
            update_sync_delay: Duration::from_secs(2),
            sync_max_keys: 256,
            sync_max_bytes: 1 << 20,
        }
    }
}

/// A [`PastConfig`] field with an impossible value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastConfigError {
    field: &'static str,
    reason: String,
}

impl PastConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        PastConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The offending field.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for PastConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid PAST config `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for PastConfigError {}

/// Bytes a PAST message adds around the objects it carries, at most (envelope, ids,
/// handles, counts).
pub const MESSAGE_OVERHEAD: usize = 4096;

/// Largest `max_replicas`: a leaf set holds at most 2 x 128 members, but a replica set
/// only reaches |L|/2 + 1, and the wire format carries k in a byte.
pub const MAX_REPLICAS: usize = 32;

impl PastConfig {
    /// Checks every field on its own and against the others.
    ///
    /// # Errors
    /// The first offending field.
    pub fn validate(&self) -> Result<(), PastConfigError> {
        fn e(field: &'static str, reason: impl Into<String>) -> PastConfigError {
            PastConfigError::new(field, reason)
        }
        if self.max_replicas == 0 || self.max_replicas > MAX_REPLICAS {
            return Err(e("max_replicas", format!("must be 1..={MAX_REPLICAS}")));
        }
        if self.replicas == 0 || self.replicas > self.max_replicas {
            return Err(e("replicas", "must be 1..=max_replicas"));
        }
        if self.max_object_bytes == 0 || self.max_object_bytes > crate::codec::MAX_OBJECT_WIRE {
            return Err(e(
                "max_object_bytes",
                format!("must be 1..={}", crate::codec::MAX_OBJECT_WIRE),
            ));
        }
        if self.quota_bytes == 0 {
            return Err(e("quota_bytes", "must be positive"));
        }
        if !(self.t_pri > 0.0 && self.t_pri <= 1.0) {
            return Err(e("t_pri", "must be in (0, 1]"));
        }
        if !(self.t_div > 0.0 && self.t_div <= self.t_pri) {
            return Err(e("t_div", "must be in (0, t_pri]"));
        }
        if self.diversion_attempts > 16 {
            return Err(e("diversion_attempts", "must be at most 16"));
        }
        if self.cache_max_entries == 0 && self.caching {
            return Err(e("cache_max_entries", "must be positive when caching"));
        }
        if self.cache_path_nodes > crate::codec::MAX_PATH {
            return Err(e(
                "cache_path_nodes",
                format!("must be at most {}", crate::codec::MAX_PATH),
            ));
        }
        for (field, d) in [
            ("request_timeout", self.request_timeout),
            ("retry_backoff", self.retry_backoff),
            ("replicate_timeout", self.replicate_timeout),
            ("diversion_timeout", self.diversion_timeout),
            ("sync_interval", self.sync_interval),
            ("sync_batch_delay", self.sync_batch_delay),
        ] {
            if d.is_zero() {
                return Err(e(field, "must be positive"));
            }
        }
        if self.request_retries > 16 {
            return Err(e("request_retries", "must be at most 16"));
        }
        if self.file_diversion_retries > 16 {
            return Err(e("file_diversion_retries", "must be at most 16"));
        }
        // A diversion must finish before the root gives up on the replica, and the root
        // must answer before the client retries.
        let diverting = self.diversion_timeout * self.diversion_attempts as u32;
        if diverting >= self.replicate_timeout {
            return Err(e(
                "replicate_timeout",
                "must exceed diversion_timeout x diversion_attempts",
            ));
        }
        if self.replicate_timeout >= self.request_timeout {
            return Err(e("request_timeout", "must exceed replicate_timeout"));
        }
        if self.max_pending_requests == 0
            || self.max_pending_inserts == 0
            || self.max_pending_diversions == 0
        {
            return Err(e("max_pending_requests", "pending limits must be positive"));
        }
        if self.sync_max_keys == 0 || self.sync_max_keys > crate::codec::MAX_LIST {
            return Err(e(
                "sync_max_keys",
                format!("must be 1..={}", crate::codec::MAX_LIST),
            ));
        }
        if self.sync_max_bytes == 0 {
            return Err(e("sync_max_bytes", "must be positive"));
        }
        Ok(())
    }

    /// [`PastConfig::validate`], and that every PAST message fits in the node's
    /// `max_payload_bytes` (messages over it would be dropped by the node).
    ///
    /// # Errors
    /// The first offending field.
    pub fn validate_with(&self, core: &pastry_core::Config) -> Result<(), PastConfigError> {
        self.validate()?;
        let largest = self.max_object_bytes.max(self.sync_max_bytes)
            + crate::object::CERT_LEN
            + MESSAGE_OVERHEAD;
        if largest > core.max_payload_bytes {
            return Err(PastConfigError::new(
                "max_object_bytes",
                format!(
                    "objects and sync batches ({largest} bytes with overhead) must fit in the node's max_payload_bytes ({})",
                    core.max_payload_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_the_core_defaults() {
        let c = PastConfig::default();
        c.validate().unwrap();
        c.validate_with(&pastry_core::Config::default()).unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        type Edit = Box<dyn Fn(&mut PastConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("replicas", Box::new(|c| c.replicas = 0)),
            ("replicas", Box::new(|c| c.replicas = 9)),
            ("max_replicas", Box::new(|c| c.max_replicas = 33)),
            ("max_object_bytes", Box::new(|c| c.max_object_bytes = 0)),
            ("quota_bytes", Box::new(|c| c.quota_bytes = 0)),
            ("t_pri", Box::new(|c| c.t_pri = 1.5)),
            ("t_pri", Box::new(|c| c.t_pri = f64::NAN)),
            ("t_div", Box::new(|c| c.t_div = 0.2)),
            (
                "request_timeout",
                Box::new(|c| c.request_timeout = Duration::ZERO),
            ),
            (
                "request_timeout",
                Box::new(|c| c.request_timeout = Duration::from_secs(1)),
            ),
            (
                "replicate_timeout",
                Box::new(|c| c.diversion_timeout = Duration::from_secs(2)),
            ),
            ("sync_max_keys", Box::new(|c| c.sync_max_keys = 0)),
            ("sync_max_bytes", Box::new(|c| c.sync_max_bytes = 0)),
            ("cache_max_entries", Box::new(|c| c.cache_max_entries = 0)),
        ];
        for (field, f) in cases {
            let mut c = PastConfig::default();
            f(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn objects_must_fit_the_node_payload() {
        let c = PastConfig {
            max_object_bytes: 2 << 20,
            ..PastConfig::default()
        };
        c.validate().unwrap();
        let err = c
            .validate_with(&pastry_core::Config::default())
            .unwrap_err();
        assert_eq!(err.field(), "max_object_bytes");
    }
}
