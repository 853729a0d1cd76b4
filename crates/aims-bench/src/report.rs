//! Results: a table on screen, JSON on disk, and an SVG chart per scenario.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::measure::Measurement;

/// One measured row of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub label: String,
    /// Whether this row is a baseline for the others.
    pub baseline: bool,
    /// The measurement.
    pub m: Measurement,
    /// Ratio to a baseline, with the baseline's label.
    pub ratio: Option<(f64, String)>,
    /// The target ratio, if the issue names one.
    pub target: Option<f64>,
}

impl Row {
    /// A baseline row.
    pub fn baseline(label: &str, m: Measurement) -> Self {
        Self {
            label: label.into(),
            baseline: true,
            m,
            ratio: None,
            target: None,
        }
    }

    /// A row of event latencies, compared with nothing (its ops/s is no throughput).
    pub fn latency(label: &str, m: Measurement) -> Self {
        Self {
            label: label.into(),
            baseline: false,
            m,
            ratio: None,
            target: None,
        }
    }

    /// A row compared with a baseline throughput.
    pub fn against(
        label: &str,
        m: Measurement,
        base_label: &str,
        base_ops: f64,
        target: Option<f64>,
    ) -> Self {
        let ratio = m.ops_per_sec / base_ops.max(1e-9);
        Self {
            label: label.into(),
            baseline: false,
            m,
            ratio: Some((ratio, base_label.into())),
            target,
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// One-line description.
    pub description: String,
    /// Measured rows.
    pub rows: Vec<Row>,
    /// Notes on method and caveats.
    pub notes: Vec<String>,
}

/// The machine a run was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Kernel.
    pub kernel: String,
    /// When.
    pub date: String,
}

impl Machine {
    /// Reads the current machine.
    pub fn current() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel,
            date,
        }
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.1}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

/// The report as a text table.
pub fn table(r: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n== {} — {}", r.scenario, r.description);
    let _ = writeln!(
        out,
        "{:<44} {:>10} {:>9} {:>9} {:>9}  ratio (target)",
        "", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for row in &r.rows {
        let ratio = match (&row.ratio, row.target) {
            (Some((x, base)), Some(t)) => format!(
                "{x:.2} of {base} (≥ {t:.2}) {}",
                if *x >= t { "✔" } else { "✘" }
            ),
            (Some((x, base)), None) => format!("{x:.2} of {base}"),
            (None, _) => {
                if row.baseline {
                    "baseline".into()
                } else {
                    String::new()
                }
            }
        };
        let _ = writeln!(
            out,
            "{:<44} {:>10} {:>9.1} {:>9.1} {:>9.1}  {}",
            row.label,
            fmt_rate(row.m.ops_per_sec),
            row.m.p50_us,
            row.m.p99_us,
            row.m.p999_us,
            ratio
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    out
}

/// Writes `<dir>/<scenario>.json` and `<dir>/<scenario>.svg`.
pub fn write(
    dir: &Path,
    machine: &Machine,
    command: &str,
    r: &ScenarioReport,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "machine": machine, "command": command, "report": r });
    std::fs::write(
        dir.join(format!("{}.json", r.scenario)),
        serde_json::to_vec_pretty(&json)?,
    )?;
    std::fs::write(dir.join(format!("{}.svg", r.scenario)), svg(r))?;
    Ok(())
}

const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Two panels: throughput bars (baselines hatched grey) and latency distributions on a log axis.
pub fn svg(r: &ScenarioReport) -> String {
    let (w, h) = (960.0f64, 420.0f64);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="18" font-size="14" font-weight="bold">{} — {}</text>"#,
        esc(&r.scenario),
        esc(&r.description)
    );

    // Left: throughput.
    let (x0, y0, pw, ph) = (20.0, 40.0, 440.0, 340.0);
    let max = r.rows.iter().map(|x| x.m.ops_per_sec).fold(1.0, f64::max);
    let bar_h = (ph / r.rows.len().max(1) as f64).min(40.0);
    let _ = write!(
        s,
        r#"<text x="{x0}" y="{}">throughput (ops/s, one core)</text>"#,
        y0 - 6.0
    );
    for (i, row) in r.rows.iter().enumerate() {
        let y = y0 + i as f64 * bar_h;
        let len = (row.m.ops_per_sec / max) * (pw - 150.0);
        let color = if row.baseline {
            "#bbbbbb"
        } else {
            COLORS[i % COLORS.len()]
        };
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="{len:.1}" height="{:.1}" fill="{color}"/>"#,
            x0 + 150.0,
            y + 2.0,
            bar_h - 6.0
        );
        let _ = write!(
            s,
            r#"<text x="{x0}" y="{:.1}">{}</text>"#,
            y + bar_h / 2.0 + 3.0,
            esc(&row.label.chars().take(26).collect::<String>())
        );
        let tag = match &row.ratio {
            Some((x, _)) => format!("{} ({x:.2}×)", fmt_rate(row.m.ops_per_sec)),
            None => fmt_rate(row.m.ops_per_sec),
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{tag}</text>"#,
            x0 + 154.0 + len,
            y + bar_h / 2.0 + 3.0
        );
    }

    // Right: latency distribution, log2 x axis.
    let (lx, ly, lw, lh) = (500.0, 40.0, 440.0, 320.0);
    let _ = write!(
        s,
        r#"<text x="{lx}" y="{}">latency distribution (µs, log scale)</text>"#,
        ly - 6.0
    );
    let _ = write!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" fill="none" stroke="#999"/>"##
    );
    let (min_b, max_b) = r
        .rows
        .iter()
        .flat_map(|x| x.m.histogram.iter().map(|b| b.0))
        .fold((f64::MAX, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let min_b = if min_b == f64::MAX { 1.0 } else { min_b };
    let span = (max_b.log2() - min_b.log2()).max(1.0);
    let px = |us: f64| lx + (us.log2() - min_b.log2()) / span * lw;
    for exp in (min_b.log2().floor() as i32)..=(max_b.log2().ceil() as i32) {
        let us = 2f64.powi(exp);
        if us < min_b || us > max_b {
            continue;
        }
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{ly}" x2="{0:.1}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
            px(us),
            ly + lh,
            ly + lh + 12.0,
            if us >= 1000.0 {
                format!("{}ms", us / 1000.0)
            } else {
                format!("{us}")
            }
        );
    }
    for (i, row) in r.rows.iter().enumerate() {
        let total: u64 = row.m.histogram.iter().map(|b| b.1).sum::<u64>().max(1);
        let peak = row
            .m
            .histogram
            .iter()
            .map(|b| b.1)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let pts: Vec<String> = row
            .m
            .histogram
            .iter()
            .map(|(b, c)| {
                format!(
                    "{:.1},{:.1}",
                    px(*b),
                    ly + lh - (*c as f64 / peak) * (lh - 20.0)
                )
            })
            .collect();
        let color = if row.baseline {
            "#888888"
        } else {
            COLORS[i % COLORS.len()]
        };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">{} (n={total})</text>"#,
            lx + 6.0,
            ly + 14.0 + i as f64 * 13.0,
            esc(&row.label)
        );
    }
    s.push_str("</svg>\n");
    s
}
