//! The command line: flags parse or fail with a message, the trace is one JSON object per
//! line with 32-hex-digit ids, the plots are SVG files, the exit code reflects the checkers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pastry_sim::cli::{SimArgs, run};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn parse(flags: &[&str]) -> Result<SimArgs, clap::Error> {
    let mut argv = vec!["sim"];
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).map(|c| c.args)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pastry-sim-cli-{}-{name}", std::process::id()))
}

#[test]
fn bad_flags_are_errors_not_panics() {
    for bad in [
        &["--nodes", "x"][..],
        &["--topology", "torus"],
        &["--duration", "soon"],
        &["--partition", "10s"],
        &["--churn-dist", "zipf"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    for (flags, why) in [
        (&["--b", "9"][..], "b"),
        (&["--leaf-set", "15"], "leaf_set_size"),
        (&["--nodes", "0"], "--nodes"),
        (&["--loss", "1.5"], "--loss"),
        (&["--fail-fraction", "2"], "--fail-fraction"),
        (
            &[
                "--churn-session",
                "10m",
                "--churn-pareto-alpha",
                "1",
                "--churn-dist",
                "pareto",
            ],
            "alpha",
        ),
        (
            &["--churn-trace", "/nonexistent/trace.txt"],
            "cannot read churn trace",
        ),
        (
            &["--topology", "matrix:/nonexistent/m.txt"],
            "cannot read RTT matrix",
        ),
    ] {
        let e = run(parse(flags).unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains(why), "{flags:?}: {e:#}");
    }
}

#[test]
fn trace_and_plots_are_written() {
    let trace = tmp("trace.jsonl");
    let plots = tmp("plots");
    let args = parse(&[
        "--nodes",
        "120",
        "--lookups",
        "500",
        "--duration",
        "10s",
        "--settle",
        "5s",
        "--cooldown",
        "5s",
        "--no-progress",
        "--json",
        "--trace",
        trace.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(run(args).unwrap(), ExitCode::SUCCESS);
    let text = std::fs::read_to_string(&trace).unwrap();
    let (mut nodes, mut lookups) = (0, 0);
    let is_id = |v: &serde_json::Value| {
        v.as_str().is_some_and(|s| {
            s.len() == 32
                && s.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
    };
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["type"].as_str() {
            Some("node") => {
                nodes += 1;
                assert!(is_id(&v["id"]), "{line}");
            }
            Some("lookup") => {
                lookups += 1;
                for k in ["key", "origin", "root"] {
                    assert!(is_id(&v[k]), "{line}");
                }
                assert!(v["hops"].as_u64().unwrap() <= 4, "{line}");
                let (l, d) = (
                    v["latency_ms"].as_f64().unwrap(),
                    v["direct_ms"].as_f64().unwrap(),
                );
                assert!(l >= d - 0.002, "{line}");
            }
            other => panic!("unexpected type {other:?}"),
        }
    }
    assert_eq!((nodes, lookups), (120, 500));
    for f in ["hops.svg", "rdp_cdf.svg", "traffic.svg"] {
        let svg = std::fs::read_to_string(plots.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
    std::fs::remove_file(&trace).unwrap();
    std::fs::remove_dir_all(&plots).unwrap();
}
