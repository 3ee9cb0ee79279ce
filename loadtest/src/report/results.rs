//! The run's results as one typed document: what `--json` writes, and what the
//! table and the HTML page are drawn from.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cli::{Cli, ClientKind, Scenario};
use crate::publish::PublishStats;

/// The results of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's flags and the run's other settings.
    pub parameters: Parameters,
    /// The load test's version.
    pub version: String,
    /// When the run started, UTC (RFC 3339).
    pub started_at: String,
    /// The measured phase: publishing, or `--hold-s` for `connect`.
    pub duration_s: f64,
    /// From the start until every viewer had joined or failed.
    pub ramp_s: f64,
    /// Connections made and failed.
    pub connections: Connections,
    /// TCP connect + WebSocket handshake.
    pub connect_ms: Quantiles,
    /// TCP connect → `hello` → `joined`.
    pub first_render_ms: Quantiles,
    /// Publish → receive.
    pub latency_ms: Quantiles,
    /// Delivery accounting.
    pub events: Events,
    /// End-to-end p99 of each second of the measured phase.
    pub latency_p99_ms_by_second: Vec<f64>,
    /// Publish → receive at the viewers of each gateway (in `--url` order), with
    /// several gateways: the events published through one gateway reach the others'
    /// viewers over Redis.
    #[serde(default)]
    pub latency_ms_by_gateway: Vec<Quantiles>,
    /// Distinct events received by all viewers per second of the measured phase.
    pub deliveries_per_s: f64,
    /// WebSocket frames received per second.
    pub frames_per_s: f64,
    /// Events per frame (how much the gateway batches).
    pub events_per_frame: f64,
    /// What the publishers did; `None` for `connect`.
    pub publish: Option<PublishStats>,
    /// `error` replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Events viewers were told they skipped, as the gateways counted them, by
    /// `<reason>/<priority>` (`sampled/low`, `targeted/high`, …).
    #[serde(default)]
    pub skips_by_priority: BTreeMap<String, u64>,
    /// The `interact` checks; `None` for other scenarios.
    pub interact: Option<Interact>,
    /// Reconnects.
    pub resume: Resume,
    /// The load generator's own cost.
    pub loadgen: Loadgen,
    /// The watched gateway processes.
    pub gateways: Vec<Gateway>,
    /// Whether the run passed.
    pub pass: bool,
    /// Why it failed, if it did.
    pub failures: Vec<String>,
}

/// What the run was asked to do: the command line, minus the credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// The scenario with its flags.
    pub scenario: Scenario,
    /// The gateways' WebSocket URLs.
    pub urls: Vec<String>,
    /// Whether viewers had signed tokens (`--jwt-secret`); the secret is not kept.
    pub signed_tokens: bool,
    /// Worker processes.
    pub procs: usize,
    /// The viewers' WebSocket client.
    #[serde(default)]
    pub client: ClientKind,
    /// Runtime (and reader) threads per process.
    pub threads: usize,
    /// Source addresses of the viewers.
    pub source_addrs: Vec<IpAddr>,
    /// Connections opening at once.
    pub in_flight: usize,
    /// Connections opened per second (0: as fast as `in_flight` allows).
    pub ramp_rate: f64,
    /// The rooms' id prefix.
    pub room_prefix: String,
    /// The watched gateway processes.
    pub gateway_pids: Vec<u32>,
    /// `--max-p99-ms`.
    pub max_p99_ms: Option<f64>,
    /// `--min-deliveries-per-s`.
    pub min_deliveries_per_s: Option<f64>,
}

impl Parameters {
    /// The parameters of a run of `cli` with rooms named `room_prefix-…`.
    pub fn new(cli: &Cli, room_prefix: &str) -> Self {
        let c = &cli.common;
        Self {
            scenario: cli.scenario.clone(),
            urls: c.urls.clone(),
            signed_tokens: c.jwt_secret.is_some(),
            procs: c.procs,
            client: c.client,
            threads: c.threads,
            source_addrs: c.source_addrs.clone(),
            in_flight: c.in_flight,
            ramp_rate: c.ramp_rate,
            room_prefix: room_prefix.to_owned(),
            gateway_pids: c.gateway_pids.clone(),
            max_p99_ms: c.max_p99_ms,
            min_deliveries_per_s: c.min_deliveries_per_s,
        }
    }

    /// The scenario's flags as (name, value) pairs, in alphabetical order.
    pub fn flags(&self) -> Vec<(String, String)> {
        // A scenario serializes as {"<name>": {<flag>: <value>, …}}.
        let Ok(serde_json::Value::Object(outer)) = serde_json::to_value(&self.scenario) else {
            return Vec::new();
        };
        let Some(serde_json::Value::Object(flags)) = outer.into_iter().next().map(|(_, v)| v)
        else {
            return Vec::new();
        };
        flags
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::Number(n) => n
                        .as_f64()
                        .map_or_else(|| n.to_string(), super::figures::num),
                    other => other.to_string(),
                };
                (k.replace('_', "-"), v)
            })
            .collect()
    }
}

/// Quantiles of a histogram, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile (latency only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile (latency only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999: Option<f64>,
    /// Largest value.
    pub max: f64,
}

/// Connections made and failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections the scenario asked for.
    pub target: u64,
    /// Connections that joined.
    pub established: u64,
    /// Connections (or reconnects) that failed.
    pub failed: u64,
    /// Failures by cause.
    pub failures: BTreeMap<String, u64>,
}

/// Delivery accounting, summed over viewers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Events the publishers published.
    pub published: u64,
    /// Final seq − joined seq, summed over viewers.
    pub expected: u64,
    /// Distinct seqs received.
    pub delivered: u64,
    /// Expected − delivered − skipped.
    pub lost: u64,
    /// Seqs viewers were told they skipped (`skipped` markers).
    #[serde(default)]
    pub skipped: u64,
    /// Of those, seqs of events for other viewers (reason `targeted`); the rest were
    /// `sampled`.
    #[serde(default)]
    pub skipped_targeted: u64,
    /// Seqs received twice.
    pub duplicated: u64,
    /// Seqs received after a later one.
    pub reordered: u64,
    /// `reset` frames and unrecovered rejoins.
    pub resets: u64,
    /// Events skipped by resets.
    pub lost_to_resets: u64,
}

/// The `interact` scenario's checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interact {
    /// Commands sent.
    pub commands: u64,
    /// `ack` replies.
    pub acks: u64,
    /// Of those, comments acked `merged:true` (merged into a `comment.merged`).
    #[serde(default)]
    pub merged_acks: u64,
    /// Likes acknowledged.
    pub likes_acked: u64,
    /// The rooms' like totals at the end.
    pub likes_total: u64,
    /// Whether each room's last poll tallies equal the votes acknowledged.
    pub polls_exact: bool,
    /// Votes acknowledged.
    pub votes_acked: u64,
    /// Commands refused, by error code.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// The room games (`--keyword`, `--quiz`, `--lottery-winners`, `--coupon-stock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub games: Option<crate::games::Games>,
}

/// Reconnects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    /// Reconnects made.
    pub reconnects: u64,
    /// Reconnects answered `recovered:true`.
    pub recovered: u64,
    /// From the decision to reconnect (a `reconnect` frame, a dropped connection) to
    /// `joined` on the new connection, failed attempts included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_ms: Option<Quantiles>,
}

/// The load generator's own cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Loadgen {
    /// Processes.
    pub procs: usize,
    /// CPU seconds of all its processes in the measured phase.
    pub cpu_s: f64,
    /// CPU µs per event received.
    pub cpu_us_per_delivery: f64,
}

/// One watched gateway process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    /// Process id.
    pub pid: u32,
    /// RSS when the run started.
    pub rss_start_bytes: u64,
    /// Highest RSS seen.
    pub rss_peak_bytes: u64,
    /// (peak − start RSS) / the connections this gateway holds (the established
    /// ones over the gateways, which viewers dial in turn).
    pub rss_growth_per_connection_bytes: u64,
    /// CPU seconds in the measured phase.
    pub cpu_s: f64,
    /// CPU seconds per million deliveries.
    pub cpu_s_per_million_deliveries: f64,
}

impl Results {
    /// The JSON document, keys in alphabetical order.
    pub fn to_json(&self) -> String {
        // INVARIANT: the results hold only string-keyed maps, numbers, strings and
        // bools, which serde_json always serializes. Through a `Value`, whose maps
        // sort their keys.
        serde_json::to_value(self)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_default()
    }
}
