//! `pastry`: one command for everything — simulate a ring, run real nodes, talk to them.
//!
//! Each subcommand's arguments and behaviour live in the crate that implements it
//! (`pastry-sim`, `pastry-net`); this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Faster than glibc's malloc for the simulator's millions of small per-node blocks (10%
// at 300,000 nodes, with huge pages), and for real nodes (pastry-net's `throughput`
// bench with it as global allocator: ~21 us of CPU per hop handled against ~27 us).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pastry: a structured peer-to-peer overlay (Rowstron & Druschel), simulated or real.
#[derive(Debug, Parser)]
#[command(name = "pastry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the simulator's many flags make its variant large, which costs
// nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a ring of unmodified pastry-core nodes: joins, lookups, churn, failures,
    /// with checkers and the Pastry papers' figures.
    Sim(pastry_sim::cli::SimArgs),
    /// Start N real nodes on 127.0.0.1 over QUIC, form a ring, route messages to random keys
    /// and check each reached the numerically closest node (FreePastry's DistHelloWorld).
    Hello(pastry_net::cli::HelloArgs),
    /// Run a real node (or `--nodes K` virtual nodes) with an admin HTTP API, until Ctrl-C.
    Node(pastry_net::cli::NodeArgs),
    /// Ask a running node which node is the root of a key, and the path taken.
    Lookup(pastry_net::cli::LookupArgs),
    /// Store a file in PAST through a running node (k replicas); prints its key.
    Put(pastry_net::cli::PutArgs),
    /// Fetch an object from PAST by key through a running node (to stdout or -o FILE).
    Get(pastry_net::cli::GetArgs),
    /// List the nodes responsible for a key's PAST replicas.
    Replicas(pastry_net::cli::ReplicasArgs),
    /// Publish a message (text or --file) to a Scribe topic through a running node.
    Publish(pastry_net::cli::PublishArgs),
    /// Subscribe a running node to a Scribe topic; print each message as it arrives.
    Subscribe(pastry_net::cli::SubscribeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Sim(args) => {
            // Big rings run much faster on huge pages; this re-executes (once) and only
            // for the simulator, whose heap is gigabytes touched at random.
            pastry_sim::cli::reexec_with_huge_pages();
            ("sim", pastry_sim::cli::run(args))
        }
        Command::Hello(args) => ("hello", pastry_net::cli::hello(args)),
        Command::Node(args) => ("node", pastry_net::cli::node(args)),
        Command::Lookup(args) => ("lookup", pastry_net::cli::lookup(args)),
        Command::Put(args) => ("put", pastry_net::cli::put(args)),
        Command::Get(args) => ("get", pastry_net::cli::get(args)),
        Command::Replicas(args) => ("replicas", pastry_net::cli::replicas(args)),
        Command::Publish(args) => ("publish", pastry_net::cli::publish(args)),
        Command::Subscribe(args) => ("subscribe", pastry_net::cli::subscribe(args)),
    };
    // Errors (bad flags, unreadable files, ports in use, ...) exit 2; a run that completed
    // but failed its own checks returns its own non-zero code.
    result.unwrap_or_else(|e| {
        eprintln!("pastry {name}: error: {e:#}");
        ExitCode::from(2)
    })
}
