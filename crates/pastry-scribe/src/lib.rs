//! pastry-scribe: Scribe group communication and SplitStream on the Pastry KBR API.
//!
//! [`Scribe`] (Castro, Druschel, Kermarrec, Rowstron, JSAC 2002) builds one multicast tree
//! per topic out of the reverse of the Pastry routes from the members to the topic id's
//! root, and offers `subscribe`, `unsubscribe`, `publish` and `anycast`. [`SplitStream`]
//! (SOSP 2003) stripes a channel's content over 16 Scribe trees whose interior nodes are
//! (mostly) disjoint, with per-node forwarding capacity and a spare-capacity group.
//!
//! Both are sans-IO `pastry_core::Application`s: the host registers them on a
//! `pastry_core::Node` under an application id, calls their methods through
//! `Node::with_application`, and receives what they report as
//! `pastry_core::Event::Application` values: [`ScribeEvent`] and [`SplitStreamEvent`].
//! Neither ever reads a clock, does IO or uses OS randomness; every queue, list and window
//! is bounded by a [`ScribeConfig`] field or a wire constant.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use pastry_core::{Config, Event, Instant, Node, NodeId};
//! use pastry_scribe::{Scribe, ScribeConfig, ScribeEvent, topic_id};
//!
//! const SCRIBE: u16 = 3;
//! let mut node = Node::new(Arc::new(Config::default()), NodeId::from_u128(42), 0u32, 7);
//! let now = Instant::ZERO;
//! node.start_ring(now);
//! let scribe = Scribe::<u32>::new(ScribeConfig::default()).unwrap();
//! assert!(node.register(SCRIBE, Box::new(scribe)).is_ok());
//!
//! let topic = topic_id("news");
//! node.with_application(now, SCRIBE, |s: &mut Scribe<u32>, ctx| s.subscribe(ctx, topic))
//!     .unwrap()
//!     .unwrap();
//! node.with_application(now, SCRIBE, |s: &mut Scribe<u32>, ctx| {
//!     s.publish(ctx, topic, Bytes::from_static(b"hello"))
//! });
//! // A one-node ring: the node is root and only member; everything stays local.
//! let mut got = Vec::new();
//! while let Some(ev) = node.poll_event() {
//!     if let Event::Application { value, .. } = ev
//!         && let Ok(ev) = value.downcast::<ScribeEvent<u32>>()
//!         && let ScribeEvent::Delivered { payload, .. } = *ev
//!     {
//!         got.push(payload);
//!     }
//! }
//! assert_eq!(got, vec![Bytes::from_static(b"hello")]);
//! ```
//!
//! # Modules
//! - [`scribe`]: the Scribe application, its events, counters and inspection.
//! - [`policy`]: [`ScribePolicy`], the host's say in admission, anycast and search order.
//! - [`splitstream`]: SplitStream on top of an embedded Scribe.
//! - [`wire`]: Scribe's versioned binary message format.
//! - [`config`]: the configuration, [`ScribeConfig`].
#![warn(missing_docs)]

pub mod config;
pub mod policy;
pub mod scribe;
pub mod splitstream;
pub mod wire;

pub use config::{ScribeConfig, ScribeConfigError};
pub use policy::{Admission, AdmitKind, DefaultPolicy, ScribePolicy, ScribeView};
pub use scribe::{Scribe, ScribeError, ScribeEvent, ScribeStats, TopicInfo};
pub use splitstream::{SplitStream, SplitStreamConfig, SplitStreamEvent, SplitStreamStats};

use pastry_core::NodeId;
use sha2::{Digest, Sha256};

/// A topic: a key on the Pastry ring. Its root is the live node numerically closest to it.
pub type TopicId = NodeId;

/// The topic id of a name: the first 128 bits of SHA-256 of its UTF-8 bytes.
pub fn topic_id(name: &str) -> TopicId {
    topic_id_bytes(name.as_bytes())
}

/// The topic id of arbitrary bytes: the first 128 bits of their SHA-256.
pub fn topic_id_bytes(bytes: &[u8]) -> TopicId {
    let h = Sha256::digest(bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    NodeId::from_bytes(id)
}
