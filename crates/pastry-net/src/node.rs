//! Starting a networked node and talking to it: [`spawn`] binds the node's UDP socket,
//! starts its transport and driver tasks and returns a [`RunningNode`]; a [`NodeClient`]
//! (cheap to clone) sends it commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use pastry_core::{AppId, Config, Node, NodeId, NodeState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::NetConfig;
use crate::driver::{Command, DeliveredEvent, Driver};
use crate::identity::Identity;
use crate::past::{PAST_APP, PastApiError, PastCommand, PastOptions, PutResult, ReplicaHolder};
use crate::scribe::{
    PublishResult, SCRIBE_APP, ScribeApiError, ScribeCommand, ScribeOptions, SubscriptionStream,
    TopicView,
};
use crate::status::{NodeMetrics, RouteReport, Status};
use crate::tls;
use crate::transport::{self, Shared};

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The UDP address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The address other nodes reach this one at; defaults to the bound address, and is
    /// required when binding an unspecified IP (`0.0.0.0`).
    pub advertise: Option<SocketAddr>,
    /// Nodes to join through (tried in turn); empty starts a new ring.
    pub bootstrap: Vec<SocketAddr>,
    /// The node's key (and so its id).
    pub identity: Identity,
    /// Protocol parameters (validated here).
    pub config: Arc<Config>,
    /// Transport bounds (validated here).
    pub net: NetConfig,
    /// Seed of the node's PRNG; drawn from the OS when `None`.
    pub seed: Option<u64>,
    /// Where to send every message delivered at this node (dropped and counted when full).
    pub deliveries: Option<mpsc::Sender<DeliveredEvent>>,
    /// Run PAST on the node (see [`crate::past`]); `None` runs no storage.
    pub past: Option<PastOptions>,
    /// Run Scribe on the node (see [`crate::scribe`]); `None` runs no multicast.
    pub scribe: Option<ScribeOptions>,
}

impl NodeOptions {
    /// Options with defaults: a new ring, default configurations, no delivery sink.
    pub fn new(listen: SocketAddr, identity: Identity) -> NodeOptions {
        NodeOptions {
            listen,
            advertise: None,
            bootstrap: Vec::new(),
            identity,
            config: Arc::new(Config::default()),
            net: NetConfig::default(),
            seed: None,
            deliveries: None,
            past: None,
            scribe: None,
        }
    }
}

/// Sends commands to a running node. Every method fails once the node has stopped.
#[derive(Debug, Clone)]
pub struct NodeClient {
    id: NodeId,
    addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<NodeState>,
}

/// A node running on this process's tokio runtime.
#[derive(Debug)]
pub struct RunningNode {
    client: NodeClient,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a node: binds its socket, then joins through `opts.bootstrap` (or starts a ring)
/// in the background. Wait for [`NodeClient::wait_ready`] before routing.
///
/// # Errors
/// An invalid configuration, a socket that cannot be bound (port in use: the error says
/// so), or an unspecified listen IP without `advertise`.
pub async fn spawn(opts: NodeOptions) -> anyhow::Result<RunningNode> {
    opts.config.validate()?;
    opts.net.validate().map_err(anyhow::Error::msg)?;
    let transport_cfg = Arc::new(transport::transport_config(opts.net.idle_timeout)?);
    let server_tls =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&opts.identity)?)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
    server.transport_config(transport_cfg.clone());
    let client_tls =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(&opts.identity)?)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
    client.transport_config(transport_cfg);

    let mut endpoint = bind_endpoint(server, opts.listen).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("cannot listen on {}: address already in use", opts.listen)
        } else {
            anyhow::anyhow!("cannot listen on {}: {e}", opts.listen)
        }
    })?;
    endpoint.set_default_client_config(client);
    let local = endpoint.local_addr().context("reading the bound address")?;
    let addr = match opts.advertise {
        Some(a) => a,
        None if local.ip().is_unspecified() => {
            endpoint.close(0u32.into(), b"");
            bail!(
                "listening on {local}: give the address other nodes should use (advertise / --advertise)"
            )
        }
        None => local,
    };
    let seed = match opts.seed {
        Some(s) => s,
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            u64::from_le_bytes(b)
        }
    };
    let id = opts.identity.id();
    let mut node = Node::new(opts.config.clone(), id, addr, seed);
    if let Some(p) = &opts.past {
        if let Err(e) = p.config.validate_with(&opts.config) {
            endpoint.close(0u32.into(), b"");
            bail!("{e}");
        }
        let past = match &p.store {
            Some(path) => {
                let store = pastry_past::RedbStore::open(path).map_err(|e| {
                    endpoint.close(0u32.into(), b"");
                    anyhow::anyhow!("cannot open the PAST store {}: {e}", path.display())
                })?;
                pastry_past::Past::with_store(p.config.clone(), Box::new(store))
            }
            None => pastry_past::Past::new(p.config.clone()),
        }
        .map_err(|e| anyhow::anyhow!("cannot start PAST: {e}"))?;
        if node.register(PAST_APP, Box::new(past)).is_err() {
            bail!("application id {PAST_APP} is taken");
        }
    }
    if let Some(s) = &opts.scribe {
        let mut config = s.config.clone();
        // Each node its own random choices, drawn from the node's seed.
        config.seed = seed ^ 0x5c81_be00_0000_0200;
        let scribe = pastry_scribe::Scribe::<SocketAddr>::new(config).map_err(|e| {
            endpoint.close(0u32.into(), b"");
            anyhow::anyhow!("cannot start Scribe: {e}")
        })?;
        if node.register(SCRIBE_APP, Box::new(scribe)).is_err() {
            endpoint.close(0u32.into(), b"");
            bail!("application id {SCRIBE_APP} is taken");
        }
    }
    let (inbound_tx, inbound_rx) = mpsc::channel(opts.net.inbound_queue);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (state_tx, state_rx) = watch::channel(NodeState::Idle);
    let shared = Shared::new(inbound_tx, opts.net.inbound_queue);
    tokio::spawn(transport::accept_loop(
        endpoint.clone(),
        shared.clone(),
        opts.net.max_handshakes,
    ));
    let driver = Driver::new(
        node,
        endpoint,
        opts.net.clone(),
        shared,
        inbound_rx,
        cmd_rx,
        state_tx,
        opts.deliveries.clone(),
    );
    let task = tokio::spawn(driver.run(opts.bootstrap.clone()));
    Ok(RunningNode {
        client: NodeClient {
            id,
            addr,
            commands: cmd_tx,
            state: state_rx,
        },
        task,
    })
}

/// Socket buffer size asked for (the kernel caps it at `net.core.rmem_max`/`wmem_max`).
/// The default (~200 KiB) overflows under bursts of many small packets, and every
/// datagram the kernel drops costs a QUIC loss recovery and a congestion-window cut.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the node's UDP socket with larger buffers and builds its QUIC endpoint on it.
fn bind_endpoint(
    server: quinn::ServerConfig,
    addr: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only costs drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
}

const STOPPED: &str = "the node has stopped";

impl NodeClient {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's current lifecycle state.
    pub fn state(&self) -> NodeState {
        *self.state.borrow()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| anyhow::anyhow!(STOPPED))?;
        rx.await.map_err(|_| anyhow::anyhow!(STOPPED))
    }

    /// Waits until the node is ready.
    ///
    /// # Errors
    /// When the join failed (no bootstrap node answered), the node stopped, or `timeout`
    /// passed first.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| matches!(s, NodeState::Ready | NodeState::Left));
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => bail!("node {} not ready after {timeout:?}", self.id),
            Ok(Err(_)) => bail!(STOPPED),
            Ok(Ok(s)) if *s == NodeState::Ready => Ok(()),
            Ok(Ok(_)) => bail!("join failed: no bootstrap node answered"),
        }
    }

    /// The node's status.
    ///
    /// # Errors
    /// When the node has stopped.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.ask(Command::Status).await
    }

    /// The node's metrics.
    ///
    /// # Errors
    /// When the node has stopped.
    pub async fn metrics(&self) -> anyhow::Result<NodeMetrics> {
        self.ask(Command::Metrics).await
    }

    /// Routes `data` to `key` and waits (up to `timeout`) for the root's report: which node
    /// delivered it, after how many hops, along which path (when `trace`).
    ///
    /// # Errors
    /// When the node refuses (not a member, payload too large), the route fails here, no
    /// report arrives in time, or the node has stopped.
    pub async fn route(
        &self,
        key: NodeId,
        data: Bytes,
        trace: bool,
        timeout: Duration,
    ) -> anyhow::Result<RouteReport> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Route {
                key,
                app: crate::driver::ROUTE_APP,
                data,
                trace,
                reply: Some(tx),
            })
            .await
            .map_err(|_| anyhow::anyhow!(STOPPED))?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => bail!("no report from the root of {key} within {timeout:?}"),
            Ok(Err(_)) => bail!(STOPPED),
            Ok(Ok(r)) => r.map_err(anyhow::Error::msg),
        }
    }

    /// Routes `data` to `key` for application `app` without waiting for anything; the
    /// root's delivery sink (if any) sees it.
    ///
    /// # Errors
    /// When the node has stopped.
    pub async fn send(&self, key: NodeId, app: AppId, data: Bytes) -> anyhow::Result<()> {
        self.commands
            .send(Command::Route {
                key,
                app,
                data,
                trace: false,
                reply: None,
            })
            .await
            .map_err(|_| anyhow::anyhow!(STOPPED))
    }

    async fn past<T>(
        &self,
        timeout: Duration,
        make: impl FnOnce(oneshot::Sender<Result<T, PastApiError>>) -> PastCommand,
    ) -> Result<T, PastApiError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Past(make(tx)))
            .await
            .map_err(|_| PastApiError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(PastApiError::Timeout),
            Ok(Err(_)) => Err(PastApiError::Stopped),
            Ok(Ok(r)) => r,
        }
    }

    /// Stores `data` in PAST as a content-addressed object on `k` replicas (`None`: the
    /// configured default) and waits (up to `timeout`) until they acknowledged.
    ///
    /// # Errors
    /// [`PastApiError`]: too large, no space, timeout, busy, PAST not running, stopped.
    pub async fn past_put(
        &self,
        data: Bytes,
        k: Option<usize>,
        timeout: Duration,
    ) -> Result<PutResult, PastApiError> {
        self.past(timeout, |reply| PastCommand::Put { data, k, reply })
            .await
    }

    /// Looks `key` up in PAST and returns the object's bytes (verified against the key).
    ///
    /// # Errors
    /// [`PastApiError::NotFound`] when no responsible node holds it; as [`Self::past_put`].
    pub async fn past_get(&self, key: NodeId, timeout: Duration) -> Result<Bytes, PastApiError> {
        self.past(timeout, |reply| PastCommand::Get { key, reply })
            .await
    }

    /// The nodes responsible for `key`'s replicas as its root sees them (at most `max`).
    ///
    /// # Errors
    /// As [`Self::past_put`].
    pub async fn past_replicas(
        &self,
        key: NodeId,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<ReplicaHolder>, PastApiError> {
        self.past(timeout, |reply| PastCommand::Replicas { key, max, reply })
            .await
    }

    async fn scribe<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ScribeApiError>>) -> ScribeCommand,
    ) -> Result<T, ScribeApiError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Scribe(make(tx)))
            .await
            .map_err(|_| ScribeApiError::Stopped)?;
        rx.await.map_err(|_| ScribeApiError::Stopped)?
    }

    /// Publishes `data` to the topic named `topic` through Scribe; returns once Scribe has
    /// taken it (routed towards the topic's root), not when subscribers have it.
    ///
    /// # Errors
    /// [`ScribeApiError`]: a bad topic name, too large, too many publishes outstanding,
    /// Scribe not running, stopped.
    pub async fn scribe_publish(
        &self,
        topic: String,
        data: Bytes,
    ) -> Result<PublishResult, ScribeApiError> {
        self.scribe(|reply| ScribeCommand::Publish {
            name: topic,
            data,
            reply,
        })
        .await
    }

    /// Subscribes the node to the topic named `topic` (if no stream does yet) and returns
    /// a stream of its lines (see [`crate::scribe`]). Dropping the last stream of a topic
    /// unsubscribes the node.
    ///
    /// # Errors
    /// [`ScribeApiError`]: a bad topic name, too many topics or streams, Scribe not
    /// running, stopped.
    pub async fn scribe_subscribe(
        &self,
        topic: String,
    ) -> Result<SubscriptionStream, ScribeApiError> {
        let sink = self
            .scribe(|reply| ScribeCommand::Subscribe { name: topic, reply })
            .await?;
        Ok(SubscriptionStream::new(sink, self.commands.clone()))
    }

    /// The topics the node keeps Scribe state for.
    ///
    /// # Errors
    /// Scribe not running, or the node has stopped.
    pub async fn scribe_topics(&self) -> Result<Vec<TopicView>, ScribeApiError> {
        self.scribe(ScribeCommand::Topics).await
    }

    /// Leaves the ring gracefully (tells the leaf set) and stops the node.
    ///
    /// # Errors
    /// When the node had already stopped.
    pub async fn leave(&self) -> anyhow::Result<()> {
        self.ask(Command::Leave).await
    }

    /// Stops the node at once without telling anyone, like a crash.
    ///
    /// # Errors
    /// When the node had already stopped.
    pub async fn crash(&self) -> anyhow::Result<()> {
        self.ask(Command::Crash).await
    }
}

impl RunningNode {
    /// A client for this node.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.client.id
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.client.addr
    }

    /// Waits for the node's task to end (after a leave or crash).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

impl std::ops::Deref for RunningNode {
    type Target = NodeClient;
    fn deref(&self) -> &NodeClient {
        &self.client
    }
}
