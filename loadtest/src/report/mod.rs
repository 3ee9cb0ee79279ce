//! The run's results: the typed document ([`Results`]), the verdict, the summary
//! table and the HTML report.
//!
//! # Layout
//! - `results`: the document `--json` writes, as types; `figures`: rounding.
//! - `table`: the summary table for a terminal.
//! - `html`: the self-contained page; `svg`: its charts.

mod figures;
mod html;
mod results;
mod svg;
mod table;

use std::collections::BTreeMap;

use danmaku_protocol::ErrorCode;
use hdrhistogram::Histogram;

use crate::cli::Scenario;
use crate::plan::Plan;
use crate::publish::PublishStats;
use crate::stats::{WorkerReport, merge_hist};
use figures::{ms, round};
pub use results::Results;
use results::{Connections, Events, Gateway, Interact, Loadgen, Parameters, Quantiles, Resume};

/// One watched gateway process, as measured.
#[derive(Debug, Clone)]
pub struct GatewayStats {
    /// Process id.
    pub pid: u32,
    /// RSS when the run started.
    pub rss_start_bytes: u64,
    /// Highest RSS seen.
    pub rss_peak_bytes: u64,
    /// CPU seconds during the measured phase.
    pub cpu_s: f64,
}

/// Everything a run measured, for [`Summary::build`].
pub struct Outcome {
    /// The workers' reports, merged.
    pub report: WorkerReport,
    /// What the publishers did (scenarios that publish).
    pub publish: Option<PublishStats>,
    /// Each room's final seq.
    pub finals: BTreeMap<String, u64>,
    /// The rooms' like totals at the end.
    pub likes_total: u64,
    /// What the gateways counted of skipped events, by `<reason>/<priority>`.
    pub skips_by_priority: BTreeMap<String, u64>,
    /// The watched gateways.
    pub gateways: Vec<GatewayStats>,
    /// Seconds until every viewer had joined or failed.
    pub ramp_s: f64,
    /// Seconds of the measured phase.
    pub measured_s: f64,
    /// When the run started, Unix µs.
    pub started_at_us: u64,
    /// What the gateway holds of the `interact` games at the end.
    pub games: Option<crate::games::Held>,
}

/// The results, with the histograms the HTML page draws.
pub struct Summary {
    /// The results document.
    pub results: Results,
    latency: Histogram<u64>,
    first_render: Histogram<u64>,
    series: Vec<Histogram<u64>>,
}

fn quantiles(h: &Histogram<u64>, tails: bool) -> Quantiles {
    Quantiles {
        p50: ms(h, 0.5),
        p90: tails.then(|| ms(h, 0.9)),
        p99: ms(h, 0.99),
        p999: tails.then(|| ms(h, 0.999)),
        max: if h.is_empty() {
            0.0
        } else {
            h.max() as f64 / 1000.0
        },
    }
}

/// Sums the per-room accounting against each room's final seq.
fn events(r: &WorkerReport, finals: &BTreeMap<String, u64>, published: u64) -> Events {
    let mut e = Events {
        published,
        resets: r.resets,
        ..Events::default()
    };
    for (room, c) in &r.rooms {
        let last = finals.get(room).copied().unwrap_or(0);
        e.expected += (c.viewers * last).saturating_sub(c.base_sum);
        e.delivered += c.distinct;
        e.duplicated += c.duplicated;
        e.reordered += c.reordered;
        e.lost_to_resets += c.reset_lost;
        e.skipped += c.skipped;
        e.skipped_targeted += c.skipped_targeted;
    }
    // Skipped events were told (adaptive viewers): not lost.
    e.lost = e.expected.saturating_sub(e.delivered + e.skipped);
    e
}

impl Summary {
    /// Computes the results and the verdict.
    pub fn build(plan: &Plan, o: Outcome) -> Self {
        let r = &o.report;
        let common = &plan.cli.common;
        let (target, _, _) = plan.scenario().shape();
        let latency = merge_hist(&r.latency_us);
        let first_render = merge_hist(&r.first_render_us);
        let series: Vec<Histogram<u64>> = r.latency_series.iter().map(merge_hist).collect();
        let published = o.publish.as_ref().map_or(0, |p| p.published);
        let events = events(r, &o.finals, published);
        let measured = o.measured_s > 0.5;
        let per_s = |n: u64| {
            if measured {
                (n as f64 / o.measured_s).round()
            } else {
                0.0
            }
        };
        let interact = matches!(plan.scenario(), Scenario::Interact { .. }).then(|| Interact {
            commands: r.commands,
            acks: r.acks,
            merged_acks: r.merged_acks,
            likes_acked: r.likes_acked,
            likes_total: o.likes_total,
            polls_exact: polls_mismatched(r).is_empty(),
            votes_acked: r.votes_acked.values().flat_map(|m| m.values()).sum(),
            refused: r.refused.clone(),
            games: o.games.as_ref().and_then(|held| {
                let rooms = plan.rooms.len();
                crate::games::check(
                    plan.scenario(),
                    rooms,
                    &r.games,
                    held,
                    &r.refused,
                    r.established,
                )
                .map(|(g, _)| g)
            }),
        });
        let mut results = Results {
            scenario: plan.scenario().name().to_owned(),
            parameters: Parameters::new(&plan.cli, &plan.prefix),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: crate::clock::rfc3339(o.started_at_us / 1_000_000),
            duration_s: round(o.measured_s, 2),
            ramp_s: round(o.ramp_s, 3),
            connections: Connections {
                target: target as u64,
                established: r.established,
                failed: r.failures.values().sum(),
                failures: r.failures.clone(),
            },
            connect_ms: quantiles(&merge_hist(&r.connect_us), false),
            first_render_ms: quantiles(&first_render, false),
            latency_ms: quantiles(&latency, true),
            events,
            latency_p99_ms_by_second: series.iter().map(|h| ms(h, 0.99)).collect(),
            latency_ms_by_gateway: if r.latency_by_gateway.len() > 1 {
                r.latency_by_gateway
                    .iter()
                    .map(|b| quantiles(&merge_hist(b), true))
                    .collect()
            } else {
                Vec::new()
            },
            deliveries_per_s: per_s(events.delivered),
            frames_per_s: per_s(r.frames),
            events_per_frame: if r.frames > 0 {
                round(r.delivered as f64 / r.frames as f64, 2)
            } else {
                0.0
            },
            publish: o.publish.clone(),
            errors: r.errors.clone(),
            skips_by_priority: o.skips_by_priority.clone(),
            interact,
            resume: Resume {
                reconnects: r.reconnects,
                recovered: r.recovered,
                reconnect_ms: (r.reconnects > 0)
                    .then(|| quantiles(&merge_hist(&r.reconnect_us), true)),
            },
            loadgen: Loadgen {
                procs: common.procs,
                cpu_s: round(r.cpu_s, 2),
                cpu_us_per_delivery: if r.delivered > 0 {
                    round(r.cpu_s * 1e6 / r.delivered as f64, 3)
                } else {
                    0.0
                },
            },
            gateways: o
                .gateways
                .iter()
                // Viewer n dials gateway n mod G: with one watched process per URL,
                // each holds its share of them; otherwise the share is not known.
                .map(|g| {
                    let held = if o.gateways.len() == common.urls.len() {
                        share(r.established, common.urls.len())
                    } else {
                        r.established
                    };
                    gateway(g, held, events.delivered)
                })
                .collect(),
            pass: false,
            failures: Vec::new(),
        };
        results.failures = verdict(plan, &o, &results);
        results.pass = results.failures.is_empty();
        Self {
            results,
            latency,
            first_render,
            series,
        }
    }

    /// The summary table for a terminal.
    pub fn table(&self) -> String {
        table::render(&self.results)
    }

    /// A self-contained HTML page with latency over time and the latency histogram.
    pub fn html(&self) -> String {
        html::render(
            &self.results,
            &self.series,
            &self.latency,
            &self.first_render,
        )
    }
}

/// The connections one of `gateways` holds when `established` were spread over them.
fn share(established: u64, gateways: usize) -> u64 {
    established.div_ceil(gateways.max(1) as u64)
}

fn gateway(g: &GatewayStats, established: u64, delivered: u64) -> Gateway {
    Gateway {
        pid: g.pid,
        rss_start_bytes: g.rss_start_bytes,
        rss_peak_bytes: g.rss_peak_bytes,
        rss_growth_per_connection_bytes: g
            .rss_peak_bytes
            .saturating_sub(g.rss_start_bytes)
            .checked_div(established)
            .unwrap_or(0),
        cpu_s: round(g.cpu_s, 2),
        cpu_s_per_million_deliveries: if delivered > 0 {
            round(g.cpu_s / delivered as f64 * 1e6, 3)
        } else {
            0.0
        },
    }
}

/// The rooms whose last poll tallies differ from the votes acknowledged.
fn polls_mismatched(r: &WorkerReport) -> Vec<String> {
    let mut out = Vec::new();
    for (room, (_, tallies)) in &r.polls_seen {
        let acked = r.votes_acked.get(room).cloned().unwrap_or_default();
        let want: Vec<u64> = (0..tallies.len() as u32)
            .map(|o| acked.get(&o).copied().unwrap_or(0))
            .collect();
        if &want != tallies {
            out.push(format!(
                "poll tallies of {room}: seen {tallies:?}, acknowledged {want:?}"
            ));
        }
    }
    out
}

/// Whether the commands the run was asked to send were refused. Refusals for rate
/// limiting and the room's comment budget (`room_busy`) do not fail the run (the rates
/// are above the gateway's limits, and the refusals are reported under `errors`) unless
/// no command was acknowledged at all; nor do a coupon storm's `sold_out` and
/// `already_claimed`, which it is there to provoke (its counts are checked instead).
fn refusals(i: &Interact, signed: bool) -> Option<String> {
    let refused: BTreeMap<&str, u64> = i
        .refused
        .iter()
        .filter(|(code, _)| {
            ![
                ErrorCode::RateLimited,
                ErrorCode::RoomBusy,
                ErrorCode::SoldOut,
                ErrorCode::AlreadyClaimed,
            ]
            .iter()
            .any(|c| c.as_str() == code.as_str())
        })
        .map(|(code, n)| (code.as_str(), *n))
        .collect();
    let n: u64 = refused.values().sum();
    if n > 0 {
        let hint = if !signed && refused.contains_key(ErrorCode::Forbidden.as_str()) {
            " (anonymous viewers are read-only: give --jwt-secret)"
        } else {
            ""
        };
        Some(format!(
            "{n} of {} commands refused: {refused:?}{hint}",
            i.commands
        ))
    } else if i.commands > 0 && i.acks == 0 {
        Some(format!(
            "none of {} commands was acknowledged: {:?}",
            i.commands, i.refused
        ))
    } else {
        None
    }
}

/// Why the run failed, if it did.
fn verdict(plan: &Plan, o: &Outcome, res: &Results) -> Vec<String> {
    let common = &plan.cli.common;
    let c = &res.connections;
    let e = &res.events;
    let mut failures = Vec::new();
    if c.established + c.failed < c.target {
        failures.push(format!(
            "only {} of {} connections reported (a worker failed?)",
            c.established + c.failed,
            c.target
        ));
    }
    if c.failed > 0 {
        failures.push(format!("{} connections failed: {:?}", c.failed, c.failures));
    }
    if e.lost > 0 {
        failures.push(format!(
            "{} events lost ({} to resets)",
            e.lost, e.lost_to_resets
        ));
    }
    if e.reordered > 0 || e.duplicated > 0 {
        failures.push(format!(
            "{} reordered, {} duplicated",
            e.reordered, e.duplicated
        ));
    }
    if let Some(max) = common.max_p99_ms
        && res.latency_ms.p99 > max
    {
        failures.push(format!("p99 {} ms > {max} ms", res.latency_ms.p99));
    }
    if let Some(min) = common.min_deliveries_per_s
        && res.deliveries_per_s < min
    {
        failures.push(format!("{:.0} deliveries/s < {min}", res.deliveries_per_s));
    }
    if let Some(p) = &o.publish
        && p.published < p.scheduled
    {
        failures.push(format!(
            "published {} of {} events",
            p.published, p.scheduled
        ));
    }
    if let Some(i) = &res.interact {
        failures.extend(refusals(i, common.jwt_secret.is_some()));
        failures.extend(polls_mismatched(&o.report));
        if let Some(held) = &o.games
            && let Some((_, games)) = crate::games::check(
                plan.scenario(),
                plan.rooms.len(),
                &o.report.games,
                held,
                &i.refused,
                o.report.established,
            )
        {
            failures.extend(games);
        }
        if i.likes_total != i.likes_acked {
            failures.push(format!(
                "likes total {} != acknowledged {}",
                i.likes_total, i.likes_acked
            ));
        }
    }
    failures
}

#[cfg(test)]
mod tests;
