//! PAST: replicated archival storage with caching on the Pastry KBR API, sans-IO.
//!
//! After Rowstron & Druschel, "Storage management and caching in PAST" (SOSP 2001), and
//! FreePastry's `rice.p2p.past` / `rice.p2p.replication`. [`Past`] is a pastry-core
//! [`Application`](pastry_core::Application): register one per node, call its client methods
//! through `Node::with_application`, and read the outcomes as [`PastEvent`]s among the
//! node's `Event::Application` values. It never does IO and never reads a clock, so the
//! simulator and the network host run the same code.
//!
//! - Objects ([`object`]) are content-addressed (key = first 128 bits of SHA-256 of the
//!   content) or owned (caller-chosen key, ed25519 owner certificate binding key, owner,
//!   version and content hash). Every node verifies every object it stores, caches or
//!   returns.
//! - An insert stores k replicas (default 5) on the k nodes numerically closest to the key;
//!   a full node diverts its replica to a leaf-set member (replica diversion), and a named
//!   insert that finds no room retries under a new salt (file diversion), with the paper's
//!   thresholds `t_pri` / `t_div`.
//! - Lookups are answered by the first node on the route holding the object, replica or
//!   cache; answering nodes fill the caches of the route's last nodes (size-aware LRU).
//! - Replica maintenance keeps the k-closest invariant through joins, leaves and failures:
//!   leaf-set changes and a periodic timer trigger a digest exchange (sorted key lists in
//!   bounded chunks) and the transfer of what is missing; nodes that are no longer among
//!   the k closest hand their replicas off and drop them once every new holder confirmed.
//! - Storage goes through the [`Store`] trait: [`MemoryStore`] for simulations,
//!   [`RedbStore`] on disk (durable commits, versioned format).
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use pastry_core::{mesh::Mesh, Config};
//! use pastry_past::{Past, PastConfig, PastEvent};
//!
//! const PAST: u16 = 7;
//! let mut mesh = Mesh::new(Config::default(), 1);
//! mesh.build_ring(12, Duration::from_secs(1));
//! for i in mesh.live() {
//!     let past = Past::<u32>::new(PastConfig::default()).unwrap();
//!     mesh.nodes[i as usize].register(PAST, Box::new(past)).ok().unwrap();
//! }
//! // Node 0 inserts; node 5 looks the object up.
//! let (insert, key) = mesh
//!     .with_application::<Past<u32>, _>(0, PAST, |p, ctx| {
//!         let key = pastry_past::content_key(b"hello PAST");
//!         (p.insert(ctx, &b"hello PAST"[..], None), key)
//!     })
//!     .unwrap();
//! mesh.run_for(Duration::from_secs(2));
//! let lookup = mesh
//!     .with_application::<Past<u32>, _>(5, PAST, |p, ctx| p.lookup(ctx, key))
//!     .unwrap();
//! mesh.run_for(Duration::from_secs(2));
//! let events: Vec<&PastEvent<u32>> = mesh
//!     .app_events
//!     .iter()
//!     .filter_map(|(_, _, v)| v.downcast_ref::<PastEvent<u32>>())
//!     .collect();
//! assert!(events.iter().any(|e| matches!(e,
//!     PastEvent::Inserted { request, holders, .. } if *request == insert && holders.len() == 5)));
//! assert!(events.iter().any(|e| matches!(e,
//!     PastEvent::Found { request, object, .. }
//!         if *request == lookup && &object.content()[..] == b"hello PAST")));
//! ```
//!
//! # Modules
//! - [`past`]: the application — client API, insert, lookup, caching, diversion,
//!   maintenance — and its counters ([`PastStats`]).
//! - [`object`]: objects, keys and owner certificates. [`event`]: what requests answer.
//! - [`codec`]: PAST's messages and their versioned wire format.
//! - [`store`], [`redb_store`]: storage. [`cache`]: the LRU cache. [`config`]: parameters.
#![warn(missing_docs)]

pub mod cache;
pub mod codec;
pub mod config;
pub mod event;
pub mod object;
pub mod past;
pub mod redb_store;
pub mod store;

pub use cache::LruCache;
pub use config::{PastConfig, PastConfigError};
pub use event::{InsertFailure, LookupFailure, PastEvent};
pub use object::{Certificate, ObjectError, PastObject, content_hash, content_key, named_key};
pub use past::{Past, PastError, PastStats};
pub use redb_store::RedbStore;
pub use store::{MemoryStore, Store, StoreError};
