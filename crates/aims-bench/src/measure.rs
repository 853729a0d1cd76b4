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

/// How long to warm up and to measure, and how many times.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Warm-up, not measured.
    pub warmup: Duration,
    /// Measured phase of each repetition.
    pub measure: Duration,
    /// Repetitions; each operation reports its median repetition.
    pub reps: usize,
}

/// Runs several operations on this thread, alternating between them in short slices for
/// `timing.measure` each, so that slow drift in machine load (other processes, frequency
/// changes) weighs on every operation alike. Returns one measurement per operation.
pub fn run_interleaved(
    timing: Timing,
    ops: &mut [&mut dyn FnMut() -> anyhow::Result<()>],
) -> anyhow::Result<Vec<Measurement>> {
    let mut reps: Vec<Vec<Measurement>> = Vec::with_capacity(timing.reps.max(1));
    for rep in 0..timing.reps.max(1) {
        let warm = if rep == 0 {
            timing.warmup
        } else {
            Duration::ZERO
        };
        reps.push(interleaved_once(warm, timing.measure, ops)?);
    }
    // Per operation, the repetition with the median throughput.
    Ok((0..ops.len())
        .map(|i| {
            let mut runs: Vec<&Measurement> = reps.iter().map(|r| &r[i]).collect();
            runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            runs[runs.len() / 2].clone()
        })
        .collect())
}

fn interleaved_once(
    warmup: Duration,
    measure: Duration,
    ops: &mut [&mut dyn FnMut() -> anyhow::Result<()>],
) -> anyhow::Result<Vec<Measurement>> {
    const SLICE: Duration = Duration::from_millis(100);
    let timing = Timing {
        warmup,
        measure,
        reps: 1,
    };
    for op in ops.iter_mut() {
        let warm_end = Instant::now() + timing.warmup;
        while Instant::now() < warm_end {
            op()?;
        }
    }
    let mut samples: Vec<Vec<u32>> = ops.iter().map(|_| Vec::with_capacity(1 << 18)).collect();
    let mut spent = vec![Duration::ZERO; ops.len()];
    while spent.iter().any(|s| *s < timing.measure) {
        for (i, op) in ops.iter_mut().enumerate() {
            if spent[i] >= timing.measure {
                continue;
            }
            let start = Instant::now();
            let end = start + SLICE.min(timing.measure - spent[i]);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                op()?;
                samples[i].push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
            }
            spent[i] += start.elapsed();
        }
    }
    Ok(samples
        .into_iter()
        .zip(spent)
        .map(|(s, t)| summarize(s, t.as_secs_f64()))
        .collect())
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
