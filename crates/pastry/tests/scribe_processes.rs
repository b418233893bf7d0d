//! Scribe across 10 `pastry node` processes on 127.0.0.1: 5 of them subscribe to a topic
//! through the admin API's streaming endpoint (read by this test), another publishes 100
//! messages that each reach all 5 exactly once; then an interior node of the topic's tree
//! (a forwarder found through `/scribe/topics`) is killed with kill -9, the tree repairs,
//! and 100 more messages again reach all 5 exactly once. Finally the `pastry subscribe` and
//! `pastry publish` commands, their errors, and the unsubscription when the last stream
//! of a topic closes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pastry_core::NodeId;
use pastry_net::client;
use pastry_net::{StreamLine, TopicView};

mod common;
use common::*;

/// Fast failure detection and Scribe repair, so the test does not wait out the defaults.
/// b = 1 and |L| = 4 make routes in a 10-node ring take several hops, so trees have
/// forwarders (interior nodes that are not members), which is what the test kills.
const FAST: &str = "b = 1\nleaf_set_size = 4\n\
heartbeat_interval_ms = 500\nheartbeat_timeout_ms = 800\n\
probe_timeout_initial_ms = 300\nprobe_timeout_min_ms = 100\nprobe_timeout_max_ms = 500\n\
join_timeout_ms = 1000\n\
[scribe]\ntick_interval_ms = 100\nheartbeat_interval_ms = 300\nparent_timeout_ms = 2000\n\
refresh_interval_ms = 500\nchild_timeout_ms = 3000\nsubscribe_timeout_ms = 1000\n\
subscribe_backoff_max_ms = 4000\npublish_timeout_ms = 2000\npublish_attempts = 5\n\
max_payload_bytes = 4096\n";

const NODES: usize = 10;
const SUBSCRIBERS: usize = 5;
const BATCH: usize = 100;

/// Every node ready, each leaf set exactly the `half` nearest ids on each side.
fn leaf_sets_exact(nodes: &[&NodeProc], half: usize) -> bool {
    let mut ring: Vec<NodeId> = nodes
        .iter()
        .map(|n| NodeId::from_hex(&n.id).unwrap())
        .collect();
    ring.sort_by_key(|id| id.as_u128());
    let n = ring.len();
    nodes.iter().all(|p| {
        let me = NodeId::from_hex(&p.id).unwrap();
        let i = ring.iter().position(|x| *x == me).unwrap();
        let k = half.min((n - 1) / 2);
        let want_left: BTreeSet<String> =
            (1..=k).map(|d| ring[(i + n - d) % n].to_string()).collect();
        let want_right: BTreeSet<String> = (1..=k).map(|d| ring[(i + d) % n].to_string()).collect();
        client::status(&p.http).is_ok_and(|s| {
            let left: BTreeSet<String> = s.leaf_set.left.iter().cloned().collect();
            let right: BTreeSet<String> = s.leaf_set.right.iter().cloned().collect();
            s.state == "ready"
                && want_left.is_subset(&left)
                && want_right.is_subset(&right)
                && left.len() + right.len() <= 2 * half
        })
    })
}

/// Every node ready, its nearest member on each side its true neighbour, and no leaf set
/// naming `dead`: what consistent delivery (the right root for every key) rests on.
fn neighbours_exact(nodes: &[&NodeProc], dead: &str) -> bool {
    let mut ring: Vec<NodeId> = nodes
        .iter()
        .map(|n| NodeId::from_hex(&n.id).unwrap())
        .collect();
    ring.sort_by_key(|id| id.as_u128());
    let n = ring.len();
    nodes.iter().all(|p| {
        let me = NodeId::from_hex(&p.id).unwrap();
        let i = ring.iter().position(|x| *x == me).unwrap();
        let (left, right) = (
            ring[(i + n - 1) % n].to_string(),
            ring[(i + 1) % n].to_string(),
        );
        client::status(&p.http).is_ok_and(|s| {
            s.state == "ready"
                && s.leaf_set.left.first() == Some(&left)
                && s.leaf_set.right.first() == Some(&right)
                && !s.leaf_set_contains(dead)
        })
    })
}

/// Each node's leaf set and the one expected, for a failure message.
fn leaf_set_report(nodes: &[&NodeProc], half: usize) -> String {
    let mut ring: Vec<NodeId> = nodes
        .iter()
        .map(|n| NodeId::from_hex(&n.id).unwrap())
        .collect();
    ring.sort_by_key(|id| id.as_u128());
    let n = ring.len();
    let mut out = String::new();
    for (i, id) in ring.iter().enumerate() {
        let p = nodes.iter().find(|p| p.id == id.to_string()).unwrap();
        let k = half.min((n - 1) / 2);
        let left: Vec<String> = (1..=k)
            .map(|d| ring[(i + n - d) % n].to_string()[..6].to_string())
            .collect();
        let right: Vec<String> = (1..=k)
            .map(|d| ring[(i + d) % n].to_string()[..6].to_string())
            .collect();
        let got = client::status(&p.http).map_or_else(
            |e| format!("{e}"),
            |s| {
                let short =
                    |v: &Vec<String>| v.iter().map(|x| x[..6].to_string()).collect::<Vec<_>>();
                format!(
                    "{} left {:?} right {:?}",
                    s.state,
                    short(&s.leaf_set.left),
                    short(&s.leaf_set.right)
                )
            },
        );
        out.push_str(&format!(
            "\n{}: want left {left:?} right {right:?}; has {got}",
            &p.id[..6]
        ));
    }
    out
}

/// Each node's view of `topic`, by node id (nodes not in the tree are absent).
fn views(nodes: &[&NodeProc], topic: &str) -> Option<BTreeMap<String, TopicView>> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let list = client::scribe_topics(&n.http).ok()?;
        if let Some(v) = list.into_iter().find(|v| v.topic_id == topic) {
            out.insert(n.id.clone(), v);
        }
    }
    Some(out)
}

/// Every subscriber hangs by a chain of live parents, each of which lists it as a child,
/// off the root `root`; no node of the tree names `dead` as parent or child.
fn tree_complete(
    views: &BTreeMap<String, TopicView>,
    subscribers: &[String],
    root: &str,
    dead: Option<&str>,
) -> bool {
    if let Some(d) = dead
        && views.values().any(|v| {
            v.parent.as_ref().is_some_and(|p| p.id == d) || v.child_ids.iter().any(|c| c == d)
        })
    {
        return false;
    }
    subscribers.iter().all(|s| {
        let mut cur = s.clone();
        for _ in 0..=NODES {
            let Some(v) = views.get(&cur) else {
                return false;
            };
            if cur == *s && !v.subscribed {
                return false;
            }
            if v.root {
                return cur == root;
            }
            let Some(p) = &v.parent else {
                return false;
            };
            if !views
                .get(&p.id)
                .is_some_and(|pv| pv.child_ids.contains(&cur))
            {
                return false;
            }
            cur = p.id.clone();
        }
        false
    })
}

/// A subscriber's stream, read on its own thread into `tx` as (subscriber index, line).
fn stream(
    http: String,
    topic: String,
    idx: usize,
    tx: mpsc::Sender<(usize, StreamLine)>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let r = client::subscribe(&http, &topic, |line| {
            if let Some(l) = line
                && tx.send((idx, l)).is_err()
            {
                return false;
            }
            !stop.load(Ordering::Relaxed)
        });
        if let Err(e) = r
            && !stop.load(Ordering::Relaxed)
        {
            eprintln!("stream of subscriber {idx} ended: {e:#}");
        }
    });
}

/// Messages received per subscriber: (publisher, id) -> (payload, times seen).
type Received = Vec<BTreeMap<(String, u64), (Vec<u8>, usize)>>;

/// Reads stream lines until every subscriber has `want` distinct messages (or `secs`
/// pass: panics). Counts duplicates instead of dropping them.
fn collect(rx: &mpsc::Receiver<(usize, StreamLine)>, got: &mut Received, want: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while got.iter().any(|m| m.len() < want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let counts: Vec<usize> = got.iter().map(BTreeMap::len).collect();
        let (i, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("timed out waiting for {want} messages each: {counts:?}"));
        if let StreamLine::Message(m) = line {
            assert_eq!(m.dropped, 0, "the node dropped lines for subscriber {i}");
            let payload = m.payload_bytes().expect("base64 payload");
            let e = got[i]
                .entry((m.publisher.clone(), m.id))
                .or_insert((payload.clone(), 0));
            assert_eq!(e.0, payload, "same message id, different payload");
            e.1 += 1;
        }
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Publishes batch `batch` (messages `0..BATCH`) from `http`; returns (publisher, id) ->
/// payload.
fn publish_batch(http: &str, topic: &str, batch: usize) -> BTreeMap<(String, u64), Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let payload = format!("{topic} batch {batch} message {i}").into_bytes();
            let r = client::scribe_publish(http, topic, &payload)
                .unwrap_or_else(|e| panic!("publish {batch}/{i}: {e:#}"));
            assert_eq!(r.size, payload.len());
            ((r.publisher, r.id), payload)
        })
        .collect()
}

/// Each subscriber got each published message exactly once, and nothing else.
fn check_exactly_once(got: &Received, published: &BTreeMap<(String, u64), Vec<u8>>) {
    for (i, m) in got.iter().enumerate() {
        for (key, payload) in published {
            let Some((p, n)) = m.get(key) else {
                panic!("subscriber {i} never got message {key:?}");
            };
            assert_eq!(p, payload, "subscriber {i}: payload of {key:?}");
            assert_eq!(*n, 1, "subscriber {i} got {key:?} {n} times");
        }
        assert_eq!(
            m.len(),
            published.len(),
            "subscriber {i} got messages nobody published"
        );
    }
}

#[test]
fn ten_processes_deliver_exactly_once_through_a_kill_9_of_a_forwarder() {
    let started = Instant::now();
    let tmp = TempDir::new("scribe");
    let config = tmp.path().join("pastry.toml");
    std::fs::write(&config, FAST).unwrap();
    let dir = |i: usize| tmp.path().join(format!("n{i}"));

    let mut procs = vec![start(&dir(0), &config, None)];
    for i in 1..NODES {
        let b = procs[0].addr.clone();
        procs.push(start(&dir(i), &config, Some(&b)));
    }
    {
        let all: Vec<&NodeProc> = procs.iter().collect();
        let t = Instant::now();
        while !leaf_sets_exact(&all, 2) {
            assert!(
                t.elapsed() < Duration::from_secs(40),
                "timed out: 10 processes ready with exact leaf sets:{}",
                leaf_set_report(&all, 2)
            );
            std::thread::sleep(Duration::from_millis(50)); // polling interval
        }
    }
    println!("ring ready after {:.1} s", started.elapsed().as_secs_f64());

    // Pick a topic whose tree has a forwarder: the 5 nodes farthest from the topic id
    // subscribe, the 5th nearest publishes, the 3 between it and the root may forward.
    let (tx, rx) = mpsc::channel();
    let mut chosen = None;
    for attempt in 0..6 {
        let name = format!("scribe-test-{attempt}");
        let topic = pastry_net::scribe::topic_id(&name);
        let mut order: Vec<usize> = (0..NODES).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&procs[a].id, &procs[b].id);
            topic.cmp_closeness(NodeId::from_hex(a).unwrap(), NodeId::from_hex(b).unwrap())
        });
        let root = order[0];
        let publisher = order[4];
        let subscribers: Vec<usize> = order[NODES - SUBSCRIBERS..].to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        for (k, &s) in subscribers.iter().enumerate() {
            stream(
                procs[s].http.clone(),
                name.clone(),
                k,
                tx.clone(),
                stop.clone(),
            );
        }
        let sub_ids: Vec<String> = subscribers.iter().map(|&s| procs[s].id.clone()).collect();
        let all: Vec<&NodeProc> = procs.iter().collect();
        let mut last = BTreeMap::new();
        wait_until(
            30,
            "the topic's tree reaches every subscriber",
            || match views(&all, &topic.to_string()) {
                Some(v) => {
                    let ok = tree_complete(&v, &sub_ids, &procs[root].id, None);
                    last = v;
                    ok
                }
                None => false,
            },
        );
        let forwarders: Vec<usize> = (0..NODES)
            .filter(|&i| i != root && i != publisher && !subscribers.contains(&i))
            .filter(|&i| {
                last.get(&procs[i].id)
                    .is_some_and(|v| v.children > 0 && !v.subscribed && !v.root)
            })
            .collect();
        println!(
            "topic {name}: tree complete after {:.1} s; forwarders {forwarders:?}",
            started.elapsed().as_secs_f64()
        );
        if let Some(&victim) = forwarders.first() {
            chosen = Some((name, topic, root, publisher, subscribers, victim, stop));
            break;
        }
        // No forwarder in this tree: close these streams (the nodes unsubscribe) and try
        // another topic.
        stop.store(true, Ordering::Relaxed);
    }
    let (name, topic, root, publisher, subscribers, victim, stop) =
        chosen.expect("a topic whose tree has a forwarder within 6 tries");
    // Lines of abandoned topics' streams carry other topics' messages: none are published.
    while rx.try_recv().is_ok() {}
    let topic_hex = topic.to_string();
    let sub_ids: Vec<String> = subscribers.iter().map(|&s| procs[s].id.clone()).collect();
    let victim_id = procs[victim].id.clone();
    let views_now = views(&procs.iter().collect::<Vec<_>>(), &topic_hex).unwrap();
    assert!(
        views_now[&procs[root].id].root,
        "the root is the closest node"
    );
    assert!(views_now[&victim_id].children > 0 && views_now[&victim_id].parent.is_some());
    println!(
        "topic {name}: root {}, publisher {}, subscribers {sub_ids:?}; will kill forwarder {victim_id} (children {:?})",
        procs[root].id, procs[publisher].id, views_now[&victim_id].child_ids
    );

    // Batch 1: 100 messages, each exactly once at all 5 subscribers.
    let mut got: Received = vec![BTreeMap::new(); SUBSCRIBERS];
    let mut published = publish_batch(&procs[publisher].http, &name, 1);
    assert_eq!(published.len(), BATCH, "distinct message ids");
    collect(&rx, &mut got, BATCH, 30);
    check_exactly_once(&got, &published);
    println!(
        "batch 1 delivered after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // kill -9 the forwarder; wait for the ring and the tree to repair without it.
    let root_id = procs[root].id.clone();
    let publisher_id = procs[publisher].id.clone();
    drop(procs.remove(victim));
    let killed_at = Instant::now();
    let live: Vec<&NodeProc> = procs.iter().collect();
    let t = Instant::now();
    // (Not the whole leaf sets: with |L| = 4 in a ring of 9, a side whose second member is
    // more than half the ring away is sometimes left short by the leaf-set code in the
    // working tree; the nearest members are what delivery to the right root needs.)
    while !neighbours_exact(&live, &victim_id) {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "timed out: the 9 live processes know their neighbours (killed {}):{}",
            &victim_id[..6],
            leaf_set_report(&live, 2)
        );
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
    wait_until(40, "the tree repaired without the killed forwarder", || {
        views(&live, &topic_hex)
            .is_some_and(|v| tree_complete(&v, &sub_ids, &root_id, Some(&victim_id)))
    });
    println!(
        "ring and tree repaired {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // Batch 2: again exactly once at all 5.
    let publisher_http = procs
        .iter()
        .find(|p| p.id == publisher_id)
        .map(|p| p.http.clone())
        .unwrap();
    published.extend(publish_batch(&publisher_http, &name, 2));
    assert_eq!(published.len(), 2 * BATCH, "distinct message ids");
    collect(&rx, &mut got, 2 * BATCH, 30);
    // Anything late (a duplicate) would come within moments: a quiescence check.
    while let Ok((i, line)) = rx.recv_timeout(Duration::from_millis(500)) {
        if let StreamLine::Message(m) = line {
            let key = (m.publisher.clone(), m.id);
            got[i].entry(key).or_insert((Vec::new(), 0)).1 += 1;
        }
    }
    check_exactly_once(&got, &published);
    println!(
        "batch 2 delivered after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Counters: every subscriber node delivered all 200; the publisher counted its API
    // publishes; /metrics carries the same.
    for id in &sub_ids {
        let p = procs.iter().find(|p| p.id == *id).unwrap();
        let c = client::status(&p.http).unwrap().counters;
        assert!(c["scribe_delivered"] >= 2 * BATCH as u64, "{c:?}");
        // (Streams of topics tried before close at their next keepalive.)
        assert!(c["scribe_topics_subscribed"] >= 1, "{c:?}");
        let text = client::get(&format!("{}/metrics", p.http)).unwrap().body;
        let delivered = pastry_net::status::sum_metric(&text, "pastry_scribe_delivered_total");
        assert!(delivered >= 2.0 * BATCH as f64, "{text}");
        assert!(
            text.contains("# TYPE pastry_scribe_streams gauge"),
            "{text}"
        );
    }
    let c = client::status(&publisher_http).unwrap().counters;
    assert_eq!(c["scribe_publishes"], 2 * BATCH as u64, "{c:?}");

    // The commands: `pastry subscribe --count 2` prints what `pastry publish` sends.
    let sub_http = procs
        .iter()
        .find(|p| p.id == sub_ids[0])
        .unwrap()
        .http
        .clone();
    let mut sub = Command::new(BIN)
        .args([
            "subscribe",
            "--node",
            &sub_http,
            "--count",
            "2",
            "cli topic/ü",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (etx, erx) = mpsc::channel();
    let stderr = sub.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = erx
            .recv_timeout(left)
            .expect("pastry subscribe reports its attachment");
        if line.starts_with("attached to the topic's tree") {
            break;
        }
    }
    let (code, _, err) = cli(&[
        "publish",
        "--node",
        &publisher_http,
        "cli topic/ü",
        "hello from the CLI",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("published 18 bytes"), "{err}");
    let file = tmp.path().join("msg");
    std::fs::write(&file, b"line one\nline two").unwrap();
    let (code, _, err) = cli(&[
        "publish",
        "--node",
        &publisher_http,
        "cli topic/ü",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = sub.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "pastry subscribe --count 2 did not exit"
        );
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut sub.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status:?} {out}");
    assert_eq!(out, "hello from the CLI\nline one\\nline two\n");
    // Its stream closed: the node unsubscribes (it was the topic's only stream there).
    let cli_topic = pastry_net::scribe::topic_id("cli topic/ü").to_string();
    wait_until(20, "unsubscribed after the last stream closed", || {
        client::scribe_topics(&sub_http)
            .is_ok_and(|l| l.iter().all(|v| v.topic_id != cli_topic || !v.subscribed))
    });

    // Clear errors with exit status 2.
    let big = tmp.path().join("big");
    std::fs::write(&big, vec![b'x'; 4097]).unwrap();
    let (code, _, err) = cli(&[
        "publish",
        "--node",
        &publisher_http,
        "t",
        "--file",
        big.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("larger than") && err.contains("4096"), "{err}");
    let e = client::scribe_publish(&publisher_http, "t", &[b'x'; 4097])
        .unwrap_err()
        .to_string();
    assert!(e.contains("413"), "{e}");
    let (code, _, err) = cli(&["publish", "--node", "http://127.0.0.1:1", "t", "m"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, err) = cli(&["subscribe", "--node", "http://127.0.0.1:1", "t"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, err) = cli(&["publish", "--node", &publisher_http, "t"]);
    assert_eq!(code, 2, "{err}");
    let long = "x".repeat(300);
    let (code, _, err) = cli(&["publish", "--node", &publisher_http, &long, "m"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("topic name"), "{err}");
    stop.store(true, Ordering::Relaxed);
    println!("done after {:.1} s", started.elapsed().as_secs_f64());
}
