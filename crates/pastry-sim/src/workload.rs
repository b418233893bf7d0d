//! Workload descriptions: churn (session-time distributions or a trace of joins and
//! leaves), mass failure and partitions, plus the small parsers the command line uses.
//!
//! Every random draw goes through [`pastry_core::rng::Rng`] by inverse CDF, so a run is a
//! function of its seed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use pastry_core::rng::Rng;

/// Distribution of session times (how long a node stays before it leaves).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionDist {
    /// Exponential with the given mean (memoryless; MSPastry's synthetic churn).
    Exponential,
    /// Pareto with shape `alpha` (> 1) and the given mean: heavy-tailed, as measured in
    /// deployed P2P systems.
    Pareto {
        /// Shape parameter; the mean is finite only for alpha > 1.
        alpha: f64,
    },
}

impl SessionDist {
    /// Draws one session time with mean `mean`.
    pub fn draw(self, rng: &mut Rng, mean: Duration) -> Duration {
        // 1 - unit() is in (0, 1], so the logarithm and the power are finite.
        let u = 1.0 - rng.unit();
        let m = mean.as_secs_f64();
        let s = match self {
            SessionDist::Exponential => -m * u.ln(),
            SessionDist::Pareto { alpha } => {
                let xm = m * (alpha - 1.0) / alpha;
                xm / u.powf(1.0 / alpha)
            }
        };
        // Bounded: a session longer than a year is as good as forever for a simulation.
        Duration::from_secs_f64(s.min(365.0 * 86_400.0))
    }
}

/// Draws an exponential inter-arrival gap for a Poisson process of `rate` per second.
pub fn exp_gap(rng: &mut Rng, rate: f64) -> Duration {
    let u = 1.0 - rng.unit();
    Duration::from_secs_f64((-u.ln() / rate).min(365.0 * 86_400.0))
}

/// What a churn trace line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceAction {
    /// A new node joins.
    Join,
    /// The node leaves gracefully (tells its leaf set).
    Leave,
    /// The node crashes silently.
    Crash,
}

/// One line of a churn trace: at `at` (from the start of the measurement phase), node
/// number `node` (numbered by first appearance) does `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    /// When, from the start of the measurement phase.
    pub at: Duration,
    /// Which trace node (0-based, in order of first `join`).
    pub node: u32,
    /// What it does.
    pub action: TraceAction,
}

/// Largest churn trace accepted, in lines.
const MAX_TRACE_EVENTS: usize = 10_000_000;

/// Parses a churn trace: one event per line, `SECONDS join|leave|crash LABEL`, `#` starts a
/// comment. Times must not decrease; a label joins before it leaves and at most once.
///
/// # Errors
/// The first malformed or inconsistent line, with its number.
pub fn parse_trace(text: &str) -> anyhow::Result<Vec<TraceEvent>> {
    let mut labels: std::collections::HashMap<String, (u32, bool)> = Default::default();
    let mut out = Vec::new();
    let mut last = 0.0f64;
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let ln = ln + 1;
        if out.len() >= MAX_TRACE_EVENTS {
            bail!("trace has more than {MAX_TRACE_EVENTS} events");
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [t, action, label] = f[..] else {
            bail!("line {ln}: expected `SECONDS join|leave|crash LABEL`, got `{line}`");
        };
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .with_context(|| format!("line {ln}: `{t}` is not a non-negative time in seconds"))?;
        if t < last {
            bail!("line {ln}: time {t} is earlier than the previous line's {last}");
        }
        last = t;
        let action = match action {
            "join" => TraceAction::Join,
            "leave" => TraceAction::Leave,
            "crash" => TraceAction::Crash,
            other => bail!("line {ln}: unknown action `{other}` (join, leave or crash)"),
        };
        let next = labels.len() as u32;
        let node = match (action, labels.get_mut(label)) {
            (TraceAction::Join, None) => {
                labels.insert(label.to_string(), (next, true));
                next
            }
            (TraceAction::Join, Some(_)) => bail!("line {ln}: `{label}` joins a second time"),
            (_, Some((n, live))) if *live => {
                *live = false;
                *n
            }
            _ => bail!("line {ln}: `{label}` leaves without being in the ring"),
        };
        out.push(TraceEvent {
            at: Duration::from_secs_f64(t),
            node,
            action,
        });
    }
    Ok(out)
}

/// Reads and parses a churn trace file (see [`parse_trace`]).
///
/// # Errors
/// When the file cannot be read or does not parse.
pub fn load_trace(path: &Path) -> anyhow::Result<Vec<TraceEvent>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read churn trace {}", path.display()))?;
    parse_trace(&text).with_context(|| format!("bad churn trace {}", path.display()))
}

/// Parses a duration: a number with an optional unit `ms`, `s`, `m`, `h` (default seconds).
///
/// # Errors
/// A message naming the bad text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 90, 90s, 15m, 2h, 500ms)"))?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e7).contains(&secs) {
        return Err(format!(
            "duration `{s}` is out of range (0 to 10,000,000 s)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A partition of the ring into two halves for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// When it starts, from the start of the measurement phase.
    pub start: Duration,
    /// How long it lasts before it heals.
    pub length: Duration,
}

/// Parses `START:LENGTH`, both durations (see [`parse_duration`]).
///
/// # Errors
/// A message naming the bad text.
pub fn parse_partition(s: &str) -> Result<Partition, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not START:LENGTH (e.g. 60s:30s)"))?;
    let length = parse_duration(b)?;
    if length.is_zero() {
        return Err("partition length must be positive".into());
    }
    Ok(Partition {
        start: parse_duration(a)?,
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_means_are_close() {
        let mut rng = Rng::new(11);
        let mean = Duration::from_secs(3600);
        for dist in [SessionDist::Exponential, SessionDist::Pareto { alpha: 3.0 }] {
            let n = 200_000;
            let total: f64 = (0..n)
                .map(|_| dist.draw(&mut rng, mean).as_secs_f64())
                .sum();
            let m = total / f64::from(n);
            assert!((m - 3600.0).abs() < 3600.0 * 0.03, "{dist:?}: mean {m}");
        }
        let gaps: f64 = (0..100_000)
            .map(|_| exp_gap(&mut rng, 4.0).as_secs_f64())
            .sum();
        assert!((gaps / 100_000.0 - 0.25).abs() < 0.01);
    }

    #[test]
    fn trace_parses_and_rejects() {
        let t = parse_trace("# c\n0 join a\n1.5 join b\n2 crash a\n3 leave b\n").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[2].node, 0);
        assert_eq!(t[2].action, TraceAction::Crash);
        assert_eq!(t[3].at, Duration::from_secs(3));
        for (bad, why) in [
            ("1 join a\n0 join b\n", "earlier"),
            ("0 leave a\n", "without being"),
            ("0 join a\n1 join a\n", "second time"),
            ("0 hop a\n", "unknown action"),
            ("x join a\n", "not a non-negative"),
            ("0 join\n", "expected"),
        ] {
            let e = parse_trace(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn durations_and_partitions_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("abc").is_err());
        let p = parse_partition("60:30s").unwrap();
        assert_eq!(p.start, Duration::from_secs(60));
        assert_eq!(p.length, Duration::from_secs(30));
        assert!(parse_partition("60").is_err());
        assert!(parse_partition("60:0").is_err());
    }
}
