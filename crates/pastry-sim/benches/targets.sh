#!/usr/bin/env bash
# Prints the simulator's figures against the targets of issue 3 (see ../README.md).
#
#   crates/pastry-sim/benches/targets.sh            # default, paper, churn, failure
#   RUNS=3 crates/pastry-sim/benches/targets.sh     # medians over seeds 1..3
#   MILLION=1 crates/pastry-sim/benches/targets.sh  # also the 1,000,000-node run
#
# Each run's JSON report is kept in $OUT (default target/sim-bench). Perf targets are
# checked here, never in tests. Needs bash and python3.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-1}
OUT=${OUT:-target/sim-bench}
mkdir -p "$OUT"
cargo build --profile sim -p pastry-sim --example sim >&2
SIM=target/sim/examples/sim

run() { # name seed flags...
  local name=$1 seed=$2; shift 2
  echo "== $name (seed $seed): sim $* --seed $seed" >&2
  "$SIM" --no-progress --json --seed "$seed" "$@" > "$OUT/$name-$seed.json" || true
}

for s in $(seq 1 "$RUNS"); do
  run default "$s"
  run paper "$s" --nodes 100000 --lookups 200000
  # The same ring measured after 30 minutes of routing-table maintenance (steady state).
  run paper-settled "$s" --nodes 100000 --lookups 200000 --settle 30m
  run churn "$s" --nodes 10000 --lookups 100000 --churn-session 60m --duration 2h
  run failure "$s" --nodes 10000 --lookups 100000 --fail-fraction 0.5 --fail-at 10s --duration 180s
  run partition "$s" --nodes 10000 --lookups 100000 --partition 20s:40s --cooldown 10m
  if [ "${MILLION:-0}" = 1 ]; then
    run million "$s" --nodes 1000000 --lookups 1000000 --duration 30s --settle 10s --cooldown 10s
  fi
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, os
out, runs = sys.argv[1], int(sys.argv[2])
def load(name):
    rs = []
    for s in range(1, runs + 1):
        p = os.path.join(out, f"{name}-{s}.json")
        if os.path.exists(p) and os.path.getsize(p) > 0:
            rs.append(json.load(open(p)))
    return rs
def med(rs, f):
    return statistics.median(f(r) for r in rs)
def line(label, value, target, ok):
    print(f"  {label:<44} {value:<28} target {target:<18} {'ok' if ok else 'MISSED'}")
load_avg = open('/proc/loadavg').read().split()[:3] if os.path.exists('/proc/loadavg') else ['?']
print(f"pastry-sim targets: medians over {runs} seed(s); load average now {' '.join(load_avg)}")
rs = load("default")
if rs:
    print("pastry sim (defaults: 10,000 nodes, 100,000 lookups)")
    w = med(rs, lambda r: r["perf"]["wall_s"])
    line("wall time", f"{w:.1f} s", "seconds", w < 30)
    line("correct", f"{med(rs, lambda r: r['lookups']['correct_pct']):.3f}%", "100%", all(r['lookups']['correct_pct'] == 100 for r in rs))
def paper_figures(rs):
    """Correctness, hops, histogram and RDP of a 100,000-node static run."""
    line("correct", f"{med(rs, lambda r: r['lookups']['correct_pct']):.3f}%", "100%", all(r['lookups']['correct_pct'] == 100 for r in rs))
    mh = med(rs, lambda r: r['lookups']['mean_hops'])
    line("mean hops", f"{mh:.3f}", "<= 3.98", mh <= 3.98)
    paper = [0, 0.06, 1.56, 16.43, 64.49, 17.45]
    hp = [med(rs, lambda r, h=h: (r['lookups']['hops_pct'] + [0]*10)[h]) for h in range(7)]
    dev = max(abs(hp[h] - (paper[h] if h < len(paper) else 0)) for h in range(7))
    line("hops % 1..6", " ".join(f"{x:.2f}" for x in hp[1:7]), "paper +-2 points", dev <= 2)
    rm = med(rs, lambda r: r['lookups']['rdp']['mean'])
    rr = med(rs, lambda r: r['lookups']['rdp']['ratio_of_means'])
    line("RDP mean of ratios / p50 / p95", f"{rm:.3f} / {med(rs, lambda r: r['lookups']['rdp']['p50']):.3f} / {med(rs, lambda r: r['lookups']['rdp']['p95']):.3f}", "mean <= 1.4", rm <= 1.4)
    line("RDP total overlay / total direct", f"{rr:.3f}", "paper 1.3-1.4", rr <= 1.4)
rs = load("paper")
if rs:
    print("paper: 100,000 nodes, b=4, |L|=16, plane, 200,000 lookups")
    paper_figures(rs)
    line("wall / peak RSS / bytes per node", f"{med(rs, lambda r: r['perf']['wall_s']):.0f} s / {med(rs, lambda r: r['perf']['peak_rss_bytes'])/2**30:.2f} GiB / {med(rs, lambda r: r['perf']['bytes_per_node']):.0f}", "-", True)
    line("events per second", f"{med(rs, lambda r: r['perf']['events_per_s']):.0f}", "-", True)
    line("join messages per join", f"{med(rs, lambda r: r['joins']['messages_per_join']):.1f}", "-", True)
rs = load("paper-settled")
if rs:
    print("paper, after 30 simulated minutes of routing-table maintenance")
    paper_figures(rs)
    line("control msgs/s per node", f"{med(rs, lambda r: r['traffic']['control_msgs_per_node_s']):.3f}", "-", True)
rs = load("churn")
if rs:
    print("churn: 10,000 nodes, exponential sessions of 60 min, 2 simulated hours")
    d = med(rs, lambda r: r['lookups']['delivered_pct'])
    line("delivered", f"{d:.3f}%", ">= 99.9%", d >= 99.9)
    wr = max(r['lookups']['wrong'] for r in rs)
    line("wrong deliveries (max)", f"{wr}", "0", wr == 0)
    c = med(rs, lambda r: r['traffic']['control_msgs_per_node_s'])
    line("control msgs/s per node", f"{c:.3f} ({med(rs, lambda r: r['traffic']['control_bytes_per_node_s']):.0f} B/s)", "<= 0.2", c <= 0.2)
    line("leaf sets correct at the end", f"{min(r['checks']['leaf_sets_checked'] - r['checks']['leaf_sets_wrong'] for r in rs)}/{rs[0]['checks']['leaf_sets_checked']}", "all", all(r['checks']['leaf_sets_wrong'] == 0 for r in rs))
    line("wall", f"{med(rs, lambda r: r['perf']['wall_s']):.0f} s", "-", True)
rs = load("failure")
if rs:
    print("mass failure: 50% of 10,000 nodes at once")
    rec = [r['failure']['leaf_sets_recovered_s'] for r in rs]
    ok = all(x is not None for x in rec)
    line("leaf sets correct again after", f"{statistics.median(rec) if ok else 'never'} s", "reported", ok)
    la = med(rs, lambda r: r['failure']['lookups_correct_after_s'] or 0)
    line("every lookup correct after", f"{la:.1f} s", "reported", True)
    line("checks", "ok" if all(not r['checks']['problems'] for r in rs) else "; ".join(rs[0]['checks']['problems']), "ok", all(not r['checks']['problems'] for r in rs))
rs = load("partition")
if rs:
    print("partition: 10,000 nodes split in two halves for 20 s, then healed")
    m = [r['partition']['leaf_sets_merged_s'] for r in rs]
    ok = all(x is not None for x in m)
    line("leaf sets merged after the heal", f"{statistics.median(m) if ok else 'never'} s", "reported", ok)
    line("wrong leaf sets at the end", f"{max(r['checks']['leaf_sets_wrong'] for r in rs)}", "0", all(r['checks']['leaf_sets_wrong'] == 0 for r in rs))
rs = load("million")
if rs:
    print("million: 1,000,000 nodes joined through the protocol, 1,000,000 lookups")
    w = med(rs, lambda r: r['perf']['wall_s'])
    m = med(rs, lambda r: r['perf']['peak_rss_bytes']) / 2**30
    line("wall", f"{w:.0f} s", "<= 900 s", w <= 900)
    line("peak RSS / bytes per node", f"{m:.2f} GiB / {med(rs, lambda r: r['perf']['bytes_per_node']):.0f}", "<= 12 GiB", m <= 12)
    line("correct", f"{med(rs, lambda r: r['lookups']['correct_pct']):.3f}%", "100%", True)
PY
