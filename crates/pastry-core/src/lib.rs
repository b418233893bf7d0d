//! pastry-core: the Pastry node as a sans-IO state machine.
//!
//! A [`Node`] holds one node's routing state (routing table, leaf set, neighbourhood set) and
//! runs the whole protocol: prefix routing with per-hop acknowledgements, the consistent join,
//! graceful leave, failure detection and repair, proximity neighbour selection. It never does
//! IO, never reads a clock and never touches OS randomness: the host passes time in, carries
//! its messages, and seeds it. The same node runs in the simulator (`pastry-sim`) and on
//! real sockets (`pastry-net`).
//!
//! # The drain contract
//! After every input (`handle_message`, `handle_timeout`, `join`, `route`, `leave`), the host
//! drains [`Node::poll_transmit`] and [`Node::poll_event`] until each returns `None`, then
//! reads [`Node::poll_timeout`] and calls [`Node::handle_timeout`] no later than that instant.
//! `poll_timeout` may report a deadline whose timer was since cancelled; calling
//! `handle_timeout` then is harmless. Time never goes backwards: a smaller `now` than before
//! is treated as the previous one.
//!
//! # Example: a run loop
//! Two nodes passing messages through an in-memory "network"; a real host does the same
//! with sockets and a monotonic clock.
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use pastry_core::{Config, Event, Instant, Node, NodeId};
//!
//! let cfg = Arc::new(Config::default());
//! let mut nodes = vec![
//!     Node::new(cfg.clone(), NodeId::from_u128(1 << 100), 0u32, 1),
//!     Node::new(cfg.clone(), NodeId::from_u128(7 << 120), 1u32, 2),
//! ];
//! let mut now = Instant::ZERO;
//! nodes[0].start_ring(now);
//! nodes[1].join(now, &[0]);
//! let mut delivered = 0;
//! let mut sent = false;
//! for _ in 0..100 {
//!     // Drain every node's output, carrying messages with 1 ms latency.
//!     let mut inflight = Vec::new();
//!     for (i, n) in nodes.iter_mut().enumerate() {
//!         while let Some(t) = n.poll_transmit() {
//!             inflight.push((t.to, i as u32, t.msg));
//!         }
//!         while let Some(ev) = n.poll_event() {
//!             if let Event::Delivered(d) = ev {
//!                 assert_eq!(d.data, Bytes::from_static(b"hello"));
//!                 delivered += 1;
//!             }
//!         }
//!     }
//!     now = now + Duration::from_millis(1);
//!     for (to, from, msg) in inflight {
//!         nodes[to as usize].handle_message(now, from, msg);
//!     }
//!     for n in &mut nodes {
//!         if n.poll_timeout().is_some_and(|t| t <= now) {
//!             n.handle_timeout(now);
//!         }
//!     }
//!     if !sent && nodes[1].state() == pastry_core::NodeState::Ready {
//!         nodes[1].route(now, NodeId::from_u128(1 << 100), 7, Bytes::from_static(b"hello")).unwrap();
//!         sent = true;
//!     }
//! }
//! assert_eq!(delivered, 1);
//! ```
//!
//! # Modules
//! - [`id`]: 128-bit ids, digits, distances, the tie rule.
//! - [`leafset`], [`routing_table`], [`neighborhood`]: the three tables.
//! - [`node`]: the state machine. [`app`]: the common KBR API for applications.
//! - [`message`] and [`codec`]: the messages and their versioned wire format.
//! - [`config`]: every protocol parameter, documented, with defaults.
//! - `mesh` (feature `testing`): an in-memory harness for a few hundred nodes.
#![warn(missing_docs)]

pub mod app;
pub mod codec;
pub mod config;
pub mod handle;
mod headheap;
pub mod id;
mod idfilter;
mod idmap;
pub mod leafset;
#[cfg(any(test, feature = "testing"))]
pub mod mesh;
pub mod message;
pub mod neighborhood;
pub mod node;
pub mod rng;
pub mod routing_table;
pub mod rtt;
pub mod time;

pub use app::{AppContext, Application, Delivery, Forward, ForwardAction};
pub use config::{Config, ConfigError};
pub use handle::{Address, NodeHandle};
pub use id::NodeId;
pub use message::{AppId, Body, Message, MessageKind};
pub use node::{
    Decision, Event, Node, NodeState, RequestId, RouteError, RouteFailure, RouteRequest, Stats,
    Transmit,
};
pub use time::Instant;
