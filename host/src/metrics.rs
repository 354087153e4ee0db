//! The metrics endpoint: Prometheus (OpenMetrics) text over HTTP at `metrics_addr`, off by
//! default. Everything is read at scrape time from what the node already counts (the write
//! path's counters, the per-command rows, openraft's metrics), so serving it costs the hot path
//! nothing. Encoded by `prometheus-client`, served by hyper (HTTP/1, `GET /metrics`).

use crate::server::Shared;
use crate::server::command_stats::Outcome;
use crate::stats::Histogram;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

/// The OpenMetrics content type `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the node's figures on each scrape.
#[derive(Debug)]
struct NodeCollector {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(..)")
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn histogram(encoder: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(h.sum_micros() as f64 / 1e6, h.count(), &h.buckets_seconds(), None)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared;
        let node = &shared.node;
        let metrics = node.metrics();
        let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index as i64);

        // Raft state.
        gauge(&mut encoder, "redraft_raft_node_id", "This node's Raft id.", node.id() as i64)?;
        gauge(&mut encoder, "redraft_raft_term", "The current Raft term.", metrics.current_term as i64)?;
        gauge(
            &mut encoder,
            "redraft_raft_leader_id",
            "The leader this node knows of (0: none).",
            metrics.current_leader.map_or(0, |l| l as i64),
        )?;
        {
            let mut roles = encoder.encode_descriptor(
                "redraft_raft_role",
                "1 for this node's Raft role, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for (role, state) in [
                ("leader", ServerState::Leader),
                ("follower", ServerState::Follower),
                ("candidate", ServerState::Candidate),
                ("learner", ServerState::Learner),
            ] {
                let labels = [("role", role)];
                ConstGauge::new(i64::from(metrics.state == state)).encode(roles.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "redraft_raft_last_log_index",
            "The last index in this node's log.",
            metrics.last_log_index.unwrap_or(0) as i64,
        )?;
        gauge(
            &mut encoder,
            "redraft_raft_commit_index",
            "The last index this node knows to be committed.",
            node.write_stats().commit_index.load(Ordering::Relaxed) as i64,
        )?;
        gauge(
            &mut encoder,
            "redraft_raft_applied_index",
            "The last index applied to the state.",
            index(metrics.last_applied),
        )?;
        gauge(
            &mut encoder,
            "redraft_raft_snapshot_index",
            "The last index the latest snapshot covers.",
            index(metrics.snapshot),
        )?;
        gauge(&mut encoder, "redraft_raft_purged_index", "The last index purged from the log.", index(metrics.purged))?;
        if let Some(replication) = &metrics.replication {
            let mut lag = encoder.encode_descriptor(
                "redraft_raft_replication_lag_entries",
                "On the leader: entries each follower lacks (last log index minus its matched index).",
                None,
                MetricType::Gauge,
            )?;
            let last = metrics.last_log_index.unwrap_or(0);
            for (follower, matched) in replication.iter().filter(|(id, _)| **id != node.id()) {
                let behind = last.saturating_sub(matched.map_or(0, |m| m.index));
                let labels = [("follower", follower.to_string())];
                ConstGauge::new(behind as i64).encode(lag.encode_family(&labels)?)?;
            }
        }

        // The write path.
        let writes = node.write_stats();
        for (name, value) in writes.snapshot() {
            let help = "Write-path counter since start (see INFO raft).";
            counter(&mut encoder, &format!("redraft_{}", name.trim_start_matches("raft_")), help, value)?;
        }
        histogram(
            &mut encoder,
            "redraft_log_append_seconds",
            "Each Raft log append, its write and fsync together.",
            &writes.append_latency,
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "redraft_write_batch_commands",
                "Client writes in each entry this node's write batcher proposed (the group commit's size).",
                None,
                MetricType::Histogram,
            )?;
            let sizes = &writes.batch_commands;
            metric.encode_histogram::<NoLabelSet>(sizes.sum() as f64, sizes.count(), &sizes.buckets(), None)?;
        }
        histogram(
            &mut encoder,
            "redraft_snapshot_build_seconds",
            "Each snapshot this node built: reading the state, writing and fsyncing the file.",
            &writes.snapshot_build_latency,
        )?;
        histogram(
            &mut encoder,
            "redraft_snapshot_install_seconds",
            "Each snapshot received from a leader: fsync, verification and restore (not the transfer).",
            &writes.snapshot_install_latency,
        )?;
        gauge(
            &mut encoder,
            "redraft_snapshot_bytes",
            "The size of the snapshot file this node built or installed last.",
            writes.snapshot_bytes.load(Ordering::Relaxed) as i64,
        )?;

        // Clients and commands.
        gauge(&mut encoder, "redraft_connected_clients", "Client connections open now.", shared.connections() as i64)?;
        counter(
            &mut encoder,
            "redraft_connections_received",
            "Client connections accepted since start.",
            shared.connections_received.load(Ordering::Relaxed),
        )?;
        let rows = shared.commands.all();
        {
            let mut calls = encoder.encode_descriptor(
                "redraft_commands",
                "Calls by command and outcome (ok, error, rejected, unknown, moved).",
                None,
                MetricType::Counter,
            )?;
            for row in &rows {
                for outcome in Outcome::ALL {
                    let labels = [("command", row.name()), ("outcome", outcome.name())];
                    ConstCounter::new(row.count(outcome)).encode(calls.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut latency = encoder.encode_descriptor(
                "redraft_command_duration_seconds",
                "From dispatch to reply, by command (writes include replication and apply).",
                None,
                MetricType::Histogram,
            )?;
            for row in &rows {
                let h = row.latency();
                let labels = [("command", row.name())];
                latency.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    h.sum_micros() as f64 / 1e6,
                    h.count(),
                    &h.buckets_seconds(),
                    None,
                )?;
            }
        }

        // Security.
        counter(
            &mut encoder,
            "redraft_auth_failures",
            "Failed AUTH and HELLO AUTH attempts.",
            shared.denied.auth.load(Ordering::Relaxed),
        )?;
        {
            let mut denied = encoder.encode_descriptor(
                "redraft_acl_denied",
                "Commands refused to a user, by reason (command, key).",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in [("command", &shared.denied.command), ("key", &shared.denied.key)] {
                let labels = [("reason", reason)];
                ConstCounter::new(count.load(Ordering::Relaxed)).encode(denied.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut encoder,
            "redraft_peers_refused",
            "Peer connections refused (TLS handshake or cluster-secret challenge failed).",
            node.peers_refused(),
        )?;
        gauge(
            &mut encoder,
            "redraft_resident_memory_bytes",
            "This process's resident memory.",
            crate::server::commands::resident_bytes() as i64,
        )
    }
}

/// The registry a scrape encodes.
fn registry(shared: Arc<Shared>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector { shared }));
    registry
}

/// The text a scrape returns (also used by tests).
pub fn render(shared: &Arc<Shared>) -> String {
    let mut text = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry(shared.clone()));
    text
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &shared)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(%peer, "metrics connection: {e}");
            }
        });
    }
}

fn answer(request: &Request<hyper::body::Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            // Encoding reads a few locks and walks the command rows: milliseconds at most, but
            // not on a worker other connections wait for.
            let text = tokio::task::block_in_place(|| render(shared));
            reply(StatusCode::OK, CONTENT_TYPE, text)
        }
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "metrics are at /metrics\n".into()),
    }
}
