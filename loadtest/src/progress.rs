//! The live progress line on stderr, unless `--quiet`: the phase the run is in, how
//! long it has run, and the counters so far. Each phase gets a line of its own,
//! updated in place about once a second, so the terminal shows where the run is
//! and a log keeps the last state of every phase.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::control::Progress;

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(900);

/// What the line shows besides the phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// The workers' live counters, once they run.
    pub workers: Option<Progress>,
    /// Connections the scenario opens.
    pub target: u64,
    /// (published, scheduled) while publishing.
    pub published: Option<(u64, u64)>,
}

/// The progress line.
pub struct ProgressLine {
    quiet: bool,
    started: Instant,
    phase: &'static str,
    /// A line is open (printed, not yet ended).
    open: bool,
    /// Width of the last drawing, to blank what a shorter one leaves.
    width: usize,
    last_draw: Instant,
    /// (when, deliveries) at the last drawing, for the delivery rate.
    last_delivered: (Instant, u64),
}

impl ProgressLine {
    /// A line that prints nothing if `quiet`.
    pub fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self {
            quiet,
            started: now,
            phase: "",
            open: false,
            width: 0,
            last_draw: now,
            last_delivered: (now, 0),
        }
    }

    /// Starts a phase on a line of its own, drawn at once.
    pub fn phase(&mut self, name: &'static str, c: &Counters) {
        self.phase = name;
        self.end_line();
        self.draw(c);
    }

    /// Redraws the line if it was not drawn for a while.
    pub fn tick(&mut self, c: &Counters) {
        if self.last_draw.elapsed() >= REDRAW {
            self.draw(c);
        }
    }

    /// Ends the current line (before the summary).
    pub fn finish(&mut self) {
        self.end_line();
    }

    fn end_line(&mut self) {
        if self.open && !self.quiet {
            eprintln!();
        }
        self.open = false;
        self.width = 0;
    }

    fn draw(&mut self, c: &Counters) {
        let now = Instant::now();
        let delivered = c.workers.map_or(0, |p| p.delivered);
        let (then, before) = self.last_delivered;
        let secs = now.duration_since(then).as_secs_f64();
        let rate = if secs > 0.1 {
            (delivered.saturating_sub(before) as f64 / secs).round() as u64
        } else {
            0
        };
        self.last_delivered = (now, delivered);
        self.last_draw = now;
        if self.quiet {
            return;
        }
        let line = render(self.started.elapsed(), self.phase, c, rate);
        let pad = self.width.saturating_sub(line.chars().count());
        eprint!("\r{line}{:pad$}", "");
        let _ = std::io::stderr().flush();
        self.width = line.chars().count();
        self.open = true;
    }
}

/// The line's text: `[12.3 s] publishing | connections 200/200 | …`.
pub fn render(elapsed: Duration, phase: &str, c: &Counters, rate: u64) -> String {
    let mut line = format!("[{:.1} s] {phase}", elapsed.as_secs_f64());
    if let Some(p) = c.workers {
        line.push_str(&format!(" | connections {}/{}", p.established, c.target));
        if p.failed > 0 {
            line.push_str(&format!(" ({} failed)", p.failed));
        }
        line.push_str(&format!(" | deliveries {} (~{rate}/s)", p.delivered));
        if p.p99_us > 0 {
            line.push_str(&format!(" | p99 {:.1} ms", p.p99_us as f64 / 1000.0));
        }
    }
    if let Some((done, of)) = c.published {
        line.push_str(&format!(" | published {done}/{of}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_what_the_phase_has() {
        let at = Duration::from_millis(1_250);
        assert_eq!(
            render(at, "checking credentials", &Counters::default(), 0),
            "[1.2 s] checking credentials"
        );
        let c = Counters {
            workers: Some(Progress {
                established: 190,
                failed: 10,
                delivered: 4_000,
                p99_us: 3_400,
            }),
            target: 200,
            published: Some((20, 100)),
        };
        assert_eq!(
            render(at, "publishing", &c, 950),
            "[1.2 s] publishing | connections 190/200 (10 failed) | deliveries 4000 (~950/s) \
             | p99 3.4 ms | published 20/100"
        );
    }
}
