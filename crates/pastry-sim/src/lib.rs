//! pastry-sim: a deterministic discrete-event simulator for unmodified pastry-core nodes.
//!
//! One event queue ordered by (time, sequence) drives every [`pastry_core::Node<u32>`]
//! (addresses are node indices) over a network model ([`net`]): the Pastry paper's plane,
//! a sphere, or a measured RTT matrix, with loss and jitter. Workloads ([`workload`]):
//! ring construction through the join protocol, lookups, churn, mass failure, partition
//! and heal. Checkers run throughout and the [`Report`] gives the figures the Pastry papers
//! report. The same seed and options give the same trace hash.
//!
//! # Example
//! ```
//! use pastry_sim::{SimOptions, Simulation};
//! use std::time::Duration;
//!
//! let opts = SimOptions {
//!     nodes: 50,
//!     lookups: 200,
//!     duration: Duration::from_secs(10),
//!     ..SimOptions::default()
//! };
//! let report = Simulation::new(opts).unwrap().run().unwrap();
//! assert!(report.checks.ok(), "{:?}", report.checks.problems);
//! assert_eq!(report.lookups.correct, 200);
//! ```
#![warn(missing_docs)]

pub mod cli;
pub mod links;
pub mod net;
pub mod plot;
mod queue;
pub mod report;
pub mod sim;
pub mod workload;

pub use net::TopologySpec;
pub use report::Report;
pub use sim::{
    Churn, PAST_APP, PastWorkload, Progress, SCRIBE_APP, SPLITSTREAM_APP, ScribeWorkload,
    SimOptions, Simulation, SplitStreamWorkload,
};
