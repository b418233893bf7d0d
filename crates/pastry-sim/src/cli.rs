//! `pastry sim`: the command-line front of the simulator.
//!
//! [`SimArgs`] are the flags (clap derive); [`run`] turns them into [`SimOptions`], runs,
//! prints the summary (or JSON), writes the trace and plots, and returns the exit code:
//! 0 when the checkers are happy, 1 (with the seed printed) when a run that should have no
//! violation had one. Bad input is an `Err` with a clear message, never a panic.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pastry_core::Config;

use crate::net::TopologySpec;
use crate::sim::{
    Churn, PastWorkload, ScribeWorkload, SimOptions, Simulation, SplitStreamWorkload,
};
use crate::workload::{Partition, SessionDist, load_trace, parse_duration, parse_partition};

/// Session-time distribution names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DistArg {
    /// Exponential.
    Exp,
    /// Pareto (shape from `--churn-pareto-alpha`).
    Pareto,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// Options of `pastry sim`. Durations take `ms`, `s`, `m` or `h` (default seconds).
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Ring size, built through the join protocol.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Lookups between random nodes and random keys, spread over `--duration`.
    #[arg(long, default_value_t = 100_000)]
    pub lookups: u64,
    /// Seed of every random choice; the same seed and flags give the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bits per digit (1..=8).
    #[arg(long, default_value_t = 4)]
    pub b: u8,
    /// Leaf-set size |L| (even, 2..=64).
    #[arg(long = "leaf-set", default_value_t = 16)]
    pub leaf_set: usize,
    /// Network model: plane, sphere or matrix:FILE (an all-pairs RTT matrix in ms).
    #[arg(long, default_value = "plane")]
    pub topology: TopologySpec,
    /// Probability that a message is lost (0 to <1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Extra one-way delay per message, uniform in [0, JITTER].
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub jitter: Duration,
    /// Fraction of node pairs that cannot reach each other (0 to <1), while each reaches
    /// every other node: non-transitive connectivity.
    #[arg(long = "broken-links", default_value_t = 0.0)]
    pub broken_links: f64,
    /// Joins in flight at once while building; 0 = nodes / 500 (at least 1, at most 2000).
    #[arg(long = "concurrent-joins", default_value_t = 0)]
    pub concurrent_joins: usize,
    /// Quiet time after the build, before measuring.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Length of the measurement phase (lookups, churn, failures, partition).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Quiet time after the measurement phase, before the final leaf-set check.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub cooldown: Duration,
    /// Churn: mean session time (turns on Poisson arrivals and departures).
    #[arg(long = "churn-session", value_parser = parse_duration, conflicts_with = "churn_trace")]
    pub churn_session: Option<Duration>,
    /// Churn: session-time distribution.
    #[arg(long = "churn-dist", value_enum, default_value_t = DistArg::Exp)]
    pub churn_dist: DistArg,
    /// Churn: Pareto shape (> 1).
    #[arg(long = "churn-pareto-alpha", default_value_t = 2.0)]
    pub churn_pareto_alpha: f64,
    /// Churn: fraction of departures that are graceful leaves (the rest crash).
    #[arg(long = "churn-graceful", default_value_t = 0.0)]
    pub churn_graceful: f64,
    /// Churn: a trace file of `SECONDS join|leave|crash LABEL` lines (from the start of
    /// the measurement phase).
    #[arg(long = "churn-trace")]
    pub churn_trace: Option<PathBuf>,
    /// Crash this fraction of the live nodes at once at `--fail-at`.
    #[arg(long = "fail-fraction")]
    pub fail_fraction: Option<f64>,
    /// When the mass failure happens, from the start of the measurement phase.
    #[arg(long = "fail-at", default_value = "10s", value_parser = parse_duration)]
    pub fail_at: Duration,
    /// Partition the ring into two halves: START:LENGTH from the start of the measurement
    /// phase, e.g. 20s:30s.
    #[arg(long, value_parser = parse_partition)]
    pub partition: Option<Partition>,
    /// PAST workload: objects to insert after the build (0 = no PAST). PAST runs on every
    /// node; the objects are looked up while measuring and all checked at the end.
    #[arg(long = "past-objects", default_value_t = 0)]
    pub past_objects: u64,
    /// PAST: replicas per object (the paper's k).
    #[arg(long = "past-k", default_value_t = 5)]
    pub past_k: usize,
    /// PAST: bytes per object.
    #[arg(long = "past-object-size", default_value_t = 1024)]
    pub past_object_size: usize,
    /// PAST: lookups of random stored objects spread over `--duration` [default: one per
    /// object].
    #[arg(long = "past-lookups")]
    pub past_lookups: Option<u64>,
    /// PAST: cache objects along lookup routes.
    #[arg(long = "past-cache", value_enum, default_value_t = OnOff::On)]
    pub past_cache: OnOff,
    /// Scribe workload: topics (groups) formed after the build (0 = no Scribe). Group sizes
    /// are Zipf-like (the Scribe paper's max * rank^-1.25) between the two bounds below.
    #[arg(long = "scribe-topics", default_value_t = 0)]
    pub scribe_topics: u32,
    /// Scribe: smallest group.
    #[arg(long = "scribe-min-group", default_value_t = 10)]
    pub scribe_min_group: usize,
    /// Scribe: largest group (capped at the ring size).
    #[arg(long = "scribe-max-group", default_value_t = 5000)]
    pub scribe_max_group: usize,
    /// Scribe: messages published during `--duration` from random nodes, evenly spread,
    /// topic j mod T [default: 3 per topic].
    #[arg(long = "scribe-messages")]
    pub scribe_messages: Option<u64>,
    /// Scribe and SplitStream: a parent's heartbeat to an idle child (data stands in for
    /// it).
    #[arg(long = "scribe-heartbeat", default_value = "5s", value_parser = parse_duration)]
    pub scribe_heartbeat: Duration,
    /// Scribe and SplitStream: a child that hears nothing from its parent this long takes
    /// it for dead and subscribes again (must exceed `--scribe-heartbeat`).
    #[arg(long = "scribe-parent-timeout", default_value = "16s", value_parser = parse_duration)]
    pub scribe_parent_timeout: Duration,
    /// SplitStream workload: every node joins one channel; a source streams blocks.
    #[arg(long)]
    pub splitstream: bool,
    /// SplitStream: stripes per channel (a power of two, 2..=64) [default: 16]; implies
    /// `--splitstream`.
    #[arg(long = "splitstream-stripes")]
    pub splitstream_stripes: Option<usize>,
    /// SplitStream: each node's outgoing capacity in stripes [default: the stripe count].
    #[arg(long = "splitstream-capacity")]
    pub splitstream_capacity: Option<usize>,
    /// SplitStream: time between two blocks of the source.
    #[arg(long = "splitstream-block-interval", default_value = "1s", value_parser = parse_duration)]
    pub splitstream_block_interval: Duration,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Write a JSON-lines trace: one line per lookup and per live node at the end.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write SVG charts (hops histogram, RDP CDF, traffic over time) into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Never show the progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

impl SimArgs {
    /// The simulation options these flags describe.
    ///
    /// # Errors
    /// Out-of-range values and unreadable churn traces.
    pub fn options(&self) -> anyhow::Result<SimOptions> {
        let config = Config {
            b: self.b,
            leaf_set_size: self.leaf_set,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{e} (from --b / --leaf-set)"))?;
        let churn = if let Some(mean) = self.churn_session {
            let dist = match self.churn_dist {
                DistArg::Exp => SessionDist::Exponential,
                DistArg::Pareto => SessionDist::Pareto {
                    alpha: self.churn_pareto_alpha,
                },
            };
            Some(Churn::Sessions {
                mean,
                dist,
                graceful: self.churn_graceful,
            })
        } else if let Some(p) = &self.churn_trace {
            Some(Churn::Trace(load_trace(p)?))
        } else {
            None
        };
        if !(0.0..=1.0).contains(&self.churn_graceful) {
            anyhow::bail!(
                "--churn-graceful must be in [0, 1], got {}",
                self.churn_graceful
            );
        }
        if !self.loss.is_finite() {
            anyhow::bail!("--loss must be a number in [0, 1)");
        }
        Ok(SimOptions {
            nodes: self.nodes,
            lookups: self.lookups,
            seed: self.seed,
            config,
            topology: self.topology.clone(),
            loss: self.loss,
            jitter: self.jitter,
            broken_links: self.broken_links,
            concurrent_joins: self.concurrent_joins,
            settle: self.settle,
            duration: self.duration,
            cooldown: self.cooldown,
            churn,
            fail_fraction: self.fail_fraction,
            fail_at: self.fail_at,
            partition: self.partition,
            past: (self.past_objects > 0).then(|| PastWorkload {
                objects: self.past_objects,
                k: self.past_k,
                object_size: self.past_object_size,
                lookups: self.past_lookups.unwrap_or(self.past_objects),
                caching: self.past_cache == OnOff::On,
            }),
            scribe: (self.scribe_topics > 0).then(|| ScribeWorkload {
                topics: self.scribe_topics,
                min_group: self.scribe_min_group,
                max_group: self.scribe_max_group,
                messages: self
                    .scribe_messages
                    .unwrap_or(3 * u64::from(self.scribe_topics)),
                heartbeat: self.scribe_heartbeat,
                parent_timeout: self.scribe_parent_timeout,
            }),
            splitstream: (self.splitstream
                || self.splitstream_stripes.is_some()
                || self.splitstream_capacity.is_some())
            .then(|| {
                let stripes = self.splitstream_stripes.unwrap_or(16);
                SplitStreamWorkload {
                    stripes,
                    capacity: self.splitstream_capacity.unwrap_or(stripes),
                    block_interval: self.splitstream_block_interval,
                    heartbeat: self.scribe_heartbeat,
                    parent_timeout: self.scribe_parent_timeout,
                    ..SplitStreamWorkload::default()
                }
            }),
        })
    }
}

/// Runs `pastry sim`.
///
/// # Errors
/// Bad flags, unreadable input files, unwritable output files.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let opts = args.options()?;
    let seed = opts.seed;
    let mut sim = Simulation::new(opts)?;
    if let Some(p) = &args.trace {
        let f = File::create(p).with_context(|| format!("cannot create trace {}", p.display()))?;
        sim.trace_to(BufWriter::new(f));
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create plot directory {}", dir.display()))?;
    }
    let bar = (!args.no_progress && std::io::stderr().is_terminal()).then(progress_bar);
    if let Some(bar) = bar.clone() {
        sim.on_progress(move |p| {
            bar.set_message(format!("{} ({} events)", p.phase, p.events));
            if p.total > 0 {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
        });
    }
    let report = sim.run()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        println!("{report}");
    }
    if let Some(dir) = &args.plot {
        let files = crate::plot::write_plots(&report, dir)?;
        if !args.json {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            println!("  plots     {}", names.join(", "));
        }
    }
    if report.checks.ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "pastry sim: checker violations in a run that should have none; \
             reproduce with --seed {seed} and the same flags:"
        );
        for p in &report.checks.problems {
            eprintln!("  - {p}");
        }
        Ok(ExitCode::from(1))
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Re-executes the current program with its allocator asking for transparent huge pages,
/// for binaries that run big simulations; call it first thing in `main`. Sets
/// `MIMALLOC_ALLOW_LARGE_OS_PAGES=1` (the `pastry` binary's allocator, mimalloc) and, unless
/// already set, `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (for binaries on glibc's malloc);
/// each allocator ignores the other's. Returns (doing nothing) when the first is already
/// set, off Linux, or when the re-execution fails.
///
/// A million-node ring is ~10 GB touched at random: with 4 KiB pages nearly every access
/// to a node's tables is a TLB miss and a page walk. With 2 MiB pages (where the kernel's
/// THP mode is `madvise`, the default on many distributions) the simulator ran 1.8x as
/// many events per second at 100,000 nodes. Allocators read these settings when the
/// process starts, hence the re-execution.
pub fn reexec_with_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        const MIMALLOC: &str = "MIMALLOC_ALLOW_LARGE_OS_PAGES";
        if std::env::var_os(MIMALLOC).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        // Only returns on failure; then run as we are.
        cmd.args(args).env(MIMALLOC, "1");
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            cmd.env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1");
        }
        let _ = cmd.exec();
    }
}
