//! Network benchmarks on 127.0.0.1 (not timed tests: the numbers depend on the machine).
//!
//! ```sh
//! cargo build --release -p pastry                     # `reown` runs the real binary
//! cargo bench -p pastry-net --bench net -- throughput # 2 processes x 16 nodes
//! cargo bench -p pastry-net --bench net -- idle       # idle maintenance traffic per node
//! cargo bench -p pastry-net --bench net -- reown      # kill -9 to key re-owned, 5 runs
//! cargo bench -p pastry-net --bench net -- past       # PAST put/get, 1 KiB and 1 MiB
//! ```
//! With no argument all four run. `throughput` starts a second copy of this program as the
//! other process (`PASTRY_BENCH_CHILD=<bootstrap addr>`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pastry_core::NodeId;
use pastry_net::status::sum_metric;
use pastry_net::{DeliveredEvent, Identity, NodeOptions, RunningNode, client, spawn};
use tokio::sync::mpsc;

const NODES_PER_PROCESS: usize = 16;
const APP: u16 = 7;

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn start_nodes(
    n: usize,
    bootstrap: Option<SocketAddr>,
    sink: Option<mpsc::Sender<DeliveredEvent>>,
) -> Vec<RunningNode> {
    let mut nodes: Vec<RunningNode> = Vec::new();
    for _ in 0..n {
        let mut opts = NodeOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            Identity::generate().unwrap(),
        );
        opts.deliveries = sink.clone();
        opts.bootstrap = nodes
            .first()
            .map(|f| f.addr())
            .into_iter()
            .chain(bootstrap)
            .collect();
        let node = spawn(opts).await.unwrap();
        node.wait_ready(Duration::from_secs(30)).await.unwrap();
        nodes.push(node);
    }
    nodes
}

#[derive(Debug, Default)]
struct PhaseResult {
    sent: u64,
    delivered: u64,
    hop1_us: Vec<u64>,
    e2e_us: Vec<u64>,
    hops: u64,
}

/// Routes from `nodes` for `secs`: at `rate` msgs/s (0 = as fast as the nodes take them),
/// collecting deliveries at this process's nodes.
async fn phase(
    nodes: &[RunningNode],
    rx: &mut mpsc::Receiver<DeliveredEvent>,
    secs: f64,
    rate: u64,
) -> PhaseResult {
    let mut r = PhaseResult::default();
    let clients: Vec<_> = nodes.iter().map(|n| n.client().clone()).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let sender = tokio::spawn(async move {
        let mut rng = pastry_core::rng::Rng::new(wall_us());
        let mut sent = 0u64;
        while Instant::now() < end {
            let batch = if rate == 0 { 64 } else { (rate / 1000).max(1) };
            for _ in 0..batch {
                let key = NodeId::from_u128(
                    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
                );
                let c = &clients[rng.below(clients.len() as u64) as usize];
                let _ = c
                    .send(key, APP, Bytes::copy_from_slice(&wall_us().to_be_bytes()))
                    .await;
                sent += 1;
            }
            if rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        sent
    });
    let drain_until = end + Duration::from_millis(500);
    loop {
        let left = drain_until.saturating_duration_since(Instant::now());
        let Ok(Some(ev)) = tokio::time::timeout(left, rx.recv()).await else {
            break;
        };
        let d = ev.delivery;
        if d.app != APP || d.data.len() != 8 {
            continue;
        }
        let sent_at = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        let lat = wall_us().saturating_sub(sent_at);
        r.delivered += 1;
        r.hops += u64::from(d.hops);
        if d.hops == 1 {
            r.hop1_us.push(lat);
        }
        r.e2e_us.push(lat);
    }
    r.sent = sender.await.unwrap();
    r
}

/// CPU time (user + system) this process has used, from /proc (0 elsewhere).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0 // clock ticks (USER_HZ = 100 on Linux)
}

/// Bytes sent on the loopback interface so far (`/proc/net/dev`; 0 elsewhere).
fn loopback_tx_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .and_then(|rest| rest.split_whitespace().nth(8))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// UDP datagrams sent by the whole host so far (`/proc/net/snmp`; 0 elsewhere).
fn udp_out_datagrams() -> f64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0.0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn summary(tag: &str, r: &mut PhaseResult, secs: f64) -> String {
    format!(
        "{tag}: sent {:.0}/s, delivered here {:.0}/s, mean hops {:.2}, 1-hop latency p50 {} us p99 {} us, end-to-end p50 {} us p99 {} us",
        r.sent as f64 / secs,
        r.delivered as f64 / secs,
        r.hops as f64 / r.delivered.max(1) as f64,
        pct(&mut r.hop1_us, 0.5),
        pct(&mut r.hop1_us, 0.99),
        pct(&mut r.e2e_us, 0.5),
        pct(&mut r.e2e_us, 0.99),
    )
}

async fn forwarded(nodes: &[RunningNode]) -> u64 {
    let mut f = 0;
    for n in nodes {
        f += n
            .status()
            .await
            .map_or(0, |s| s.counters["forwarded"] + s.counters["delivered"]);
    }
    f
}

/// One process of the throughput benchmark: start nodes, wait for "go" on stdin, run the
/// latency phase then the saturation phase, print results.
async fn throughput_process(
    bootstrap: Option<SocketAddr>,
    ready: impl FnOnce(SocketAddr),
    go: impl std::future::Future<Output = ()>,
) -> Vec<String> {
    let (tx, mut rx) = mpsc::channel(1 << 20);
    let nodes = start_nodes(NODES_PER_PROCESS, bootstrap, Some(tx)).await;
    ready(nodes[0].addr());
    go.await;
    let mut out = Vec::new();
    let mut lat = phase(&nodes, &mut rx, 3.0, 2000).await;
    out.push(summary(
        "light load (2000 msgs/s sent per process)",
        &mut lat,
        3.0,
    ));
    let before = forwarded(&nodes).await;
    let cpu0 = cpu_secs();
    let udp0 = udp_out_datagrams();
    let secs = 5.0;
    let mut sat = phase(&nodes, &mut rx, secs, 0).await;
    let cpu = cpu_secs() - cpu0;
    let udp = udp_out_datagrams() - udp0;
    let handled = forwarded(&nodes).await - before;
    out.push(summary("saturation", &mut sat, secs));
    out.push(format!(
        "saturation: hops handled here (forwarded + delivered) {:.0}/s; process CPU {:.2} cores, {:.1} us per hop handled; host UDP datagrams sent {:.0}/s",
        handled as f64 / secs,
        cpu / (secs + 0.5),
        cpu * 1e6 / handled.max(1) as f64,
        udp / (secs + 0.5)
    ));
    out
}

async fn throughput() {
    // Parent: 16 nodes here, 16 in a child process. Nothing here blocks the runtime's
    // threads, so the benchmark also runs on a current-thread runtime.
    let exe = std::env::current_exe().unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let mine = tokio::spawn(async move {
        throughput_process(
            None,
            move |a| {
                let _ = addr_tx.send(a);
            },
            async {
                let _ = go_rx.await;
            },
        )
        .await
    });
    let addr = addr_rx.await.unwrap();
    let (mut child, lines) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(exe)
            .env("PASTRY_BENCH_CHILD", addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().unwrap().unwrap();
        assert_eq!(line, "ready");
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
        (child, lines)
    })
    .await
    .unwrap();
    let _ = go_tx.send(());
    let mine = mine.await.unwrap();
    let theirs: Vec<String> =
        tokio::task::spawn_blocking(move || lines.map_while(Result::ok).collect())
            .await
            .unwrap();
    println!("== throughput: 2 processes x {NODES_PER_PROCESS} nodes on 127.0.0.1");
    for l in mine {
        println!("process 1 {l}");
    }
    for l in theirs {
        println!("process 2 {l}");
    }
    let _ = child.wait();
}

async fn throughput_child(bootstrap: SocketAddr) {
    let out = throughput_process(
        Some(bootstrap),
        |_| {
            println!("ready");
            let _ = std::io::stdout().flush();
        },
        async {
            let mut s = String::new();
            let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut s)).await;
        },
    )
    .await;
    for l in out {
        println!("{l}");
    }
}

async fn idle() {
    let n = 10;
    let nodes = start_nodes(n, None, None).await;
    let list = Arc::new(RwLock::new(
        nodes.iter().map(|x| x.client().clone()).collect(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, pastry_net::http::router(list)).await });
    let sample = |base: String| async move {
        tokio::task::spawn_blocking(move || client::get(&base).unwrap().body)
            .await
            .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(20)).await; // let joins' probing settle
    let m0 = sample(base.clone()).await;
    let (udp0, udp_bytes0) = (udp_out_datagrams(), loopback_tx_bytes());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await; // the measurement window
    let (udp1, udp_bytes1) = (udp_out_datagrams(), loopback_tx_bytes());
    let m1 = sample(base).await;
    let secs = t0.elapsed().as_secs_f64();
    let per_node = |name: &str| (sum_metric(&m1, name) - sum_metric(&m0, name)) / secs / n as f64;
    println!("== idle: {n} nodes, default config, 60 s window after 20 s warm-up");
    println!(
        "idle maintenance per node: {:.1} bytes/s, {:.3} messages/s",
        per_node("pastry_bytes_out_total"),
        per_node("pastry_messages_out_total")
    );
    // Where it goes: per message type, and the transport's own partition-healing knocks.
    let by_type = |text: &str, name: &str| {
        let mut m = std::collections::BTreeMap::<String, f64>::new();
        for l in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
            let (Some(t), Some(v)) = (
                l.split("type=\"").nth(1).and_then(|r| r.split('"').next()),
                l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            *m.entry(t.to_string()).or_default() += v;
        }
        m
    };
    let (m_a, m_b) = (
        by_type(&m0, "pastry_messages_out_total"),
        by_type(&m1, "pastry_messages_out_total"),
    );
    let (b_a, b_b) = (
        by_type(&m0, "pastry_bytes_out_total"),
        by_type(&m1, "pastry_bytes_out_total"),
    );
    for (t, v) in &m_b {
        let msgs = (v - m_a.get(t).unwrap_or(&0.0)) / secs / n as f64;
        let bytes = (b_b.get(t).unwrap_or(&0.0) - b_a.get(t).unwrap_or(&0.0)) / secs / n as f64;
        if msgs > 0.0 {
            println!("  {t:<16} {msgs:.3} messages/s {bytes:.1} bytes/s");
        }
    }
    println!(
        "  on the wire (whole host, QUIC acks and handshakes included): {:.3} UDP datagrams/s, {:.1} loopback bytes/s per node",
        (udp1 - udp0) / secs / n as f64,
        (udp_bytes1 - udp_bytes0) / secs / n as f64
    );
    println!(
        "  (of which partition-healing knocks: {:.3} messages/s; probes sent by pastry-core: {:.3}/s)",
        per_node("pastry_heal_knocks_total"),
        per_node("pastry_probes_sent_total")
    );
}

fn pastry_bin() -> String {
    std::env::var("PASTRY_BIN")
        .unwrap_or_else(|_| format!("{}/../../target/release/pastry", env!("CARGO_MANIFEST_DIR")))
}

struct Proc(std::process::Child, String, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_proc(dir: &std::path::Path, bootstrap: Option<&str>) -> Proc {
    let mut cmd = Command::new(pastry_bin());
    cmd.args([
        "node",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--nodes",
        "4",
    ])
    .arg("--data-dir")
    .arg(dir)
    .env("RUST_LOG", "error")
    .stdout(Stdio::piped());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd
        .spawn()
        .expect("run target/release/pastry (cargo build --release first)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut first) = (String::new(), String::new());
    let mut ready = 0;
    while ready < 4 {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l.strip_prefix("admin ") {
            http = u.to_string();
        } else if l.ends_with(" ready") {
            ready += 1;
        } else if first.is_empty() && l.contains("listening on") {
            first = l.split_whitespace().nth(1).unwrap().to_string();
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Proc(child, http, first)
}

fn reown() {
    println!("== kill -9 to re-owned key: 3 processes x 4 nodes, default config");
    let tmp = std::env::temp_dir().join(format!("pastry-bench-{}", std::process::id()));
    let mut times = Vec::new();
    for run in 0..5 {
        let a = node_proc(&tmp.join(format!("a{run}")), None);
        let a_addr = client::status(&a.1).unwrap().addr;
        let _b = node_proc(&tmp.join(format!("b{run}")), Some(&a_addr));
        let c = node_proc(&tmp.join(format!("c{run}")), Some(&a_addr));
        let victim = NodeId::from_hex(&c.2).unwrap();
        let mut all: Vec<NodeId> = Vec::new();
        for p in [&a, &_b, &c] {
            all.extend(
                client::nodes(&p.1)
                    .unwrap()
                    .iter()
                    .map(|s| NodeId::from_hex(&s.id).unwrap()),
            );
        }
        let dead: Vec<NodeId> = client::nodes(&c.1)
            .unwrap()
            .iter()
            .map(|s| NodeId::from_hex(&s.id).unwrap())
            .collect();
        let live: Vec<NodeId> = all.iter().copied().filter(|x| !dead.contains(x)).collect();
        let new_root = live
            .iter()
            .copied()
            .reduce(|x, y| if victim.is_closer(y, x) { y } else { x })
            .unwrap();
        // Lookups start every 100 ms, each waiting up to 30 s for its report; the first to
        // come back from the new root ends the run.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<f64>();
        let t0 = Instant::now();
        drop(c); // SIGKILL
        let url = format!("{}/route", a.1);
        let body = format!("{{\"key\":\"{victim}\",\"timeout_ms\":30000}}");
        let t = loop {
            let (url, body, tx) = (url.clone(), body.clone(), done_tx.clone());
            let want = new_root.to_string();
            std::thread::spawn(move || {
                if let Ok(r) = client::post_json(&url, &body)
                    && r.body.contains(&format!("\"root\":\"{want}\""))
                {
                    let _ = tx.send(t0.elapsed().as_secs_f64());
                }
            });
            if let Ok(t) = done_rx.recv_timeout(Duration::from_millis(100)) {
                break t;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "not re-owned within 60 s"
            );
        };
        println!("run {run}: key of a killed node delivered by the new root after {t:.2} s");
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median {:.2} s over {} runs",
        times[times.len() / 2],
        times.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(b) = std::env::var("PASTRY_BENCH_CHILD") {
        rt.block_on(throughput_child(b.parse().unwrap()));
        return;
    }
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |w: &str| which.is_empty() || which.iter().any(|a| a == w);
    if want("throughput") {
        rt.block_on(throughput());
    }
    if want("reown") {
        reown();
    }
    if want("idle") {
        rt.block_on(idle());
    }
    if want("past") {
        rt.block_on(past());
    }
}

/// Nodes of the PAST ring (one process, each node with its own redb store).
const PAST_NODES: usize = 16;
/// Runs per figure; the medians are printed.
const PAST_RUNS: usize = 3;

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn object(rng: &mut pastry_core::rng::Rng, size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(size);
    Bytes::from(v)
}

/// One run for objects of `size` bytes: `seq` sequential puts then gets (latency, each get
/// from a node that is not a replica holder, so it crosses the network), then `total`
/// puts and gets with `conc` in flight (throughput).
async fn past_run(
    nodes: &[RunningNode],
    size: usize,
    seq: usize,
    total: usize,
    conc: usize,
    seed: u64,
) -> [f64; 6] {
    let timeout = Duration::from_secs(60);
    let mut rng = pastry_core::rng::Rng::new(seed);
    let mut put_us = Vec::new();
    let mut get_us = Vec::new();
    for _ in 0..seq {
        let data = object(&mut rng, size);
        let from = &nodes[rng.below(nodes.len() as u64) as usize];
        let t = Instant::now();
        let r = from.past_put(data.clone(), None, timeout).await.unwrap();
        put_us.push(t.elapsed().as_micros() as u64);
        let key = NodeId::from_hex(&r.key).unwrap();
        let reader = nodes
            .iter()
            .find(|n| !r.holders.iter().any(|h| h.id == n.id().to_string()))
            .unwrap_or(from);
        let t = Instant::now();
        let got = reader.past_get(key, timeout).await.unwrap();
        get_us.push(t.elapsed().as_micros() as u64);
        assert_eq!(got, data);
    }
    let objs: Vec<Bytes> = (0..total).map(|_| object(&mut rng, size)).collect();
    let clients: Vec<_> = nodes.iter().map(|n| n.client().clone()).collect();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut keys = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        if set.len() >= conc
            && let Some(r) = set.join_next().await
        {
            keys.push(r.unwrap());
        }
        let c = clients[i % clients.len()].clone();
        let o = o.clone();
        set.spawn(async move { c.past_put(o, None, timeout).await.unwrap().key });
    }
    while let Some(r) = set.join_next().await {
        keys.push(r.unwrap());
    }
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        if set.len() >= conc {
            set.join_next().await.unwrap().unwrap();
        }
        let c = clients[(i * 7 + 3) % clients.len()].clone();
        let key = NodeId::from_hex(k).unwrap();
        set.spawn(async move {
            c.past_get(key, timeout).await.unwrap();
            String::new()
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let get_s = t.elapsed().as_secs_f64();
    [
        pct(&mut put_us, 0.5) as f64 / 1000.0,
        pct(&mut put_us, 0.95) as f64 / 1000.0,
        pct(&mut get_us, 0.5) as f64 / 1000.0,
        pct(&mut get_us, 0.95) as f64 / 1000.0,
        total as f64 / put_s,
        total as f64 / get_s,
    ]
}

/// PAST put/get latency and throughput on a loopback ring of [`PAST_NODES`] nodes with
/// redb stores (k = 5, every replica write an fsynced redb commit), medians of
/// [`PAST_RUNS`] runs.
async fn past() {
    let tmp = std::env::temp_dir().join(format!("pastry-past-bench-{}", std::process::id()));
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 0..PAST_NODES {
        let mut opts = NodeOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            Identity::generate().unwrap(),
        );
        opts.bootstrap = nodes.first().map(|f| f.addr()).into_iter().collect();
        opts.past = Some(pastry_net::PastOptions {
            config: pastry_past::PastConfig::default(),
            store: Some(tmp.join(format!("n{i}.redb"))),
        });
        std::fs::create_dir_all(&tmp).unwrap();
        let node = spawn(opts).await.unwrap();
        node.wait_ready(Duration::from_secs(30)).await.unwrap();
        nodes.push(node);
    }
    // Let the leaf sets settle before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "PAST on {PAST_NODES} loopback nodes, k = 5, redb stores in {}; medians of {PAST_RUNS} runs",
        tmp.display()
    );
    for (label, size, seq, total, conc) in
        [("1 KiB", 1024, 50, 400, 16), ("1 MiB", 1 << 20, 10, 40, 4)]
    {
        let mut runs: Vec<[f64; 6]> = Vec::new();
        for r in 0..PAST_RUNS {
            runs.push(past_run(&nodes, size, seq, total, conc, wall_us() ^ r as u64).await);
        }
        let m = |i: usize| median_f(&mut runs.iter().map(|x| x[i]).collect::<Vec<_>>());
        let mib = size as f64 / (1 << 20) as f64;
        println!(
            "  {label}: put p50 {:.1} ms p95 {:.1} ms, get p50 {:.1} ms p95 {:.1} ms (sequential); \
             {:.0} puts/s ({:.1} MiB/s), {:.0} gets/s ({:.1} MiB/s) with {conc} in flight",
            m(0),
            m(1),
            m(2),
            m(3),
            m(4),
            m(4) * mib,
            m(5),
            m(5) * mib
        );
    }
    for n in &nodes {
        let _ = n.crash().await;
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
