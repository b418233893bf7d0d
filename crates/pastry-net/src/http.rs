//! The admin HTTP API (axum), bound to 127.0.0.1 by default. It only forwards requests to
//! the nodes' drivers through [`NodeClient`]s and formats their answers:
//!
//! - `GET /status[?node=I]`: [`crate::Status`] JSON of the process's node I (default 0).
//! - `GET /nodes`: the statuses of every node of the process, as a JSON array.
//! - `GET /metrics`: Prometheus text format for every node (label `node`).
//! - `POST /route`: JSON `{"key": "<32 hex>", "payload": "text", "trace": true,
//!   "node": 0, "timeout_ms": 5000}` (all but `key` optional); routes the payload from node
//!   `node` and answers the root's [`crate::RouteReport`].
//!
//! - `POST /past/put[?k=K&node=I]`: the body is an object's bytes; stores it in PAST on
//!   k replicas and answers [`crate::PutResult`] JSON (`key`: 32 hex digits). A body over
//!   the object limit is refused with 413 before anything is stored.
//! - `GET /past/get/KEY[?node=I]`: the object's bytes (`application/octet-stream`); 404
//!   when no responsible node holds it, 400 for a malformed key.
//! - `GET /past/replicas/KEY[?node=I&max=M]`: `{"key", "replicas": [{"id","addr"}]}`, the
//!   nodes responsible for the key's replicas as its root sees them.
//! - `GET /past/info`: `{"max_object_bytes", "replicas"}` (clients check sizes first).
//!
//! - `POST /scribe/publish/TOPIC[?node=I]`: the body is the message's bytes; hands it to
//!   Scribe for the topic named TOPIC (percent-encoded in the path, hashed with
//!   [`pastry_scribe::topic_id`]) and answers [`crate::PublishResult`] JSON at once. A body
//!   over Scribe's `max_payload_bytes` is refused with 413.
//! - `GET` or `POST /scribe/subscribe/TOPIC[?node=I]`: subscribes the node (if no stream
//!   does yet) and streams what arrives as chunked `application/x-ndjson`, one JSON line
//!   per message (format: [`crate::scribe`]). When the last stream of a topic ends, the
//!   node unsubscribes.
//! - `GET /scribe/topics[?node=I]`: a JSON array of [`crate::TopicView`]: every topic the
//!   node keeps state for (subscribed, root, parent, children, ...).
//! - `GET /scribe/info`: `{"max_payload_bytes", "app"}` (clients check sizes first).
//!
//! Errors are JSON `{"error": "..."}` with a fitting status. Request bodies are limited to
//! 64 KiB (PAST puts: the object limit; Scribe publishes: the payload limit); a route waits
//! at most 30 s, a PAST request 60 s.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use pastry_core::NodeId;
use pastry_scribe::ScribeConfig;
use serde::Deserialize;
use serde_json::json;

use crate::node::NodeClient;
use crate::status::render_metrics;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The nodes an admin API serves (filled in as they start).
pub type Nodes = Arc<RwLock<Vec<NodeClient>>>;

/// How long a PAST request through the API waits at most.
pub const PAST_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin API's routes over `nodes`, with PAST's default limits.
pub fn router(nodes: Nodes) -> Router {
    router_with_past(nodes, &pastry_past::PastConfig::default())
}

/// The admin API's routes over `nodes`, whose PAST runs with `past` (object size limit
/// and default k, for `/past/put` and `/past/info`) and Scribe with its defaults.
pub fn router_with_past(nodes: Nodes, past: &pastry_past::PastConfig) -> Router {
    router_with_configs(nodes, past, &ScribeConfig::default())
}

/// The admin API's routes over `nodes`, whose PAST runs with `past` and Scribe with
/// `scribe` (payload limit, for `/scribe/publish` and `/scribe/info`).
pub fn router_with_configs(
    nodes: Nodes,
    past: &pastry_past::PastConfig,
    scribe: &ScribeConfig,
) -> Router {
    let max = past.max_object_bytes;
    let info = json!({ "max_object_bytes": max, "replicas": past.replicas });
    let scribe_max = scribe.max_payload_bytes;
    let scribe_info = json!({ "max_payload_bytes": scribe_max, "app": crate::SCRIBE_APP });
    Router::new()
        .route("/status", get(status))
        .route("/nodes", get(all_nodes))
        .route("/metrics", get(metrics))
        .route("/route", post(route))
        .route(
            "/past/put",
            post(move |s, q, b| past_put(s, q, b, max)).layer(DefaultBodyLimit::max(max)),
        )
        .route("/past/get/{key}", get(past_get))
        .route("/past/replicas/{key}", get(past_replicas))
        .route("/past/info", get(move || async move { Json(info) }))
        .route(
            "/scribe/publish/{topic}",
            post(move |s, p, q, b| scribe_publish(s, p, q, b, scribe_max))
                .layer(DefaultBodyLimit::max(scribe_max)),
        )
        .route(
            "/scribe/subscribe/{topic}",
            get(scribe_subscribe).post(scribe_subscribe),
        )
        .route("/scribe/topics", get(scribe_topics))
        .route(
            "/scribe/info",
            get(move || async move { Json(scribe_info) }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(nodes)
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn node(nodes: &Nodes, i: usize) -> Result<NodeClient, Box<Response>> {
    let list = nodes.read().map(|l| l.get(i).cloned()).ok().flatten();
    list.ok_or_else(|| {
        let msg = format!("no node {i} in this process");
        Box::new(error(StatusCode::NOT_FOUND, msg))
    })
}

fn snapshot(nodes: &Nodes) -> Vec<NodeClient> {
    nodes.read().map(|l| l.clone()).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct NodeQuery {
    node: Option<usize>,
}

async fn status(State(nodes): State<Nodes>, Query(q): Query<NodeQuery>) -> Response {
    let n = match node(&nodes, q.node.unwrap_or(0)) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn all_nodes(State(nodes): State<Nodes>) -> Response {
    let mut out = Vec::new();
    for n in snapshot(&nodes) {
        if let Ok(s) = n.status().await {
            out.push(s);
        }
    }
    Json(out).into_response()
}

async fn metrics(State(nodes): State<Nodes>) -> Response {
    let mut all = Vec::new();
    for n in snapshot(&nodes) {
        if let Ok(m) = n.metrics().await {
            all.push(m);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&all),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    key: String,
    #[serde(default)]
    payload: String,
    #[serde(default = "yes")]
    trace: bool,
    #[serde(default)]
    node: usize,
    timeout_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

async fn route(
    State(nodes): State<Nodes>,
    body: Result<Json<RouteBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let Ok(key) = NodeId::from_hex(&body.key) else {
        return error(
            StatusCode::BAD_REQUEST,
            "key: expected 32 hexadecimal digits",
        );
    };
    let n = match node(&nodes, body.node) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let timeout = Duration::from_millis(body.timeout_ms.unwrap_or(5000).min(30_000));
    match n
        .route(key, Bytes::from(body.payload), body.trace, timeout)
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e) if e.to_string().contains("no report") => error(StatusCode::GATEWAY_TIMEOUT, e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PastQuery {
    node: Option<usize>,
    k: Option<usize>,
    max: Option<usize>,
}

fn past_error(e: &crate::PastApiError) -> Response {
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    error(code, e)
}

fn parse_key(text: &str) -> Result<NodeId, Box<Response>> {
    NodeId::from_hex(text).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "key `{}`: expected 32 hexadecimal digits",
                text.chars().take(64).collect::<String>()
            ),
        ))
    })
}

async fn past_put(
    State(nodes): State<Nodes>,
    query: Result<Query<PastQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    max: usize,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("object larger than the limit of {max} bytes"),
            );
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    if body.len() > max {
        let e = crate::PastApiError::TooLarge {
            size: body.len(),
            max,
        };
        return past_error(&e);
    }
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty object: send its bytes as the body",
        );
    }
    let n = match node(&nodes, q.node.unwrap_or(0)) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.past_put(body, q.k, PAST_TIMEOUT).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => past_error(&e),
    }
}

async fn past_get(
    State(nodes): State<Nodes>,
    Path(key): Path<String>,
    query: Result<Query<PastQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let key = match parse_key(&key) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let n = match node(&nodes, q.node.unwrap_or(0)) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.past_get(key, PAST_TIMEOUT).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => past_error(&e),
    }
}

async fn past_replicas(
    State(nodes): State<Nodes>,
    Path(key): Path<String>,
    query: Result<Query<PastQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let key = match parse_key(&key) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let n = match node(&nodes, q.node.unwrap_or(0)) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.past_replicas(key, q.max.unwrap_or(8), PAST_TIMEOUT).await {
        Ok(list) => Json(json!({ "key": key.to_string(), "replicas": list })).into_response(),
        Err(e) => past_error(&e),
    }
}

fn scribe_error(e: &crate::ScribeApiError) -> Response {
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    error(code, e)
}

fn node_query(
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
    nodes: &Nodes,
) -> Result<NodeClient, Box<Response>> {
    let Query(q) = query.map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e.body_text())))?;
    node(nodes, q.node.unwrap_or(0))
}

async fn scribe_publish(
    State(nodes): State<Nodes>,
    Path(topic): Path<String>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    max: usize,
) -> Response {
    let n = match node_query(query, &nodes) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("message larger than the limit of {max} bytes"),
            );
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    if body.len() > max {
        let e = crate::ScribeApiError::TooLarge {
            size: body.len(),
            max,
        };
        return scribe_error(&e);
    }
    match n.scribe_publish(topic, body).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => scribe_error(&e),
    }
}

async fn scribe_subscribe(
    State(nodes): State<Nodes>,
    Path(topic): Path<String>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let n = match node_query(query, &nodes) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.scribe_subscribe(topic).await {
        Ok(stream) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(e) => scribe_error(&e),
    }
}

async fn scribe_topics(
    State(nodes): State<Nodes>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let n = match node_query(query, &nodes) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match n.scribe_topics().await {
        Ok(list) => Json(list).into_response(),
        Err(e) => scribe_error(&e),
    }
}
