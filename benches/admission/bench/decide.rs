//! The decision alone, in process: `Engine::review` on each matrix body, one review
//! after the other on one thread, caches warm, no HTTP, no TLS and no log subscriber.
//! What a review costs vulngate beyond the stack the baseline measures.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::Result;
use super::cold::{SlowScanner, engine};
use super::setup::Files;

#[derive(Debug, Clone)]
pub struct DecideRow {
    pub containers: usize,
    pub body_bytes: usize,
    pub micros_per_review: f64,
    /// Of which: decoding the review alone.
    pub micros_per_decode: f64,
}

pub async fn run(files: &Files, iterations: usize) -> Result<Vec<DecideRow>> {
    let engine = engine(
        files,
        Arc::new(SlowScanner {
            latency: Duration::ZERO,
            calls: Arc::new(AtomicU64::new(0)),
            last_call: Arc::default(),
        }),
    )?;
    let mut rows = Vec::new();
    for (containers, body) in &files.bodies {
        // Warm: the summaries, parsed references and the namespace's policy cached.
        for _ in 0..100 {
            engine.review(body, None).await?;
        }
        let started = Instant::now();
        for _ in 0..iterations {
            let answer = engine.review(body, None).await?;
            if !answer.windows(14).any(|w| w == b"\"allowed\":true") {
                return Err("the decision benchmark's review was not allowed".into());
            }
        }
        let micros_per_review = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(vulngate::admission::decode(std::hint::black_box(body))?);
        }
        rows.push(DecideRow {
            containers: *containers,
            body_bytes: body.len(),
            micros_per_review,
            micros_per_decode: started.elapsed().as_secs_f64() * 1e6 / iterations as f64,
        });
    }
    Ok(rows)
}
