//! The networked commands of the `pastry` binary: `hello`, `node`, `lookup`, the PAST
//! clients `put`, `get`, `replicas`, and the Scribe clients `publish`, `subscribe`. Each builds its own tokio runtime (the clients need
//! none); the binary only parses arguments and calls these.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use pastry_core::{Config, NodeId};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::config::{self, NetConfig};
use crate::identity::Identity;
use crate::node::{NodeOptions, RunningNode, spawn};
use crate::status::RouteReport;
use crate::{client, http};

/// `pastry hello`: real nodes on 127.0.0.1 form a ring, then route messages to random keys.
#[derive(Debug, Clone, clap::Args)]
pub struct HelloArgs {
    /// Nodes to start (they join one by one).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub nodes: u32,
    /// Messages to route [default: 2 per node].
    #[arg(long)]
    pub msgs: Option<u32>,
    /// Seed for the keys and node PRNGs (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `pastry node`: run one node (or `--nodes K` virtual nodes) until Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// UDP address to listen on (port 0 picks a free port; with --nodes K, node i uses
    /// port + i).
    #[arg(long, default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Address other nodes reach this one at (required when listening on 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// A node of the ring to join through (repeatable); none starts a new ring.
    #[arg(long)]
    pub bootstrap: Vec<SocketAddr>,
    /// Directory for the node's key and PAST store `past.redb` (node i of --nodes K uses
    /// DIR/node-i).
    #[arg(long, default_value = "pastry-data")]
    pub data_dir: PathBuf,
    /// Configuration file (TOML; unknown keys are errors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Admin HTTP API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: SocketAddr,
    /// Virtual nodes to run in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub nodes: u32,
}

/// `pastry lookup`: ask a running node which node is the root of a key, and the path.
#[derive(Debug, Clone, clap::Args)]
pub struct LookupArgs {
    /// The node's admin API, e.g. http://127.0.0.1:8080 (as `pastry node` prints it).
    #[arg(long)]
    pub node: String,
    /// The key: 32 hex digits, or any other text (then its SHA-256, first 128 bits).
    pub key: String,
}

/// `pastry put`: store a file in PAST through a running node; prints its key.
#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    /// The node's admin API, e.g. http://127.0.0.1:8080 (as `pastry node` prints it).
    #[arg(long)]
    pub node: String,
    /// Replicas [default: the node's configured k, 5].
    #[arg(long)]
    pub k: Option<usize>,
    /// The file to store (`-` reads standard input).
    pub file: PathBuf,
}

/// `pastry get`: fetch an object from PAST through a running node.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// The node's admin API.
    #[arg(long)]
    pub node: String,
    /// The key `pastry put` printed: 32 hex digits.
    pub key: String,
    /// Write the object here instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `pastry replicas`: the nodes responsible for a key's replicas.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicasArgs {
    /// The node's admin API.
    #[arg(long)]
    pub node: String,
    /// The key: 32 hex digits.
    pub key: String,
}

/// `pastry publish`: publish a message to a Scribe topic through a running node.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The node's admin API, e.g. http://127.0.0.1:8080 (as `pastry node` prints it).
    #[arg(long)]
    pub node: String,
    /// The topic's name (any text; its id is the first 128 bits of its SHA-256).
    pub topic: String,
    /// The message text.
    #[arg(required_unless_present = "file")]
    pub message: Option<String>,
    /// Publish this file's bytes instead (`-` reads standard input).
    #[arg(long, conflicts_with = "message")]
    pub file: Option<PathBuf>,
}

/// `pastry subscribe`: subscribe a running node to a Scribe topic and print what arrives.
#[derive(Debug, Clone, clap::Args)]
pub struct SubscribeArgs {
    /// The node's admin API, e.g. http://127.0.0.1:8080 (as `pastry node` prints it).
    #[arg(long)]
    pub node: String,
    /// The topic's name.
    pub topic: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print each message as the node's JSON line (seq, publisher, id, base64 payload)
    /// instead of its text.
    #[arg(long)]
    pub json: bool,
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn random_u64() -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

/// A key from the command line: 32 hex digits, or the hash of any other text.
pub fn parse_key(text: &str) -> NodeId {
    NodeId::from_hex(text).unwrap_or_else(|_| {
        let d = Sha256::digest(text.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        NodeId::from_bytes(b)
    })
}

fn closest(ids: &[NodeId], key: NodeId) -> Option<NodeId> {
    ids.iter()
        .copied()
        .reduce(|a, b| if key.is_closer(b, a) { b } else { a })
}

/// Runs `pastry hello`: the equivalent of FreePastry's DistHelloWorld.
///
/// # Errors
/// When a node cannot start or join. A message delivered at the wrong node, or not at all,
/// is not an error: it is printed and the exit code is 1.
pub fn hello(args: HelloArgs) -> anyhow::Result<ExitCode> {
    init_logging("warn");
    runtime()?.block_on(hello_async(args))
}

async fn hello_async(args: HelloArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let seed = match args.seed {
        Some(s) => s,
        None => random_u64()?,
    };
    let mut rng = pastry_core::rng::Rng::new(seed);
    let n = args.nodes as usize;
    let msgs = args.msgs.unwrap_or(args.nodes * 2) as usize;
    println!("pastry hello: {n} nodes on 127.0.0.1, {msgs} messages (seed {seed})");
    let mut nodes: Vec<RunningNode> = Vec::with_capacity(n);
    for i in 0..n {
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let mut opts = NodeOptions::new("127.0.0.1:0".parse()?, Identity::from_seed(key));
        opts.seed = Some(rng.next_u64());
        if !nodes.is_empty() {
            // Join through a random earlier node, as nodes of a real ring would.
            let b = &nodes[rng.below(nodes.len() as u64) as usize];
            opts.bootstrap = vec![b.addr()];
        }
        let node = spawn(opts).await?;
        node.wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| format!("node {i} could not join"))?;
        println!("node {i:>3} {} at {} joined", node.id(), node.addr());
        nodes.push(node);
    }
    let joined = started.elapsed();
    println!("ring of {n} nodes formed in {:.2} s", joined.as_secs_f64());

    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
    let mut routes = tokio::task::JoinSet::new();
    for m in 0..msgs {
        let key = NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
        let from = rng.below(n as u64) as usize;
        let client = nodes[from].client().clone();
        routes.spawn(async move {
            let data = Bytes::from(format!("hello #{m} from node {from}"));
            (
                m,
                key,
                from,
                client.route(key, data, true, Duration::from_secs(10)).await,
            )
        });
    }
    let mut results: Vec<(usize, NodeId, usize, anyhow::Result<RouteReport>)> = Vec::new();
    while let Some(r) = routes.join_next().await {
        results.push(r?);
    }
    results.sort_by_key(|r| r.0);
    let mut good = 0;
    let mut hops = 0u64;
    for (m, key, from, r) in &results {
        let expected = closest(&ids, *key);
        match r {
            Ok(r) => {
                let root = r.root_id();
                let idx = root.and_then(|x| ids.iter().position(|i| *i == x));
                let ok = root == expected;
                good += usize::from(ok);
                hops += u64::from(r.hops);
                println!(
                    "msg {m:>3} key {key} from node {from:>3} delivered at node {:>3} {} after {} hop{}{}",
                    idx.map_or("?".to_string(), |i| i.to_string()),
                    r.root,
                    r.hops,
                    if r.hops == 1 { "" } else { "s" },
                    if ok {
                        ""
                    } else {
                        "  WRONG NODE: expected the closest, "
                    }
                );
                if !ok && let Some(e) = expected {
                    println!("        the numerically closest node is {e}");
                }
            }
            Err(e) => println!("msg {m:>3} key {key} from node {from:>3} NOT DELIVERED: {e}"),
        }
    }
    let total = started.elapsed();
    println!(
        "{good} of {msgs} messages delivered at the numerically closest node, mean {:.2} hops; {:.2} s in all",
        if results.is_empty() {
            0.0
        } else {
            hops as f64 / results.len() as f64
        },
        total.as_secs_f64()
    );
    // Leave quietly; the process exits anyway.
    let mut leaving = tokio::task::JoinSet::new();
    for node in &nodes {
        let c = node.client().clone();
        leaving.spawn(async move { c.crash().await });
    }
    while leaving.join_next().await.is_some() {}
    Ok(if good == msgs {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `pastry node` until Ctrl-C (or SIGTERM), then leaves gracefully.
///
/// # Errors
/// A bad or unreadable configuration file, a data directory that cannot be used, a port in
/// use, or a join that failed (no bootstrap node answered).
pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    init_logging("info");
    runtime()?.block_on(node_async(args))
}

async fn node_async(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let config::NodeConfigs {
        core: cfg,
        net,
        past,
        scribe,
    } = match &args.config {
        Some(path) => config::load_node(path)?,
        None => config::NodeConfigs {
            core: Config::default(),
            net: NetConfig::default(),
            past: pastry_past::PastConfig::default(),
            scribe: pastry_scribe::ScribeConfig::default(),
        },
    };
    let cfg = Arc::new(cfg);
    let k = args.nodes as usize;
    let nodes: http::Nodes = Arc::new(RwLock::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http))?;
    let http_addr = listener.local_addr()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = http::router_with_configs(nodes.clone(), &past, &scribe);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await;
    });
    let mut running: Vec<RunningNode> = Vec::new();
    let result: anyhow::Result<()> = async {
        for i in 0..k {
            let dir = if k == 1 {
                args.data_dir.clone()
            } else {
                args.data_dir.join(format!("node-{i}"))
            };
            let identity = Identity::load_or_create(&dir)?;
            let mut listen = args.listen;
            if listen.port() != 0 {
                let port = u16::try_from(usize::from(listen.port()) + i)
                    .context("--listen port + --nodes exceeds 65535")?;
                listen.set_port(port);
            }
            let mut opts = NodeOptions::new(listen, identity);
            opts.advertise = args.advertise.map(|mut a| {
                if a.port() != 0 {
                    a.set_port(a.port().saturating_add(i as u16));
                }
                a
            });
            opts.config = cfg.clone();
            opts.net = net.clone();
            opts.past = Some(crate::past::PastOptions {
                config: past.clone(),
                store: Some(dir.join(crate::past::STORE_FILE)),
            });
            opts.scribe = Some(crate::scribe::ScribeOptions {
                config: scribe.clone(),
            });
            opts.bootstrap = args.bootstrap.clone();
            if let Some(first) = running.first() {
                opts.bootstrap.insert(0, first.addr());
            }
            let node = spawn(opts).await?;
            println!("node {} listening on {} (quic)", node.id(), node.addr());
            if let Ok(mut l) = nodes.write() {
                l.push(node.client().clone());
            }
            if i == 0 {
                println!("admin http://{http_addr}");
            }
            let _ = std::io::stdout().flush();
            let ready = node.wait_ready(Duration::from_secs(600)).await;
            running.push(node);
            if let Err(e) = ready {
                if args.bootstrap.is_empty() || i > 0 {
                    return Err(e);
                }
                let tried: Vec<String> = args.bootstrap.iter().map(|a| a.to_string()).collect();
                bail!("{e} (tried {})", tried.join(", "));
            }
            println!("node {} ready", running[i].id());
            let _ = std::io::stdout().flush();
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        for n in &running {
            let _ = n.crash().await;
        }
        return Err(e);
    }
    info!(nodes = k, "running; Ctrl-C leaves the ring");
    wait_for_signal().await;
    println!("leaving");
    let _ = std::io::stdout().flush();
    let mut leaving = tokio::task::JoinSet::new();
    for n in &running {
        let c = n.client().clone();
        leaving.spawn(async move { c.leave().await });
    }
    while leaving.join_next().await.is_some() {}
    let _ = stop_http.send(());
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `pastry lookup`: prints the root of the key and the path taken.
///
/// # Errors
/// When the node cannot be reached or answers with an error.
pub fn lookup(args: LookupArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.key);
    let r = client::route(&args.node, key)?;
    println!("key  {key}");
    println!("root {} at {}", r.root, r.root_addr);
    println!(
        "path ({} hop{}): {}",
        r.hops,
        if r.hops == 1 { "" } else { "s" },
        r.path.join(" -> ")
    );
    Ok(ExitCode::SUCCESS)
}

fn hex_key(text: &str) -> anyhow::Result<NodeId> {
    NodeId::from_hex(text.trim()).map_err(|_| {
        anyhow::anyhow!("key `{text}`: expected 32 hexadecimal digits (as `pastry put` prints)")
    })
}

/// Runs `pastry put`: prints the stored object's key on standard output, and the replica
/// holders on standard error.
///
/// # Errors
/// An unreadable file, a file over the node's object limit (checked before sending), an
/// unreachable node, or the node's error (no space, timeout, ...).
pub fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let data = if args.file.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v)
            .context("reading standard input")?;
        v
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?
    };
    if data.is_empty() {
        bail!(
            "{}: empty file: PAST stores objects of at least one byte",
            args.file.display()
        );
    }
    let info = client::past_info(&args.node)?;
    if let Some(max) = info.get("max_object_bytes").and_then(|v| v.as_u64())
        && data.len() as u64 > max
    {
        bail!(
            "{}: {} bytes is larger than the node's object limit of {max} bytes",
            args.file.display(),
            data.len()
        );
    }
    let r = client::past_put(&args.node, &data, args.k)?;
    let key = r
        .get("key")
        .and_then(|k| k.as_str())
        .context("the node's answer has no key")?;
    println!("{key}");
    if let Some(h) = r.get("holders").and_then(|h| h.as_array()) {
        let ids: Vec<&str> = h.iter().filter_map(|x| x.get("id")?.as_str()).collect();
        eprintln!(
            "stored {} bytes on {} replicas: {}",
            data.len(),
            ids.len(),
            ids.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pastry get`: writes the object's bytes to standard output or `-o FILE`.
///
/// # Errors
/// A malformed key, an unreachable node, a missing object (the node's 404), an unwritable
/// output file.
pub fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let key = hex_key(&args.key)?;
    let data = client::past_get(&args.node, key)?;
    match &args.output {
        Some(p) => {
            std::fs::write(p, &data).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data).context("writing to standard output")?;
            out.flush().context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pastry replicas`: one `ID ADDR` line per node responsible for the key's replicas,
/// closest first.
///
/// # Errors
/// A malformed key, an unreachable node, or the node's error.
pub fn replicas(args: ReplicasArgs) -> anyhow::Result<ExitCode> {
    let key = hex_key(&args.key)?;
    let r = client::past_replicas(&args.node, key)?;
    let list = r
        .get("replicas")
        .and_then(|l| l.as_array())
        .context("the node's answer has no replica list")?;
    for h in list {
        println!(
            "{} {}",
            h.get("id").and_then(|v| v.as_str()).unwrap_or("?"),
            h.get("addr").and_then(|v| v.as_str()).unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pastry publish`: hands the message to the node's Scribe; says so on standard
/// error.
///
/// # Errors
/// No message, an unreadable file, a message over the node's payload limit (checked before
/// sending), an unreachable node, or the node's error.
pub fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let data = match (&args.file, &args.message) {
        (Some(f), _) if f.as_os_str() == "-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v)
                .context("reading standard input")?;
            v
        }
        (Some(f), _) => std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        (None, Some(m)) => m.clone().into_bytes(),
        (None, None) => bail!("give the message text, or --file FILE"),
    };
    crate::scribe::check_topic_name(&args.topic).map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = client::scribe_info(&args.node)?;
    if let Some(max) = info.get("max_payload_bytes").and_then(|v| v.as_u64())
        && data.len() as u64 > max
    {
        bail!(
            "message of {} bytes is larger than the node's limit of {max} bytes",
            data.len()
        );
    }
    let r = client::scribe_publish(&args.node, &args.topic, &data)?;
    eprintln!(
        "published {} bytes to topic `{}` ({}) as message {} of {}",
        r.size, r.topic, r.topic_id, r.id, r.publisher
    );
    Ok(ExitCode::SUCCESS)
}

/// A payload as one line of text: lossy UTF-8 without one trailing line break (as `echo`
/// adds), other line breaks and control characters escaped (`\\n`, `\\u{1b}`, ...).
pub fn payload_text(payload: &[u8]) -> String {
    let payload = payload
        .strip_suffix(b"\r\n")
        .or_else(|| payload.strip_suffix(b"\n"))
        .unwrap_or(payload);
    let text = String::from_utf8_lossy(payload);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `pastry subscribe`: prints each message of the topic on its own line as it
/// arrives (its text, or `--json`), and what happens to the subscription on standard
/// error; with `--count N`, exits after N messages.
///
/// # Errors
/// A bad topic name, an unreachable node, the node's error, or a stream the node ended.
pub fn subscribe(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    use crate::scribe::StreamLine;
    let topic = crate::scribe::check_topic_name(&args.topic).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut got = 0u64;
    let mut failure = None;
    let mut announced = false;
    client::subscribe(&args.node, &args.topic, |line| {
        if !announced {
            eprintln!("subscribed to topic `{}` ({topic})", args.topic);
            announced = true;
        }
        let Some(line) = line else {
            return true;
        };
        match line {
            StreamLine::Message(m) => {
                if m.dropped > 0 {
                    eprintln!(
                        "{} messages dropped: this client read too slowly",
                        m.dropped
                    );
                }
                let out = if args.json {
                    serde_json::to_string(&StreamLine::Message(m)).unwrap_or_default()
                } else {
                    match m.payload_bytes() {
                        Ok(p) => payload_text(&p),
                        Err(e) => {
                            failure = Some(anyhow::anyhow!("bad payload from the node: {e}"));
                            return false;
                        }
                    }
                };
                let mut stdout = std::io::stdout().lock();
                if writeln!(stdout, "{out}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    // Standard output closed (a pipe's reader left): stop quietly.
                    return false;
                }
                got += 1;
                args.count.is_none_or(|c| got < c)
            }
            StreamLine::Attached { parent: Some(p) } => {
                eprintln!("attached to the topic's tree under {p}");
                true
            }
            StreamLine::Attached { parent: None } => {
                eprintln!("attached to the topic's tree as its root");
                true
            }
            StreamLine::ParentLost { parent } => {
                eprintln!("lost parent {parent}; re-subscribing");
                true
            }
            StreamLine::Other => true,
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_print_as_one_line() {
        assert_eq!(payload_text(b"hello\n"), "hello");
        assert_eq!(payload_text(b"a\nb\r\n"), "a\\nb");
        assert_eq!(payload_text(b"tab\there\x1b"), "tab\there\\u{1b}");
        assert_eq!(payload_text(b"\xff!"), "\u{fffd}!");
    }
}
