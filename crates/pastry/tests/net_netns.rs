//! Four `pastry node` hosts in network namespaces on a veth bridge (created and removed by
//! the test): a link is taken down, routing goes on among the other three, the link comes
//! back and the ring heals. Needs root and iproute2's `ip netns`; elsewhere the test prints
//! why it is skipped and passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pastry_core::NodeId;

const BIN: &str = env!("CARGO_BIN_EXE_pastry");
const HOSTS: usize = 4;
const FAST: &str = "heartbeat_interval_ms = 500\nheartbeat_timeout_ms = 800\n\
probe_timeout_initial_ms = 300\nprobe_timeout_min_ms = 100\nprobe_timeout_max_ms = 500\n\
join_timeout_ms = 1000\n";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and the bridge; removed (with their veths) when dropped.
struct Net {
    bridge: String,
    hosts: Vec<String>,
    links: Vec<String>,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.bridge]) {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup() -> Result<Net, String> {
    let pid = std::process::id() % 100_000;
    let dir = std::env::temp_dir().join(format!("pastry-netns-{pid}"));
    let mut net = Net {
        bridge: format!("pbr{pid}"),
        hosts: Vec::new(),
        links: Vec::new(),
        dir,
    };
    ip(&["netns", "add", &net.bridge])?;
    ip(&["-n", &net.bridge, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &net.bridge, "link", "set", "br0", "up"])?;
    for i in 0..HOSTS {
        let ns = format!("ph{pid}x{i}");
        ip(&["netns", "add", &ns])?;
        net.hosts.push(ns.clone());
        let (h, b) = (format!("h{i}p{pid}"), format!("b{i}p{pid}"));
        ip(&[
            "link",
            "add",
            &h,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &net.bridge,
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.0.{}/24", i + 1),
            "dev",
            &h,
        ])?;
        ip(&["-n", &ns, "link", "set", &h, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &net.bridge, "link", "set", &b, "master", "br0"])?;
        ip(&["-n", &net.bridge, "link", "set", &b, "up"])?;
        net.links.push(h);
    }
    std::fs::create_dir_all(&net.dir).map_err(|e| e.to_string())?;
    Ok(net)
}

struct Host {
    child: Child,
    ns: String,
    id: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ns: &str, i: usize, dir: &Path, config: &Path) -> Host {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, BIN, "node"])
        .args(["--listen", &format!("10.77.0.{}:4000", i + 1)])
        .args(["--http", "127.0.0.1:8080"])
        .arg("--data-dir")
        .arg(dir.join(format!("h{i}")))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped());
    if i > 0 {
        cmd.args(["--bootstrap", "10.77.0.1:4000"]);
    }
    let mut child = cmd.spawn().expect("spawn pastry node in a namespace");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines.next().expect("node output").expect("utf-8");
        if let Some(rest) = line.strip_prefix("node ")
            && rest.contains("listening on")
        {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Host {
        child,
        ns: ns.to_string(),
        id,
    }
}

/// The root of `key` as `pastry lookup`, run inside `host`'s namespace, reports it.
fn root(host: &Host, key: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.ns,
            BIN,
            "lookup",
            "--node",
            "http://127.0.0.1:8080",
            key,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("root "))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

fn closest(ids: &[&str], key: &str) -> String {
    let key = NodeId::from_hex(key).unwrap();
    ids.iter()
        .map(|s| NodeId::from_hex(s).unwrap())
        .reduce(|a, b| if key.is_closer(b, a) { b } else { a })
        .unwrap()
        .to_string()
}

/// Every host in `from` resolves every key in `keys` to the closest of `live`.
fn consistent(from: &[&Host], live: &[&str], keys: &[String]) -> bool {
    from.iter().all(|h| {
        keys.iter()
            .all(|k| root(h, k).as_deref() == Some(&closest(live, k)))
    })
}

fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100)); // polling interval
    }
    start.elapsed()
}

#[test]
fn four_hosts_route_around_a_downed_link_and_heal_when_it_returns() {
    let net = match setup() {
        Ok(n) => n,
        Err(reason) => {
            println!("skipping the network-namespace test: {reason}");
            return;
        }
    };
    let config = net.dir.join("fast.toml");
    std::fs::write(&config, FAST).unwrap();
    let mut hosts = Vec::new();
    for (i, ns) in net.hosts.iter().enumerate() {
        hosts.push(start(ns, i, &net.dir, &config));
    }
    let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    let all_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut rng = pastry_core::rng::Rng::new(3);
    let mut keys: Vec<String> = (0..4)
        .map(|_| {
            NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
                .to_string()
        })
        .collect();
    keys.extend(ids.iter().cloned());
    let every: Vec<&Host> = hosts.iter().collect();
    wait_until(30, "4 hosts agree on every root", || {
        consistent(&every, &all_ids, &keys)
    });

    // Cut host 3 off the bridge.
    ip(&["-n", &net.hosts[3], "link", "set", &net.links[3], "down"]).unwrap();
    let rest: Vec<&Host> = hosts[..3].iter().collect();
    let rest_ids: Vec<&str> = all_ids[..3].to_vec();
    let took = wait_until(30, "the other 3 route around host 3", || {
        consistent(&rest, &rest_ids, &keys)
    });
    println!(
        "link down: routing settled among 3 hosts in {:.1} s",
        took.as_secs_f64()
    );

    // Restore the link: the ring heals, host 3 owns its keys again, both ways.
    ip(&["-n", &net.hosts[3], "link", "set", &net.links[3], "up"]).unwrap();
    let took = wait_until(60, "the ring heals", || consistent(&every, &all_ids, &keys));
    println!("link up: ring healed in {:.1} s", took.as_secs_f64());
}
