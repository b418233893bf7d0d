//! Scribe on a networked node: the options that register it ([`ScribeOptions`]), what the
//! admin API answers ([`PublishResult`], [`TopicView`]), the lines a subscription stream
//! carries ([`StreamLine`]) and the errors requests fail with ([`ScribeApiError`]).
//!
//! Each node runs one [`pastry_scribe::Scribe`] under [`SCRIBE_APP`]. Topics are names,
//! hashed with [`pastry_scribe::topic_id`]. A node subscribes to a topic while at least one
//! admin client streams it (`/scribe/subscribe/TOPIC`) and unsubscribes when the last such
//! stream ends.
//!
//! # The subscription stream
//! `GET` or `POST /scribe/subscribe/TOPIC` answers `200` with a chunked
//! `application/x-ndjson` body: one JSON object per line, as Scribe reports things.
//!
//! - `{"type":"message","seq":S,"publisher":"<32 hex>","id":I,"payload":"<base64>"}`: a
//!   message published to the topic. `seq` is the root's sequence number, `(publisher, id)`
//!   the message's identity (the publisher's Scribe numbers its messages), `payload` its
//!   bytes in standard base64 with padding. A line may carry `"dropped":N`: that many lines
//!   meant for this client were dropped just before it (see below).
//! - `{"type":"attached","parent":"<32 hex>"|null}`: the node joined (or re-joined) the
//!   topic's tree under that parent (`null`: it is the root).
//! - `{"type":"parent_lost","parent":"<32 hex>"}`: the parent was lost; Scribe is
//!   re-subscribing.
//! - An empty line every [`KEEPALIVE`]: lets both ends notice a dead connection.
//!
//! Clients must ignore lines of other types and unknown fields.
//!
//! Slow clients: each stream buffers at most [`STREAM_BUFFER_BYTES`] of lines the client has
//! not read yet. A line that does not fit is **dropped and counted** (`"dropped"` on the
//! client's next line, `scribe_stream_lines_dropped` in `/status`); the client stays
//! connected. A node serves at most [`MAX_STREAMS`] streams at once (`503` beyond).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use pastry_core::{AppId, NodeId};
use pastry_scribe::{ScribeConfig, ScribeError, TopicId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::driver::Command;

pub use pastry_scribe::topic_id;

/// Application id of Scribe on networked nodes (PAST uses `0x0100`).
pub const SCRIBE_APP: AppId = 0x0200;

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_NAME: usize = 256;

/// Bytes of lines buffered per subscription stream at most (see the module docs).
pub const STREAM_BUFFER_BYTES: usize = 1 << 20;

/// Subscription streams a node serves at once, at most.
pub const MAX_STREAMS: usize = 256;

/// A subscription stream with nothing to say sends an empty line this often.
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// How a node runs Scribe.
#[derive(Debug, Clone, Default)]
pub struct ScribeOptions {
    /// Scribe's parameters. Its `seed` is replaced by one drawn from the node's seed.
    pub config: ScribeConfig,
}

/// A publish handed to Scribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    /// The topic's name.
    pub topic: String,
    /// Its id (32 hex digits).
    pub topic_id: String,
    /// The message number this node's Scribe gave it (the `id` subscribers see, with this
    /// node as `publisher`).
    pub id: u64,
    /// The publisher: this node's id.
    pub publisher: String,
    /// Payload bytes.
    pub size: usize,
}

/// A node of a topic's tree, by id and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Its id, 32 hex digits.
    pub id: String,
    /// Its address.
    pub addr: String,
}

/// One topic as a node sees it (`GET /scribe/topics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicView {
    /// The topic id, 32 hex digits.
    pub topic_id: String,
    /// Its name, when a client of this node subscribed by name.
    pub name: Option<String>,
    /// The node is subscribed (some client streams the topic here).
    pub subscribed: bool,
    /// The node is the tree's root.
    pub root: bool,
    /// The parent, when attached below the root.
    pub parent: Option<TreeNode>,
    /// Number of children.
    pub children: usize,
    /// The children.
    pub child_ids: Vec<String>,
    /// The ancestors, root first, as the parent last told.
    pub path: Vec<String>,
    /// A subscription attempt is in flight.
    pub subscribing: bool,
    /// Highest root sequence number seen.
    pub last_seq: u64,
    /// Messages delivered to this node (as a subscriber).
    pub delivered: u64,
    /// Admin clients streaming the topic from this node.
    pub streams: usize,
}

impl TopicView {
    /// Whether the node hangs in the tree: it is the root or has a parent.
    pub fn attached(&self) -> bool {
        self.root || self.parent.is_some()
    }
}

/// One line of a subscription stream (see the module docs). Unknown types parse as
/// [`StreamLine::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamLine {
    /// A published message.
    Message(StreamMessage),
    /// Attached to the tree under `parent` (`None`: root).
    Attached {
        /// The parent's id.
        parent: Option<String>,
    },
    /// The parent was lost; re-subscribing.
    ParentLost {
        /// The lost parent's id.
        parent: String,
    },
    /// A line of a type this version does not know.
    #[serde(other)]
    Other,
}

/// A published message, as a subscription stream carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMessage {
    /// The root's sequence number.
    pub seq: u64,
    /// The publisher's id, 32 hex digits.
    pub publisher: String,
    /// The publisher's message number.
    pub id: u64,
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    /// Lines for this client dropped just before this one (slow client).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl StreamMessage {
    /// The payload's bytes.
    ///
    /// # Errors
    /// When `payload` is not valid base64.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.payload)
    }
}

/// The stream line of a delivered message.
pub(crate) fn message_line(
    seq: u64,
    publisher: NodeId,
    id: u64,
    payload: &[u8],
    dropped: u64,
) -> Bytes {
    let line = StreamLine::Message(StreamMessage {
        seq,
        publisher: publisher.to_string(),
        id,
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        dropped,
    });
    to_line(&line)
}

pub(crate) fn to_line(line: &StreamLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Why a Scribe request through the admin API failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScribeApiError {
    /// The message is over the payload limit.
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A malformed topic name (its description).
    BadTopic(String),
    /// The node keeps state for as many topics as it may.
    TooManyTopics,
    /// The node serves [`MAX_STREAMS`] streams already.
    TooManyStreams,
    /// Too many publishes await the root's acknowledgement.
    QueueFull,
    /// Scribe refused (its description).
    Refused(String),
    /// The node does not run Scribe.
    Disabled,
    /// The node has stopped.
    Stopped,
}

impl ScribeApiError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ScribeApiError::TooLarge { .. } => 413,
            ScribeApiError::BadTopic(_) => 400,
            ScribeApiError::TooManyTopics
            | ScribeApiError::TooManyStreams
            | ScribeApiError::QueueFull
            | ScribeApiError::Refused(_)
            | ScribeApiError::Disabled
            | ScribeApiError::Stopped => 503,
        }
    }
}

impl fmt::Display for ScribeApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScribeApiError::TooLarge { size, max } => write!(
                f,
                "message of {size} bytes is larger than the limit of {max} bytes"
            ),
            ScribeApiError::BadTopic(e) => f.write_str(e),
            ScribeApiError::TooManyTopics => {
                f.write_str("this node keeps as many topics as it may")
            }
            ScribeApiError::TooManyStreams => write!(
                f,
                "this node serves {MAX_STREAMS} subscription streams already"
            ),
            ScribeApiError::QueueFull => {
                f.write_str("too many publishes await the root's acknowledgement, try again")
            }
            ScribeApiError::Refused(e) => f.write_str(e),
            ScribeApiError::Disabled => f.write_str("this node does not run Scribe"),
            ScribeApiError::Stopped => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for ScribeApiError {}

impl From<ScribeError> for ScribeApiError {
    fn from(e: ScribeError) -> Self {
        match e {
            ScribeError::PayloadTooLarge { len, max } => {
                ScribeApiError::TooLarge { size: len, max }
            }
            ScribeError::TooManyTopics => ScribeApiError::TooManyTopics,
            ScribeError::QueueFull => ScribeApiError::QueueFull,
            other => ScribeApiError::Refused(other.to_string()),
        }
    }
}

/// Checks a topic name: 1 to [`MAX_TOPIC_NAME`] bytes.
///
/// # Errors
/// [`ScribeApiError::BadTopic`] saying why.
pub fn check_topic_name(name: &str) -> Result<TopicId, ScribeApiError> {
    if name.is_empty() {
        return Err(ScribeApiError::BadTopic("empty topic name".into()));
    }
    if name.len() > MAX_TOPIC_NAME {
        return Err(ScribeApiError::BadTopic(format!(
            "topic name of {} bytes is longer than {MAX_TOPIC_NAME}",
            name.len()
        )));
    }
    Ok(pastry_scribe::topic_id(name))
}

/// What the admin API asks a node's Scribe.
#[derive(Debug)]
pub(crate) enum ScribeCommand {
    Publish {
        name: String,
        data: Bytes,
        reply: oneshot::Sender<Result<PublishResult, ScribeApiError>>,
    },
    Subscribe {
        name: String,
        reply: oneshot::Sender<Result<StreamSink, ScribeApiError>>,
    },
    /// A stream's reader went away.
    StreamClosed {
        topic: TopicId,
        client: u64,
    },
    Topics(oneshot::Sender<Result<Vec<TopicView>, ScribeApiError>>),
}

/// The driver's end of a subscription stream: what it hands the reader.
#[derive(Debug)]
pub(crate) struct StreamSink {
    pub topic: TopicId,
    pub client: u64,
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    pub queued: Arc<AtomicUsize>,
}

/// The driver's record of one streaming client.
#[derive(Debug)]
pub(crate) struct StreamClient {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Bytes>,
    pub queued: Arc<AtomicUsize>,
    /// Lines dropped since the last one this client got.
    pub dropped: u64,
}

impl StreamClient {
    /// Queues `line` unless the client's buffer is full; false when dropped (counted in
    /// `dropped`). A line that `reports_dropped` (a message line built with `dropped`)
    /// resets the count.
    pub fn offer(&mut self, line: Bytes, reports_dropped: bool) -> bool {
        let queued = self.queued.load(Ordering::Relaxed);
        if queued > 0 && queued + line.len() > STREAM_BUFFER_BYTES {
            self.dropped += 1;
            return false;
        }
        self.queued.fetch_add(line.len(), Ordering::Relaxed);
        if self.tx.send(line).is_err() {
            return false;
        }
        if reports_dropped {
            self.dropped = 0;
        }
        true
    }
}

/// The streams of one topic at a node.
#[derive(Debug)]
pub(crate) struct TopicStreams {
    pub name: String,
    pub clients: Vec<StreamClient>,
}

/// The driver's Scribe bookkeeping beyond Scribe itself.
#[derive(Debug, Default)]
pub(crate) struct ScribeHost {
    pub streams: BTreeMap<TopicId, TopicStreams>,
    pub next_client: u64,
    pub publishes: u64,
    pub publishes_failed: u64,
    pub lines_sent: u64,
    pub lines_dropped: u64,
    pub subscribe_failures: u64,
}

impl ScribeHost {
    pub fn stream_count(&self) -> usize {
        self.streams.values().map(|t| t.clients.len()).sum()
    }
}

/// A subscription stream as an HTTP body: the lines the driver queues, and an empty line
/// every [`KEEPALIVE`]. Dropping it (the client went away) tells the driver.
#[derive(Debug)]
pub struct SubscriptionStream {
    sink: StreamSink,
    commands: mpsc::Sender<Command>,
    keepalive: tokio::time::Interval,
}

impl SubscriptionStream {
    pub(crate) fn new(sink: StreamSink, commands: mpsc::Sender<Command>) -> Self {
        let start = tokio::time::Instant::now() + KEEPALIVE;
        let mut keepalive = tokio::time::interval_at(start, KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SubscriptionStream {
            sink,
            commands,
            keepalive,
        }
    }

    /// The topic streamed.
    pub fn topic(&self) -> TopicId {
        self.sink.topic
    }

    /// The next line (`None` once the node has stopped).
    pub async fn next_line(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_line(cx)).await
    }

    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.sink.rx.poll_recv(cx) {
            Poll::Ready(Some(line)) => {
                self.sink.queued.fetch_sub(line.len(), Ordering::Relaxed);
                self.keepalive.reset();
                return Poll::Ready(Some(line));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.keepalive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Bytes::from_static(b"\n"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_core::Stream for SubscriptionStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_line(cx).map(|l| l.map(Ok))
    }
}

impl Drop for SubscriptionStream {
    fn drop(&mut self) {
        // Best effort: the driver also sweeps closed streams every second.
        let _ = self
            .commands
            .try_send(Command::Scribe(ScribeCommand::StreamClosed {
                topic: self.sink.topic,
                client: self.sink.client,
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_unknown_types_parse() {
        let line = message_line(3, NodeId::from_u128(9), 7, b"hi\n\x00", 2);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
        let parsed: StreamLine = serde_json::from_str(text).unwrap();
        let StreamLine::Message(m) = parsed else {
            panic!("{text}")
        };
        assert_eq!((m.seq, m.id, m.dropped), (3, 7, 2));
        assert_eq!(m.payload_bytes().unwrap(), b"hi\n\x00");
        assert_eq!(m.publisher, NodeId::from_u128(9).to_string());
        let other: StreamLine = serde_json::from_str(r#"{"type":"future","x":1}"#).unwrap();
        assert_eq!(other, StreamLine::Other);
        let a = to_line(&StreamLine::Attached { parent: None });
        assert_eq!(&a[..], b"{\"type\":\"attached\",\"parent\":null}\n");
    }

    #[test]
    fn a_full_client_buffer_drops_and_counts() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut c = StreamClient {
            id: 1,
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: 0,
        };
        let big = Bytes::from(vec![b'x'; STREAM_BUFFER_BYTES]);
        assert!(c.offer(big.clone(), true), "an empty buffer takes any line");
        assert!(!c.offer(Bytes::from_static(b"y\n"), true));
        assert!(!c.offer(Bytes::from_static(b"y\n"), false));
        assert_eq!(c.dropped, 2);
        let got = rx.try_recv().unwrap();
        c.queued.fetch_sub(got.len(), Ordering::Relaxed);
        assert!(c.offer(Bytes::from_static(b"a\n"), false));
        assert_eq!(c.dropped, 2, "only message lines report drops");
        assert!(c.offer(Bytes::from_static(b"z\n"), true));
        assert_eq!(c.dropped, 0);
        assert_eq!(check_topic_name("").unwrap_err().http_status(), 400);
        assert!(check_topic_name(&"a".repeat(MAX_TOPIC_NAME + 1)).is_err());
        assert_eq!(
            check_topic_name("news").unwrap(),
            pastry_scribe::topic_id("news")
        );
    }
}
