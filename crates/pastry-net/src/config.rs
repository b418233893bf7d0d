//! Configuration files: TOML mapping onto [`pastry_core::Config`] (protocol) and
//! [`NetConfig`] (transport bounds), validated with clear errors naming the file and field.
//!
//! Every key is optional and defaults to the documented default. Durations carry their unit
//! in the key (`heartbeat_interval_ms`). Unknown keys are errors. Example:
//!
//! ```toml
//! b = 4
//! leaf_set_size = 16
//! heartbeat_interval_ms = 7000
//!
//! [net]
//! max_connections = 256
//! idle_timeout_ms = 30000
//!
//! [past]
//! replicas = 5
//! max_object_bytes = 1048576
//!
//! [scribe]
//! heartbeat_interval_ms = 5000
//! max_payload_bytes = 65536
//! ```
//!
//! The `[past]` table sets [`pastry_past::PastConfig`] fields: `replicas`, `max_replicas`,
//! `max_object_bytes`, `quota_bytes`, `caching`, `request_retries`, `request_timeout_ms`,
//! `replicate_timeout_ms`, `sync_interval_ms`, `update_sync_delay_ms`.
//!
//! The `[scribe]` table sets [`pastry_scribe::ScribeConfig`] fields (all but `seed`, which
//! each node draws from its own): `tick_interval_ms`, `heartbeat_interval_ms`,
//! `parent_timeout_ms`, `refresh_interval_ms`, `child_timeout_ms`, `subscribe_timeout_ms`,
//! `subscribe_backoff_max_ms`, `publish_timeout_ms`, `publish_attempts`,
//! `anycast_timeout_ms`, `max_topics`, `max_children_per_topic`, `max_children_total`,
//! `dedup_window`, `max_pending_publishes`, `max_pending_anycasts`, `max_search_visits`,
//! `max_payload_bytes`.

use std::path::Path;
use std::time::Duration;

use pastry_core::Config;
use serde::Deserialize;

/// Transport bounds of one node. Every queue and table the network can make grow is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Open QUIC connections at most; the least recently used is closed to make room.
    /// Default 256.
    pub max_connections: usize,
    /// Frames queued per peer connection; beyond it frames are dropped and counted (a
    /// batch, the frames one drain of the node produced for that peer, is always taken by
    /// an empty queue). Default 1024.
    pub send_queue_frames: usize,
    /// Messages from all connections waiting for the node's task; readers wait when it is
    /// full (QUIC flow control then slows the peers). Default 4096.
    pub inbound_queue: usize,
    /// A connection with no traffic either way for this long is closed. Default 30 s.
    pub idle_timeout: Duration,
    /// Giving up on a QUIC handshake after this long. Default 3 s.
    pub dial_timeout: Duration,
    /// Concurrent incoming handshakes at most; more are refused. Default 64.
    pub max_handshakes: usize,
    /// Routes awaiting their root's report (`POST /route`, `pastry lookup`) at most.
    /// Default 1024.
    pub max_pending_routes: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_connections: 256,
            send_queue_frames: 1024,
            inbound_queue: 4096,
            idle_timeout: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(3),
            max_handshakes: 64,
            max_pending_routes: 1024,
        }
    }
}

impl NetConfig {
    /// Checks every bound.
    ///
    /// # Errors
    /// The first field out of range, by name.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_connections", self.max_connections),
            ("send_queue_frames", self.send_queue_frames),
            ("inbound_queue", self.inbound_queue),
            ("max_handshakes", self.max_handshakes),
            ("max_pending_routes", self.max_pending_routes),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("invalid config `net.{field}`: must be positive"));
            }
        }
        if self.idle_timeout < Duration::from_millis(100) {
            return Err("invalid config `net.idle_timeout_ms`: must be at least 100".into());
        }
        if self.dial_timeout.is_zero() {
            return Err("invalid config `net.dial_timeout_ms`: must be positive".into());
        }
        Ok(())
    }
}

/// The configuration file's shape: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    b: Option<u8>,
    leaf_set_size: Option<usize>,
    neighborhood_size: Option<usize>,
    heartbeat_interval_ms: Option<u64>,
    heartbeat_timeout_ms: Option<u64>,
    probe_timeout_initial_ms: Option<u64>,
    probe_timeout_min_ms: Option<u64>,
    probe_timeout_max_ms: Option<u64>,
    ack_timeout_min_ms: Option<u64>,
    probe_retries: Option<u32>,
    indirect_probes: Option<usize>,
    max_outstanding_probes: Option<usize>,
    max_reroutes: Option<u8>,
    max_hops: Option<u8>,
    max_pending_acks: Option<usize>,
    max_held_messages: Option<usize>,
    max_payload_bytes: Option<usize>,
    join_timeout_ms: Option<u64>,
    join_attempts: Option<u32>,
    announce: Option<bool>,
    rt_maintenance_interval_ms: Option<u64>,
    rt_maintenance_probes: Option<usize>,
    row_probes: Option<usize>,
    failed_set_size: Option<usize>,
    failed_set_ttl_ms: Option<u64>,
    dedup_window: Option<usize>,
    net: Option<FileNet>,
    past: Option<FilePast>,
    scribe: Option<FileScribe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScribe {
    tick_interval_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    parent_timeout_ms: Option<u64>,
    refresh_interval_ms: Option<u64>,
    child_timeout_ms: Option<u64>,
    subscribe_timeout_ms: Option<u64>,
    subscribe_backoff_max_ms: Option<u64>,
    publish_timeout_ms: Option<u64>,
    publish_attempts: Option<u32>,
    anycast_timeout_ms: Option<u64>,
    max_topics: Option<usize>,
    max_children_per_topic: Option<usize>,
    max_children_total: Option<usize>,
    dedup_window: Option<usize>,
    max_pending_publishes: Option<usize>,
    max_pending_anycasts: Option<usize>,
    max_search_visits: Option<usize>,
    max_payload_bytes: Option<usize>,
}

/// Every configuration a node's file sets: protocol, transport, PAST, Scribe.
#[derive(Debug, Clone, Default)]
pub struct NodeConfigs {
    /// The protocol ([`Config`], top-level keys).
    pub core: Config,
    /// Transport bounds (`[net]`).
    pub net: NetConfig,
    /// PAST (`[past]`).
    pub past: pastry_past::PastConfig,
    /// Scribe (`[scribe]`).
    pub scribe: pastry_scribe::ScribeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePast {
    replicas: Option<usize>,
    max_replicas: Option<usize>,
    max_object_bytes: Option<usize>,
    quota_bytes: Option<u64>,
    caching: Option<bool>,
    request_retries: Option<u32>,
    request_timeout_ms: Option<u64>,
    replicate_timeout_ms: Option<u64>,
    sync_interval_ms: Option<u64>,
    update_sync_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNet {
    max_connections: Option<usize>,
    send_queue_frames: Option<usize>,
    inbound_queue: Option<usize>,
    idle_timeout_ms: Option<u64>,
    dial_timeout_ms: Option<u64>,
    max_handshakes: Option<usize>,
    max_pending_routes: Option<usize>,
}

/// Parses TOML text into validated configurations. `origin` names the text in errors.
///
/// # Errors
/// A message naming `origin` and the offending key: a syntax error, an unknown key, a value
/// of the wrong type, or a value [`Config::validate`] or [`NetConfig::validate`] rejects.
pub fn parse(origin: &str, text: &str) -> anyhow::Result<(Config, NetConfig)> {
    parse_all(origin, text).map(|(c, n, _)| (c, n))
}

/// [`parse`], plus the `[past]` table as a validated [`pastry_past::PastConfig`].
///
/// # Errors
/// As [`parse`], and `past.*` values PAST rejects (objects that would not fit the node's
/// `max_payload_bytes`, say).
pub fn parse_all(
    origin: &str,
    text: &str,
) -> anyhow::Result<(Config, NetConfig, pastry_past::PastConfig)> {
    parse_node(origin, text).map(|c| (c.core, c.net, c.past))
}

/// [`parse_all`], plus the `[scribe]` table as a validated [`pastry_scribe::ScribeConfig`].
///
/// # Errors
/// As [`parse_all`], and `scribe.*` values Scribe rejects (a `parent_timeout_ms` not above
/// `heartbeat_interval_ms`, say), or a `max_payload_bytes` that would not fit the node's.
pub fn parse_node(origin: &str, text: &str) -> anyhow::Result<NodeConfigs> {
    let file: FileConfig =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {}", e.message().trim()))?;
    let mut cfg = Config::default();
    // Plain fields keep their name; `Duration` fields take `<name>_ms`.
    macro_rules! set {
        ($($f:ident),* ; $($d:ident => $k:ident),*) => {
            $(if let Some(v) = file.$f { cfg.$f = v; })*
            $(if let Some(v) = file.$k { cfg.$d = Duration::from_millis(v); })*
        };
    }
    set!(b, leaf_set_size, neighborhood_size, probe_retries, indirect_probes,
        max_outstanding_probes,
        max_reroutes, max_hops, max_pending_acks, max_held_messages, max_payload_bytes,
        join_attempts, announce, rt_maintenance_probes, row_probes, failed_set_size, dedup_window;
        heartbeat_interval => heartbeat_interval_ms,
        heartbeat_timeout => heartbeat_timeout_ms,
        probe_timeout_initial => probe_timeout_initial_ms,
        probe_timeout_min => probe_timeout_min_ms,
        probe_timeout_max => probe_timeout_max_ms,
        ack_timeout_min => ack_timeout_min_ms,
        join_timeout => join_timeout_ms,
        rt_maintenance_interval => rt_maintenance_interval_ms,
        failed_set_ttl => failed_set_ttl_ms);
    let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let n = file.net.unwrap_or_default();
    let nd = NetConfig::default();
    let net = NetConfig {
        max_connections: n.max_connections.unwrap_or(nd.max_connections),
        send_queue_frames: n.send_queue_frames.unwrap_or(nd.send_queue_frames),
        inbound_queue: n.inbound_queue.unwrap_or(nd.inbound_queue),
        idle_timeout: ms(n.idle_timeout_ms, nd.idle_timeout),
        dial_timeout: ms(n.dial_timeout_ms, nd.dial_timeout),
        max_handshakes: n.max_handshakes.unwrap_or(nd.max_handshakes),
        max_pending_routes: n.max_pending_routes.unwrap_or(nd.max_pending_routes),
    };
    net.validate()
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let p = file.past.unwrap_or_default();
    let pd = pastry_past::PastConfig::default();
    let past = pastry_past::PastConfig {
        replicas: p.replicas.unwrap_or(pd.replicas),
        max_replicas: p.max_replicas.unwrap_or(pd.max_replicas),
        max_object_bytes: p.max_object_bytes.unwrap_or(pd.max_object_bytes),
        quota_bytes: p.quota_bytes.unwrap_or(pd.quota_bytes),
        caching: p.caching.unwrap_or(pd.caching),
        request_retries: p.request_retries.unwrap_or(pd.request_retries),
        request_timeout: ms(p.request_timeout_ms, pd.request_timeout),
        replicate_timeout: ms(p.replicate_timeout_ms, pd.replicate_timeout),
        sync_interval: ms(p.sync_interval_ms, pd.sync_interval),
        update_sync_delay: ms(p.update_sync_delay_ms, pd.update_sync_delay),
        ..pd
    };
    let s = file.scribe.unwrap_or_default();
    let sd = pastry_scribe::ScribeConfig::default();
    let scribe = pastry_scribe::ScribeConfig {
        tick_interval: ms(s.tick_interval_ms, sd.tick_interval),
        heartbeat_interval: ms(s.heartbeat_interval_ms, sd.heartbeat_interval),
        parent_timeout: ms(s.parent_timeout_ms, sd.parent_timeout),
        refresh_interval: ms(s.refresh_interval_ms, sd.refresh_interval),
        child_timeout: ms(s.child_timeout_ms, sd.child_timeout),
        subscribe_timeout: ms(s.subscribe_timeout_ms, sd.subscribe_timeout),
        subscribe_backoff_max: ms(s.subscribe_backoff_max_ms, sd.subscribe_backoff_max),
        publish_timeout: ms(s.publish_timeout_ms, sd.publish_timeout),
        publish_attempts: s.publish_attempts.unwrap_or(sd.publish_attempts),
        anycast_timeout: ms(s.anycast_timeout_ms, sd.anycast_timeout),
        max_topics: s.max_topics.unwrap_or(sd.max_topics),
        max_children_per_topic: s
            .max_children_per_topic
            .unwrap_or(sd.max_children_per_topic),
        max_children_total: s.max_children_total.unwrap_or(sd.max_children_total),
        dedup_window: s.dedup_window.unwrap_or(sd.dedup_window),
        max_pending_publishes: s.max_pending_publishes.unwrap_or(sd.max_pending_publishes),
        max_pending_anycasts: s.max_pending_anycasts.unwrap_or(sd.max_pending_anycasts),
        max_search_visits: s.max_search_visits.unwrap_or(sd.max_search_visits),
        max_payload_bytes: s.max_payload_bytes.unwrap_or(sd.max_payload_bytes),
        ..sd
    };
    scribe
        .validate()
        .map_err(|e| anyhow::anyhow!("{origin}: {e} (in [scribe])"))?;
    // A publication carries its payload plus Scribe's header in one Pastry message.
    if scribe.max_payload_bytes + SCRIBE_HEADROOM > cfg.max_payload_bytes {
        anyhow::bail!(
            "{origin}: invalid config `scribe.max_payload_bytes`: {} plus {SCRIBE_HEADROOM} \
             bytes of Scribe headers must fit the node's max_payload_bytes ({})",
            scribe.max_payload_bytes,
            cfg.max_payload_bytes
        );
    }
    past.validate_with(&cfg)
        .map_err(|e| anyhow::anyhow!("{origin}: {e} (in [past])"))?;
    Ok(NodeConfigs {
        core: cfg,
        net,
        past,
        scribe,
    })
}

/// Bytes a Scribe message adds to its payload at most, besides search lists (publish and
/// data headers: topic, ids, numbers).
const SCRIBE_HEADROOM: usize = 1024;

/// [`load`], plus the `[past]` and `[scribe]` tables (see [`parse_node`]).
///
/// # Errors
/// As [`load`] and [`parse_node`].
pub fn load_node(path: &Path) -> anyhow::Result<NodeConfigs> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {origin}: {e}"))?;
    parse_node(&origin, &text)
}

/// [`load`], plus the `[past]` table (see [`parse_all`]).
///
/// # Errors
/// As [`load`] and [`parse_all`].
pub fn load_all(path: &Path) -> anyhow::Result<(Config, NetConfig, pastry_past::PastConfig)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {origin}: {e}"))?;
    parse_all(&origin, &text)
}

/// Reads and parses a configuration file.
///
/// # Errors
/// When the file cannot be read (the error names it), or as [`parse`].
pub fn load(path: &Path) -> anyhow::Result<(Config, NetConfig)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {origin}: {e}"))?;
    parse(&origin, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_keys_map_to_fields() {
        let (cfg, net) = parse("x.toml", "").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(net, NetConfig::default());
        let (cfg, net) = parse(
            "x.toml",
            "b = 3\nheartbeat_interval_ms = 1000\nheartbeat_timeout_ms = 1500\n[net]\nmax_connections = 9\n",
        )
        .unwrap();
        assert_eq!(cfg.b, 3);
        assert_eq!(cfg.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(net.max_connections, 9);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = parse("my.toml", "bogus = 1").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("bogus"), "{e}");
        let e = parse("my.toml", "b = 12").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("`b`"), "{e}");
        let e = parse("my.toml", "b = \"four\"").unwrap_err().to_string();
        assert!(e.contains("my.toml"), "{e}");
        let e = parse("my.toml", "[net]\nmax_connections = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("net.max_connections"), "{e}");
        let e = parse("my.toml", "[net]\nfoo = 0").unwrap_err().to_string();
        assert!(e.contains("foo"), "{e}");
        let e = parse("my.toml", "[past]\nreplicas = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml") && e.contains("replicas"), "{e}");
        let e = parse("my.toml", "[past]\nmax_object_bytes = 9000000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_object_bytes"), "{e}");
        let (_, _, p) =
            parse_all("my.toml", "[past]\nreplicas = 3\nrequest_timeout_ms = 4000").unwrap();
        assert_eq!((p.replicas, p.request_timeout), (3, Duration::from_secs(4)));
        let c = parse_node(
            "my.toml",
            "[scribe]\ntick_interval_ms = 100\nheartbeat_interval_ms = 500\nparent_timeout_ms = 2000",
        )
        .unwrap();
        assert_eq!(c.scribe.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.scribe.parent_timeout, Duration::from_secs(2));
        let e = parse_node("my.toml", "[scribe]\nbogus = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml") && e.contains("bogus"), "{e}");
        let e = parse_node("my.toml", "[scribe]\nparent_timeout_ms = 1000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parent_timeout") && e.contains("[scribe]"),
            "{e}"
        );
        let e = parse_node(
            "my.toml",
            "max_payload_bytes = 4096\n[scribe]\nmax_payload_bytes = 4000",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("scribe.max_payload_bytes"), "{e}");
        let e = load(Path::new("/nonexistent/pastry.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pastry.toml"), "{e}");
    }
}
