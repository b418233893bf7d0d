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
//! Request bodies are limited to 64 KiB; a route waits at most 30 s.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use pastry_core::NodeId;
use serde::Deserialize;
use serde_json::json;

use crate::node::NodeClient;
use crate::status::render_metrics;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The nodes an admin API serves (filled in as they start).
pub type Nodes = Arc<RwLock<Vec<NodeClient>>>;

/// The admin API's routes over `nodes`.
pub fn router(nodes: Nodes) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/nodes", get(all_nodes))
        .route("/metrics", get(metrics))
        .route("/route", post(route))
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
