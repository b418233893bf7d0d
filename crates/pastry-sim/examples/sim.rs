//! The `pastry sim` command without the rest of the `pastry` binary, for benchmarks:
//! `cargo run --release -p pastry-sim --example sim -- --nodes 100000 --lookups 200000`.

use std::process::ExitCode;

use clap::Parser;

// As in the `pastry` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs one simulation (same flags as `pastry sim`).
#[derive(Debug, Parser)]
#[command(name = "sim")]
struct Cli {
    #[command(flatten)]
    args: pastry_sim::cli::SimArgs,
}

fn main() -> ExitCode {
    pastry_sim::cli::reexec_with_huge_pages();
    pastry_sim::cli::run(Cli::parse().args).unwrap_or_else(|e| {
        eprintln!("sim: error: {e:#}");
        ExitCode::from(2)
    })
}
