//! pastry-net: the unmodified [`pastry_core::Node`] on real sockets over QUIC.
//!
//! - [`identity`]: the node's ed25519 key in its data directory; id = SHA-256(key)[..16].
//! - [`tls`]: self-signed certificates carrying that key; verifiers that hold peers to ids.
//! - [`transport`]: one QUIC endpoint (UDP socket) per node, lazily opened, reused and
//!   bounded connections, frames back to back on one unidirectional stream per direction.
//! - [`driver`]: one task per node owning the state machine; `select!` over socket input,
//!   the node's next deadline and commands.
//! - [`node`]: [`spawn`] a node and talk to it through a [`NodeClient`].
//! - [`status`]: `/status` JSON, route reports, Prometheus metrics.
//! - [`http`]: the admin API (axum); [`client`]: a tiny HTTP/1.1 client for the CLI.
//! - [`past`]: PAST storage on each node (redb store in the data directory).
//! - [`scribe`]: Scribe multicast on each node: publish, subscription streams, topics.
//! - [`config`]: TOML configuration files; [`cli`]: `pastry hello | node | lookup | put |
//!   get | replicas | publish | subscribe`.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use pastry_net::{Identity, NodeOptions, spawn};
//! let first = spawn(NodeOptions::new("127.0.0.1:0".parse()?, Identity::generate()?)).await?;
//! let mut opts = NodeOptions::new("127.0.0.1:0".parse()?, Identity::generate()?);
//! opts.bootstrap = vec![first.addr()];
//! let second = spawn(opts).await?;
//! second.wait_ready(Duration::from_secs(5)).await?;
//! let report = second
//!     .route(first.id(), "hi".into(), true, Duration::from_secs(5))
//!     .await?;
//! assert_eq!(report.root, first.id().to_string());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod driver;
pub mod identity;
pub mod node;
pub mod past;
pub mod scribe;
pub mod status;
pub mod tls;
pub mod transport;

pub use config::NetConfig;
pub use driver::{DeliveredEvent, REPORT_APP, ROUTE_APP};
pub use identity::Identity;
pub use node::{NodeClient, NodeOptions, RunningNode, spawn};
pub use past::{PAST_APP, PastApiError, PastOptions, PutResult, ReplicaHolder};
pub use scribe::{
    PublishResult, SCRIBE_APP, ScribeApiError, ScribeOptions, StreamLine, StreamMessage,
    SubscriptionStream, TopicView,
};
pub use status::{RouteReport, Status};
pub mod cli;
pub mod client;
pub mod http;
