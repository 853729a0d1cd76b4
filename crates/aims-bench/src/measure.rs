//! Timing loops: run an operation for a fixed time after a warm-up and record every latency.

use std::time::{Duration, Instant};

/// Throughput and latency of one measured operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the measured phase.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: f64,
    /// Latency histogram: (upper bound µs, count), for charts.
    pub histogram: Vec<(f64, u64)>,
}

/// How long to warm up and to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Warm-up, not measured.
    pub warmup: Duration,
    /// Measured phase.
    pub measure: Duration,
}

/// Runs `op` on this thread (one core) for `timing`, recording each call's latency.
pub fn run_loop(
    timing: Timing,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Measurement> {
    let warm_end = Instant::now() + timing.warmup;
    while Instant::now() < warm_end {
        op()?;
    }
    let mut samples: Vec<u32> = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let end = start + timing.measure;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        op()?;
        let ns = t.elapsed().as_nanos();
        samples.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(summarize(samples, seconds))
}

/// Summarizes latency samples (nanoseconds) taken over `seconds`.
pub fn summarize(mut samples: Vec<u32>, seconds: f64) -> Measurement {
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
        f64::from(samples[idx.min(samples.len() - 1)]) / 1000.0
    };
    let ops = samples.len() as u64;
    Measurement {
        ops,
        seconds,
        ops_per_sec: ops as f64 / seconds.max(1e-9),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        histogram: histogram(&samples),
    }
}

/// A log-scale histogram of sorted nanosecond samples: 4 buckets per power of two.
fn histogram(sorted: &[u32]) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = Vec::new();
    let mut bound = 1.0f64; // µs
    let mut i = 0;
    while i < sorted.len() {
        let limit_ns = (bound * 1000.0) as u64;
        let start = i;
        while i < sorted.len() && u64::from(sorted[i]) <= limit_ns {
            i += 1;
        }
        if i > start || !out.is_empty() {
            out.push((bound, (i - start) as u64));
        }
        bound *= 2f64.powf(0.25);
    }
    out
}
