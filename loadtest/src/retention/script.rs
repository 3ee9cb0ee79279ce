//! What each simulated viewer of the `retention` scenario will do, drawn up front from
//! its own random numbers: its variant, when it arrives, how long it stays, whether it
//! drops and resumes mid-visit, its comments and likes, whether it comes back. Times
//! are simulated seconds from the run's start.

use anyhow::{Context, bail};

use crate::actions::{Act, Actions};
use crate::cli::{Retention, Scenario, in_share};

/// A dwell distribution, in simulated seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Exponential with this mean.
    Exp(f64),
    /// Uniform between the two.
    Uniform(f64, f64),
    /// Always this.
    Fixed(f64),
}

impl Dist {
    fn draw(self, rng: &mut Actions) -> f64 {
        match self {
            Self::Exp(mean) => rng.wait(mean).as_secs_f64(),
            Self::Uniform(lo, hi) => lo + (hi - lo) * rng.uniform(),
            Self::Fixed(s) => s,
        }
    }
}

/// A variant of the room's experiment and how long its viewers stay.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Its name (the viewers' `cohort` claim).
    pub name: String,
    /// Its dwell distribution.
    pub dwell: Dist,
}

/// Parses `--dwell`: `NAME=exp:MEAN`, `NAME=uniform:LO-HI`, `NAME=fixed:S`.
///
/// # Errors
/// On a malformed entry, a repeated name or none at all.
pub fn variants(specs: &[String]) -> anyhow::Result<Vec<Variant>> {
    let mut out: Vec<Variant> = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let bad = || {
            format!("--dwell {spec}: want NAME=exp:MEAN_S, NAME=uniform:LO_S-HI_S or NAME=fixed:S")
        };
        let (name, dist) = spec.split_once('=').with_context(bad)?;
        let (kind, args) = dist.split_once(':').with_context(bad)?;
        let num = |s: &str| -> anyhow::Result<f64> {
            let v: f64 = s.trim().parse().ok().with_context(bad)?;
            if !v.is_finite() || v < 0.0 {
                bail!("{}: seconds must be finite and not negative", bad());
            }
            Ok(v)
        };
        let dwell = match kind {
            "exp" => Dist::Exp(num(args)?),
            "fixed" => Dist::Fixed(num(args)?),
            "uniform" => {
                let (lo, hi) = args.split_once('-').with_context(bad)?;
                let (lo, hi) = (num(lo)?, num(hi)?);
                if hi < lo {
                    bail!("{}: LO above HI", bad());
                }
                Dist::Uniform(lo, hi)
            }
            _ => bail!("{}", bad()),
        };
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            bail!("{}: a name of 1–64 bytes", bad());
        }
        if out.iter().any(|v| v.name == name) {
            bail!("--dwell names variant {name} twice");
        }
        out.push(Variant {
            name: name.to_owned(),
            dwell,
        });
    }
    if out.is_empty() || out.len() > 8 {
        bail!("--dwell must name 1–8 variants");
    }
    Ok(out)
}

/// One planned visit. Offsets in simulated seconds: `begin` from the run's start, the
/// rest from `begin`.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitPlan {
    /// When the viewer joins.
    pub begin: f64,
    /// How long it stays.
    pub dwell: f64,
    /// When it drops its connection, and when it resumes on the next gateway.
    pub drop: Option<(f64, f64)>,
    /// Whether it ends with `leave` (else by closing the socket).
    pub by_leave: bool,
    /// Its comments and likes, in time order.
    pub acts: Vec<(f64, Act)>,
}

/// One viewer's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Its index (the user is `lt-<index>`).
    pub index: usize,
    /// Its variant (index into the variants).
    pub variant: usize,
    /// Its visits: one, or two when it comes back.
    pub visits: Vec<VisitPlan>,
}

/// The simulated seconds by which every viewer has gone.
pub fn horizon(r: &Retention) -> f64 {
    r.arrivals_s + r.max_dwell_s
}

/// The simulated seconds a gateway may take to notice a milestone: `--tick-ms` real.
pub fn tick_s(r: &Retention) -> f64 {
    r.tick_ms as f64 / 1000.0 * r.time_scale as f64
}

/// Viewer `i`'s plan.
pub fn script(scenario: &Scenario, r: &Retention, variants: &[Variant], i: usize) -> Script {
    let mut rng = Actions::new(scenario, i);
    let variant = i % variants.len().max(1);
    let dist = variants[variant].dwell;
    let tick = tick_s(r);
    let end_by = horizon(r);
    let begin = r.arrivals_s * rng.uniform();
    let dwell = dist.draw(&mut rng).min(r.max_dwell_s);
    // A resume leaves the visit at least 4 ticks after it: the resumed gateway learns
    // the visit's start from the store a flush after the join, then counts milestones
    // already passed at its next check.
    let room = dwell - r.away_s - 4.0 * tick;
    let drop = (in_share(i, r.resume_share) && room > 0.0).then(|| {
        let at = room * (0.2 + 0.6 * rng.uniform());
        (at, at + r.away_s)
    });
    let mut visits = vec![plan_visit(
        &mut rng,
        r,
        begin,
        dwell,
        drop,
        i.is_multiple_of(2),
    )];
    if in_share(i, r.return_share) {
        let again = begin + dwell + 10.0 + 60.0 * rng.uniform();
        let dwell = dist.draw(&mut rng).min(end_by - again);
        if dwell > 0.0 {
            visits.push(plan_visit(
                &mut rng,
                r,
                again,
                dwell,
                None,
                !i.is_multiple_of(2),
            ));
        }
    }
    Script {
        index: i,
        variant,
        visits,
    }
}

fn plan_visit(
    rng: &mut Actions,
    r: &Retention,
    begin: f64,
    dwell: f64,
    drop: Option<(f64, f64)>,
    by_leave: bool,
) -> VisitPlan {
    let kinds = (0..r.comments)
        .map(|_| Act::Comment)
        .chain((0..r.likes).map(|_| Act::Like(1)));
    let mut acts: Vec<(f64, Act)> = kinds
        .map(|act| {
            let act = match act {
                Act::Like(_) => Act::Like(1 + (rng.uniform() * 5.0) as u64),
                a => a,
            };
            // Within the first 90 % of the visit; away, the viewer acts on its return.
            let mut t = 0.9 * dwell * rng.uniform();
            if let Some((gone, back)) = drop
                && (gone..back).contains(&t)
            {
                t = back;
            }
            (t, act)
        })
        .collect();
    acts.sort_by(|a, b| a.0.total_cmp(&b.0));
    VisitPlan {
        begin,
        dwell,
        drop,
        by_leave,
        acts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention() -> Retention {
        Retention {
            viewers: 100,
            room: None,
            time_scale: 60,
            dwell: vec!["A=exp:120".into(), "B=uniform:60-600".into()],
            experiment: "retention".into(),
            arrivals_s: 240.0,
            max_dwell_s: 960.0,
            resume_share: 0.5,
            away_s: 10.0,
            return_share: 0.2,
            comments: 1,
            likes: 2,
            http_url: None,
            tick_ms: 250,
            settle_ms: 600,
        }
    }

    #[test]
    fn dwell_specs_parse_and_bad_ones_are_told() {
        let v = variants(&[
            "A=exp:120".into(),
            " B=uniform:1-2".into(),
            "C=fixed:5".into(),
        ])
        .expect("parses");
        assert_eq!(
            v.iter().map(|v| v.dwell).collect::<Vec<_>>(),
            vec![Dist::Exp(120.0), Dist::Uniform(1.0, 2.0), Dist::Fixed(5.0)]
        );
        for bad in [
            "A",
            "A=exp",
            "A=exp:x",
            "A=norm:1",
            "A=uniform:5-1",
            "=fixed:1",
        ] {
            assert!(variants(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(variants(&["A=fixed:1".into(), "A=fixed:2".into()]).is_err());
    }

    #[test]
    fn scripts_stay_within_the_horizon_and_resumes_leave_room_after_them() {
        let r = retention();
        let s = Scenario::Retention(r.clone());
        let vs = variants(&r.dwell).expect("variants");
        let scripts: Vec<Script> = (0..r.viewers).map(|i| script(&s, &r, &vs, i)).collect();
        assert_eq!(
            scripts,
            (0..r.viewers)
                .map(|i| script(&s, &r, &vs, i))
                .collect::<Vec<_>>()
        );
        let mut resumes = 0;
        for sc in &scripts {
            assert_eq!(sc.variant, sc.index % 2);
            for v in &sc.visits {
                assert!(v.begin + v.dwell <= horizon(&r) + 1e-9);
                assert_eq!(v.acts.len(), 3);
                if let Some((gone, back)) = v.drop {
                    resumes += 1;
                    assert!(back > gone && v.dwell - back >= 4.0 * tick_s(&r));
                    assert!(v.acts.iter().all(|(t, _)| !(gone..back).contains(t)));
                }
            }
        }
        assert!(resumes > 20, "{resumes}");
        let returns = scripts.iter().filter(|s| s.visits.len() == 2).count();
        assert!(returns > 0 && returns <= 20, "{returns}");
    }
}
