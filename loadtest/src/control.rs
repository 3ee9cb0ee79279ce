//! The coordinator protocol: the messages between the coordinating process and its
//! workers. An in-process worker gets them over channels; a worker process as JSON
//! lines on its stdin and stdout (see the `workers` module).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::WorkerReport;

/// Coordinator → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Start the measured phase.
    Go,
    /// Stop once each viewer has its room's final seq (or after a grace period).
    Stop(BTreeMap<String, u64>),
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// Live counters.
    Progress(Progress),
    /// Every viewer has joined or failed.
    Ready,
    /// The final measurements.
    Report(Box<WorkerReport>),
}

/// Live counters of a worker.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Joined connections.
    pub established: u64,
    /// Failed connections.
    pub failed: u64,
    /// Events delivered.
    pub delivered: u64,
    /// End-to-end p99 so far, µs.
    pub p99_us: u64,
}

/// One message as a JSON line (with its `\n`).
pub fn to_line<T: Serialize>(m: &T) -> Vec<u8> {
    // INVARIANT: these messages hold only maps with string keys, numbers and
    // strings, which serde_json always serializes.
    let mut line = serde_json::to_vec(m).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_a_json_line() {
        let stop = ToWorker::Stop(BTreeMap::from([("r-0".to_owned(), 7)]));
        let line = to_line(&stop);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: ToWorker = serde_json::from_slice(&line).expect("decodes");
        assert!(matches!(back, ToWorker::Stop(f) if f.get("r-0") == Some(&7)));
        let report = FromWorker::Report(Box::new(WorkerReport {
            established: 3,
            ..WorkerReport::default()
        }));
        let back: FromWorker = serde_json::from_slice(&to_line(&report)).expect("decodes");
        assert!(matches!(back, FromWorker::Report(r) if r.established == 3));
    }
}
