//! The `retention` scenario: viewers come, stay a dwell drawn from their variant's
//! distribution, comment and like, some drop and resume on another gateway, some come
//! back later, and leave — over a simulated time the gateways' analytics clock
//! (`--analytics-time-scale`) runs through in seconds. At the end the room's analytics
//! (`GET /v1/rooms/{room}/analytics`) must show what the load test recorded: counts
//! exactly, times within what the measurements and the gateways' timing allow
//! ([`record`]).

mod record;
mod script;
mod viewer;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use danmaku_protocol::RoomId;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::api::api_at;
use crate::cli::{Retention, Scenario};
use crate::endpoint::Endpoint;
use crate::plan::Plan;
use record::{Check, Expected, MILESTONES};
use script::Variant;
use viewer::{Ctx, Played};

/// The most viewers a run may have.
const MAX_VIEWERS: usize = 20_000;
/// The longest a run may take, in real seconds (its simulated horizon, scaled).
const MAX_REAL_S: f64 = 900.0;
/// Real time for the viewers to open before the first arrival.
const LEAD: Duration = Duration::from_millis(500);
/// Real time the viewers may take beyond the horizon before the run gives up on them.
const GRACE: Duration = Duration::from_secs(60);

/// The results, as `--json` writes them.
#[derive(Serialize)]
struct Report<'a> {
    scenario: &'static str,
    room: &'a str,
    pass: bool,
    failures: &'a [String],
    time_scale: u64,
    real_s: f64,
    /// Refused commands by code (not counted as interactions).
    refused: &'a BTreeMap<String, u64>,
    checks: &'a [Check],
    simulated: BTreeMap<String, &'a Expected>,
    analytics: &'a Value,
}

/// Runs the scenario; returns whether the analytics matched.
///
/// # Errors
/// On bad settings, gateways outside 127.0.0.0/8, refused credentials, a room that
/// already has retention data, or settings the API refuses.
pub async fn run(plan: Arc<Plan>) -> anyhow::Result<bool> {
    let Scenario::Retention(r) = plan.scenario() else {
        bail!("not the retention scenario");
    };
    let r = r.clone();
    let variants = validate(&plan, &r)?;
    let room = match &r.room {
        Some(id) => RoomId::new(id).map_err(|e| anyhow::anyhow!("--room {id}: {e}"))?,
        None => plan.rooms[0].clone(),
    };
    let settings_base = match &r.http_url {
        Some(url) => settings_endpoint(&plan, url)?,
        None => plan.http[0].clone(),
    };
    loopback(settings_base.addr.ip())?;
    let quiet = plan.cli.common.quiet;
    let say = |what: &str| {
        if !quiet {
            eprintln!("retention: {what}");
        }
    };
    say("checking credentials");
    crate::preflight::check(&plan).await?;
    let path = format!("/v1/rooms/{room}/analytics");
    let before: Value = api_at(&plan, &plan.http[0], "GET", &path, "").await?;
    let joins = before["viewers"]["joins"].as_u64().unwrap_or(0);
    if joins > 0 {
        bail!("room {room} already has retention data ({joins} joins): give a fresh --room");
    }
    let names: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    let settings = json!({"experiment": {"name": r.experiment, "variants": names}});
    let put = format!("/v1/rooms/{room}/settings");
    api_at::<Value>(&plan, &settings_base, "PUT", &put, &settings.to_string())
        .await
        .context("setting the room's experiment")?;
    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        room: room.clone(),
        variants: names.clone(),
        scale: r.time_scale,
        t0: started + LEAD,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..r.viewers {
        let s = script::script(plan.scenario(), &r, &variants, i);
        tasks.spawn(viewer::play(ctx.clone(), s));
    }
    let horizon = Duration::from_secs_f64(script::horizon(&r) / r.time_scale as f64);
    say(&format!(
        "{} viewers over {:.0} simulated s ({:.1} s real)",
        r.viewers,
        script::horizon(&r),
        horizon.as_secs_f64()
    ));
    let deadline = started + LEAD + horizon + GRACE;
    let mut played: Vec<Played> = Vec::new();
    let mut failures = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(p))) => played.push(p),
            Ok(Some(Err(e))) => failures.push(format!("a viewer task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!(
                    "{} viewers were still on {} s after the last should have left",
                    tasks.len(),
                    GRACE.as_secs()
                ));
                tasks.abort_all();
                break;
            }
        }
    }
    // Every gateway flushes its queue every 200 ms, and when asked for the analytics:
    // each is asked once, and the last answer has them all.
    say("reading the analytics");
    tokio::time::sleep(Duration::from_millis(r.settle_ms)).await;
    let mut doc = Value::Null;
    for base in &plan.http {
        match api_at::<Value>(&plan, base, "GET", &path, "").await {
            Ok(d) => doc = d,
            Err(e) => failures.push(format!("reading the analytics: {e:#}")),
        }
    }
    let real_s = started.elapsed().as_secs_f64();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for p in &played {
        failures.extend(p.failure.clone());
        for (code, n) in &p.refused {
            *refused.entry(code.clone()).or_default() += n;
        }
    }
    let visits: Vec<&record::Visit> = played.iter().flat_map(|p| &p.visits).collect();
    let tick = r.tick_ms * r.time_scale;
    let mut expected = BTreeMap::new();
    expected.insert(
        "room".to_owned(),
        record::expect(visits.iter().copied(), tick),
    );
    for (i, name) in names.iter().enumerate() {
        let of = visits.iter().copied().filter(|v| v.variant == i);
        expected.insert(name.clone(), record::expect(of, tick));
    }
    let mut checks = record::check("room", &doc, &expected["room"]);
    for name in &names {
        checks.extend(record::check(
            name,
            &doc["by_variant"][name],
            &expected[name],
        ));
    }
    let shown: Vec<&String> = doc["by_variant"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    if let Some(other) = shown.iter().find(|k| !names.contains(k)) {
        failures.push(format!(
            "the analytics show a variant {other} no viewer was in"
        ));
    }
    failures.extend(checks.iter().filter(|c| !c.ok).map(|c| {
        format!(
            "{} {}: simulated {}, API {}",
            c.scope, c.what, c.simulated, c.api
        )
    }));
    let api_minutes: Vec<u64> = doc["retention"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["minute"].as_u64())
        .collect();
    let ours = &expected["room"].minutes;
    if !api_minutes.is_empty() && !api_minutes.iter().any(|m| ours.contains_key(m)) {
        failures.push(format!(
            "no join minute of the analytics is one of the viewers': is --time-scale {} the gateways' --analytics-time-scale?",
            r.time_scale
        ));
    }
    let pass = failures.is_empty();
    print!(
        "{}",
        table(
            &plan,
            &r,
            &room,
            &checks,
            &expected["room"],
            &doc,
            real_s,
            &failures
        )
    );
    if let Some(out) = &plan.cli.common.json {
        let report = Report {
            scenario: "retention",
            room: room.as_str(),
            pass,
            failures: &failures,
            time_scale: r.time_scale,
            real_s,
            refused: &refused,
            checks: &checks,
            simulated: expected.iter().map(|(k, v)| (k.clone(), v)).collect(),
            analytics: &doc,
        };
        let text = serde_json::to_string_pretty(&report).context("encoding the results")?;
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(pass)
}

/// Checks the settings; returns the variants.
fn validate(plan: &Plan, r: &Retention) -> anyhow::Result<Vec<Variant>> {
    let variants = script::variants(&r.dwell)?;
    if plan.cli.common.jwt_secret.is_none() {
        bail!("retention needs --jwt-secret: its viewers carry their variant in a `cohort` claim");
    }
    if plan.cli.common.html.is_some() {
        bail!("retention writes no HTML report (use --json)");
    }
    if !(1..=MAX_VIEWERS).contains(&r.viewers) {
        bail!("--viewers must be 1..={MAX_VIEWERS}");
    }
    if !(1..=3_600).contains(&r.time_scale) {
        bail!("--time-scale must be 1..=3600, as the gateways' --analytics-time-scale");
    }
    for (name, share) in [
        ("--resume-share", r.resume_share),
        ("--return-share", r.return_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("{name} must be 0–1");
        }
    }
    for (name, s) in [
        ("--arrivals-s", r.arrivals_s),
        ("--max-dwell-s", r.max_dwell_s),
        ("--away-s", r.away_s),
    ] {
        if !s.is_finite() || s < 0.0 {
            bail!("{name} must be a number of seconds");
        }
    }
    let real = script::horizon(r) / r.time_scale as f64;
    if real > MAX_REAL_S {
        bail!(
            "the run would take {real:.0} s real (--arrivals-s + --max-dwell-s over --time-scale); at most {MAX_REAL_S:.0}"
        );
    }
    let tick = script::tick_s(r);
    if let Some(m) = MILESTONES
        .iter()
        .find(|m| (r.max_dwell_s - (**m * 60) as f64).abs() < tick)
    {
        bail!(
            "--max-dwell-s {} is within a tick ({tick:.0} simulated s) of the {m}-minute milestone: the visits cut to it could not be checked",
            r.max_dwell_s
        );
    }
    for addr in &plan.addrs {
        loopback(addr.ip())?;
    }
    Ok(variants)
}

fn loopback(ip: IpAddr) -> anyhow::Result<()> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Ok(()),
        _ => bail!(
            "retention runs against local gateways only (127.0.0.0/8), not {ip}: its gateways run a sped-up analytics clock"
        ),
    }
}

/// The endpoint of `--http-url` (`http://` or `https://`, with the run's TLS trust).
fn settings_endpoint(plan: &Plan, url: &str) -> anyhow::Result<Endpoint> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("--http-url {url}: only http:// and https:// URLs");
    }
    Endpoint::parse(url, &plan.tls).with_context(|| format!("--http-url {url}"))
}

/// The table: every check, then the room's retention by join minute.
#[allow(clippy::too_many_arguments)]
fn table(
    plan: &Plan,
    r: &Retention,
    room: &RoomId,
    checks: &[Check],
    e: &Expected,
    doc: &Value,
    real_s: f64,
    failures: &[String],
) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "retention: room {room}, {} gateways, time scale {}, {} viewers, {} visits, {real_s:.1} s real ({:.1} simulated min)",
        plan.addrs.len(),
        r.time_scale,
        r.viewers,
        e.joins,
        real_s * r.time_scale as f64 / 60.0
    );
    let _ = writeln!(
        t,
        "tolerances: counts exact; milestones ±{} simulated s (a {} ms tick); dwell percentiles ±5 % beyond the measured spans (±{} ms real each)",
        r.tick_ms * r.time_scale / 1000,
        r.tick_ms,
        record::EPSILON_MS
    );
    let _ = writeln!(
        t,
        "{:<8} {:<22} {:>18} {:>10}",
        "scope", "figure", "simulated", "API"
    );
    for c in checks
        .iter()
        .filter(|c| c.what != "retention minutes" || !c.ok)
    {
        let mark = if c.ok { "" } else { "  MISMATCH" };
        let _ = writeln!(
            t,
            "{:<8} {:<22} {:>18} {:>10}{mark}",
            c.scope, c.what, c.simulated, c.api
        );
    }
    let _ = writeln!(
        t,
        "room retention by join minute (simulated | API): joined, present after 1, 5, 15 min"
    );
    let api: BTreeMap<u64, &Value> = doc["retention"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| (row["minute"].as_u64().unwrap_or(0), row))
        .collect();
    let first = e.minutes.keys().next().copied().unwrap_or(0);
    for (m, want) in &e.minutes {
        let row = api.get(m).copied().unwrap_or(&Value::Null);
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let mut line = format!(
            "  +{:>3} min  {:>7} | {:<4}",
            (m - first) / 60_000,
            want.joined.to_string(),
            n(&row["joined"])
        );
        for (i, k) in MILESTONES.iter().enumerate() {
            let got = n(&row["present"][format!("after_{k}m")]);
            let _ = write!(line, " {:>7} | {:<4}", want.present[i].to_string(), got);
        }
        let _ = writeln!(t, "{line}");
    }
    if failures.is_empty() {
        let _ = writeln!(t, "result: PASS");
    } else {
        let _ = writeln!(t, "result: FAIL");
        for f in failures {
            let _ = writeln!(t, "  {f}");
        }
    }
    t
}
