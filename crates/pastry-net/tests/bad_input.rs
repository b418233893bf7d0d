//! Hostile and broken input against a live node over real QUIC: garbage datagrams, garbage
//! and oversized streams, wrong magic and version, undecodable bodies, a peer claiming an id
//! it does not own, a key that does not match the id dialed, a non-ed25519 certificate, and
//! bad admin requests. Each is dropped and counted or refused with a clear error; nothing
//! panics and the node keeps routing.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use pastry_core::message::Body;
use pastry_core::{Message, NodeId, codec};
use pastry_net::tls;
use pastry_net::{Identity, NodeOptions, RunningNode, spawn};
use quinn::crypto::rustls::QuicClientConfig;

const WAIT: Duration = Duration::from_secs(10);

fn identity(i: u8) -> Identity {
    Identity::from_seed([i; 32])
}

async fn node(i: u8) -> RunningNode {
    let n = spawn(NodeOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        identity(i),
    ))
    .await
    .unwrap();
    n.wait_ready(WAIT).await.unwrap();
    n
}

fn client_endpoint(cfg: rustls::ClientConfig) -> quinn::Endpoint {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let quic = QuicClientConfig::try_from(cfg).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    ep
}

async fn connect_as(who: &Identity, to: &RunningNode) -> quinn::Connection {
    let ep = client_endpoint(tls::client_config(who).unwrap());
    ep.connect(to.addr(), &tls::server_name_for(Some(to.id())))
        .unwrap()
        .await
        .unwrap()
}

fn frame(sender: NodeId, body: Body<SocketAddr>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(&Message { sender, body }, &mut out).unwrap();
    out
}

fn probe(nonce: u64) -> Body<SocketAddr> {
    Body::Probe {
        nonce,
        joining: false,
        want_leaf_set: false,
    }
}

async fn counter(n: &RunningNode, name: &str) -> u64 {
    n.status().await.unwrap().counters[name]
}

/// Polls the node's counter `name` until it reaches `want` (or fails after `WAIT`).
async fn wait_counter(n: &RunningNode, name: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = counter(n, name).await;
        if v >= want {
            assert_eq!(v, want, "counter {name}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} = {v}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
}

/// The node still answers and routes.
async fn still_works(n: &RunningNode) {
    let r = n
        .route(NodeId::from_u128(99), Bytes::new(), true, WAIT)
        .await
        .unwrap();
    assert_eq!(r.root_id(), Some(n.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_ignored() {
    let n = node(1).await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = pastry_core::rng::Rng::new(5);
    for i in 0..500usize {
        let len = 1 + (rng.below(1500) as usize);
        let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 3 == 0 {
            d[0] = 0xc0; // looks like a QUIC long header
        }
        sock.send_to(&d, n.addr()).unwrap();
    }
    still_works(&n).await;
    assert_eq!(n.status().await.unwrap().state, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sender_is_dropped_and_counted_while_honest_messages_are_answered() {
    let n = node(2).await;
    let me = identity(3);
    let conn = connect_as(&me, &n).await;
    let mut s = conn.open_uni().await.unwrap();
    // Claims to be node 4 over node 3's authenticated connection.
    s.write_all(&frame(identity(4).id(), probe(1)))
        .await
        .unwrap();
    // An honest probe from node 3: the node answers on a stream of its own.
    s.write_all(&frame(me.id(), probe(77))).await.unwrap();
    wait_counter(&n, "forged_sender", 1).await;
    let mut r = conn.accept_uni().await.unwrap();
    let mut buf = Vec::new();
    let msg = loop {
        if let Ok(Some(len)) = codec::frame_len(&buf)
            && buf.len() >= len
        {
            break codec::decode::<SocketAddr>(&buf[..len]).unwrap();
        }
        let chunk = r.read_chunk(4096, true).await.unwrap().expect("a reply");
        buf.extend_from_slice(&chunk.bytes);
    };
    assert_eq!(msg.sender, n.id());
    assert!(
        matches!(msg.body, Body::ProbeReply { nonce: 77, .. }),
        "{msg:?}"
    );
    still_works(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_or_are_dropped_and_counted() {
    let n = node(5).await;
    let me = identity(6);
    let good = frame(me.id(), probe(1));

    // Undecodable body behind a valid header: dropped, the stream goes on.
    let mut bad_body = good.clone();
    bad_body[8 + 16] = 0xff; // past the sender id: the probe's fields
    let len = bad_body.len();
    bad_body[len - 1] = 7; // `want_leaf_set` must be 0 or 1
    let conn = connect_as(&me, &n).await;
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&bad_body).await.unwrap();
    s.write_all(&good).await.unwrap();
    wait_counter(&n, "frames_bad_body", 1).await;
    assert_eq!(counter(&n, "frames_bad_header").await, 0);

    // Headers that cannot be resynchronised: each closes its connection.
    let mut wrong_magic = good.clone();
    wrong_magic[0] = b'X';
    let mut wrong_version = good.clone();
    wrong_version[2] = 9;
    let mut oversized = good.clone();
    oversized[4..8].copy_from_slice(&(codec::MAX_FRAME_LEN as u32).to_be_bytes());
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    for (i, bytes) in [wrong_magic, wrong_version, oversized, garbage]
        .iter()
        .enumerate()
    {
        let conn = connect_as(&me, &n).await;
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(bytes).await.unwrap();
        let _ = s.finish();
        let reason = conn.closed().await;
        assert!(
            reason.to_string().contains("bad frame header"),
            "case {i}: {reason}"
        );
        wait_counter(&n, "frames_bad_header", i as u64 + 1).await;
    }
    // A stream that ends inside a frame.
    let conn = connect_as(&me, &n).await;
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&good[..good.len() - 3]).await.unwrap();
    s.finish().unwrap();
    wait_counter(&n, "frames_truncated", 1).await;
    still_works(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_hash_to_the_dialed_id_is_rejected() {
    let n = node(7).await;
    let ep = client_endpoint(tls::client_config(&identity(8)).unwrap());
    let wrong = identity(9).id();
    let e = ep
        .connect(n.addr(), &tls::server_name_for(Some(wrong)))
        .unwrap()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expected"), "{e}");
    // Not knowing the id (a bootstrap) is fine, and the key tells the id.
    let conn = ep
        .connect(n.addr(), &tls::server_name_for(None))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(tls::peer_id(&conn), Some(n.id()));
    still_works(&n).await;
}

/// Accepts any server certificate: a client that presents a non-ed25519 key.
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_an_ed25519_key_is_refused() {
    let n = node(10).await;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.pastry".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(kp.serialize_der().into());
    let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_auth_cert(vec![cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let ep = client_endpoint(cfg);
    let r = ep
        .connect(n.addr(), &tls::server_name_for(None))
        .unwrap()
        .await;
    if let Ok(conn) = r {
        // TLS 1.3 client auth completes after the client's handshake: the server closes.
        let e = conn.closed().await;
        assert!(!e.to_string().is_empty());
    }
    wait_counter(&n, "handshake_failures", 1).await;
    still_works(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_rejects_bad_requests_clearly() {
    let n = node(11).await;
    let nodes = Arc::new(RwLock::new(vec![n.client().clone()]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, pastry_net::http::router(nodes))
            .await
            .unwrap();
    });
    let id = n.id();
    let results = tokio::task::spawn_blocking(move || {
        use pastry_net::client::{get, post_json};
        let route = format!("{base}/route");
        let big = format!(
            "{{\"key\":\"{}\",\"payload\":\"{}\"}}",
            id,
            "x".repeat(100_000)
        );
        vec![
            post_json(&route, "not json").unwrap().status,
            post_json(&route, "{\"key\":\"zz\"}").unwrap().status,
            post_json(&route, "{\"key\":\"00\",\"bogus\":1}")
                .unwrap()
                .status,
            post_json(&route, &big).unwrap().status,
            get(&format!("{base}/status?node=5")).unwrap().status,
            get(&format!("{base}/nope")).unwrap().status,
            post_json(&route, &format!("{{\"key\":\"{id}\"}}"))
                .unwrap()
                .status,
            get(&format!("{base}/status")).unwrap().status,
        ]
    })
    .await
    .unwrap();
    // Syntax errors are 400, well-formed JSON of the wrong shape 422, too large 413.
    assert_eq!(results, vec![400, 400, 422, 413, 404, 404, 200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_reads_are_reassembled() {
    let n = node(30).await;
    let me = identity(31);
    let conn = connect_as(&me, &n).await;
    let mut s = conn.open_uni().await.unwrap();
    let mut bytes = Vec::new();
    for nonce in 1..=4 {
        bytes.extend_from_slice(&frame(me.id(), probe(nonce)));
    }
    // Pieces of 1, 2, 3, ... bytes, each sent on its own, so the node's reader sees a
    // header split, a body split and several frames in one read.
    let mut at = 0;
    let mut size = 1;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        s.write_all(&bytes[at..end]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        at = end;
        size += 1;
    }
    let mut r = conn.accept_uni().await.unwrap();
    let mut buf = Vec::new();
    let mut nonces = Vec::new();
    while nonces.len() < 4 {
        if let Ok(Some(len)) = codec::frame_len(&buf)
            && buf.len() >= len
        {
            let msg = codec::decode::<SocketAddr>(&buf[..len]).unwrap();
            buf.drain(..len);
            if let Body::ProbeReply { nonce, .. } = msg.body {
                nonces.push(nonce);
            }
            continue;
        }
        let chunk = tokio::time::timeout(WAIT, r.read_chunk(4096, true))
            .await
            .expect("replies in time")
            .unwrap()
            .expect("a reply");
        buf.extend_from_slice(&chunk.bytes);
    }
    assert_eq!(nonces, [1, 2, 3, 4]);
    assert_eq!(counter(&n, "frames_bad_header").await, 0);
    assert_eq!(counter(&n, "frames_bad_body").await, 0);
    still_works(&n).await;
}
