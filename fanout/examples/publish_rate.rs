//! Publishes per second through the publisher library into one Redis (or shards):
//!
//! ```text
//! cargo run --release -p danmaku-fanout --example publish_rate -- redis://127.0.0.1:6379 [tasks] [seconds] [rooms]
//! ```
//! Each task publishes back to back (one script call per event: seq, stream append,
//! idempotency-free publish); the figure is events sequenced per second.
use std::time::{Duration, Instant};

use danmaku_fanout::redis::{Publisher, RedisConfig};
use danmaku_protocol::{EventKind, RoomId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls: Vec<String> = args
        .first()
        .map_or("redis://127.0.0.1:6379", String::as_str)
        .split(',')
        .map(String::from)
        .collect();
    let tasks: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let rooms: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let publisher = Publisher::connect(RedisConfig {
        urls,
        ..RedisConfig::default()
    })
    .await?;
    let kind = EventKind::new("bench")?;
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(80));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (publisher, kind, data) = (publisher.clone(), kind.clone(), data.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let room =
                    RoomId::new(&format!("rate-{}", (t + n as usize) % rooms)).expect("room");
                if publisher.publish(&room, &kind, &data, None).await.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} events in {secs:.1} s: {:.0} publishes/s ({tasks} tasks, {rooms} rooms)",
        total as f64 / secs
    );
    Ok(())
}
