//! SVG charts of a `bench/compare.sh` run, drawn from the same JSON as the tables: grouped bars,
//! one group per scenario (or percentile), one bar per server. Plain SVG with no script and no
//! external font, so that GitHub and any browser show them as they are.

use std::{fmt::Write as _, io, path::Path};

use super::{SERVERS, load};

/// One chart: which figure of which scenarios, and how to show it.
struct Chart {
    file: &'static str,
    title: &'static str,
    /// The value axis' label.
    unit: &'static str,
    /// The groups: label, scenario, JSON pointer.
    groups: &'static [(&'static str, &'static str, &'static str)],
    /// What a JSON value is multiplied by to be in `unit`.
    scale: f64,
    lower_is_better: bool,
}

const CHARTS: [Chart; 4] = [
    Chart {
        file: "bench-fanout-cpu.svg",
        title: "Fan-out: server CPU per delivery",
        unit: "ns per delivery",
        groups: &[
            (
                "1,000 subscribers",
                "fanout-1k",
                "/server_cpu_us_per_delivery",
            ),
            (
                "10,000 subscribers",
                "fanout-10k",
                "/server_cpu_us_per_delivery",
            ),
        ],
        scale: 1000.0,
        lower_is_better: true,
    },
    Chart {
        file: "bench-fanout-throughput.svg",
        title: "Fan-out of 64-byte messages: deliveries per second",
        unit: "million deliveries/s",
        groups: &[
            ("1,000 subscribers", "fanout-1k", "/deliveries_per_sec"),
            ("10,000 subscribers", "fanout-10k", "/deliveries_per_sec"),
        ],
        scale: 1e-6,
        lower_is_better: false,
    },
    Chart {
        file: "bench-latency.svg",
        title: "Latency, 10,000 subscribers at 20 messages/s",
        unit: "ms",
        groups: &[
            ("p50", "fanout-rate", "/latency/p50_us"),
            ("p99", "fanout-rate", "/latency/p99_us"),
            ("p99.9", "fanout-rate", "/latency/p999_us"),
        ],
        scale: 1e-3,
        lower_is_better: true,
    },
    Chart {
        file: "bench-idle-memory.svg",
        title: "Memory per idle connection (RSS)",
        unit: "KiB per connection",
        groups: &[("idle connections", "idle", "/bytes_per_connection")],
        scale: 1.0 / 1024.0,
        lower_is_better: true,
    },
];

/// One colour per server, in [`SERVERS`] order.
const COLOURS: [&str; 4] = ["#d9480f", "#868e96", "#1c7ed6", "#37b24d"];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 70.0;

/// Writes every chart whose figures the run has into `out_dir`; the files written.
///
/// # Errors
///
/// When `out_dir` cannot be created or a chart cannot be written.
pub fn write(dir: &Path, out_dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    for chart in &CHARTS {
        let values: Vec<Vec<Option<f64>>> = chart
            .groups
            .iter()
            .map(|(_, scenario, pointer)| {
                SERVERS
                    .iter()
                    .map(|(server, _)| {
                        let value = load(dir, server, scenario)?.pointer(pointer)?.as_f64()?;
                        Some(value * chart.scale)
                    })
                    .collect()
            })
            .collect();
        if values.iter().flatten().all(Option::is_none) {
            continue;
        }
        std::fs::write(out_dir.join(chart.file), svg(chart, &values))?;
        written.push(chart.file.to_owned());
    }
    Ok(written)
}

/// The chart as SVG: `values[group][server]`.
fn svg(chart: &Chart, values: &[Vec<Option<f64>>]) -> String {
    let max = |values: &mut dyn Iterator<Item = f64>| values.fold(0.0_f64, f64::max);
    let all = max(&mut values.iter().flatten().flatten().copied());
    // Node's `ws` is often ten or more times the others: its bars are cut rather than the
    // others flattened to nothing.
    let others = max(&mut values
        .iter()
        .flat_map(|row| row.iter().take(3))
        .flatten()
        .copied());
    let top = if others > 0.0 && all > 3.0 * others {
        nice_ceiling(others * 1.15)
    } else {
        nice_ceiling(all)
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let better = if chart.lower_is_better {
        "lower is better"
    } else {
        "higher is better"
    };
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(chart.title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">{} ({better})</text>"##,
        escape(chart.unit)
    );
    // Grid lines and their values.
    for step in 0..=4 {
        let v = top * f64::from(step) / 4.0;
        let at = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#e9ecef"/>"##,
            WIDTH - RIGHT
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            LEFT - 6.0,
            at + 4.0,
            number(v)
        );
    }
    let group_w = plot_w / values.len() as f64;
    let bar_w = (group_w * 0.8 / SERVERS.len() as f64).min(48.0);
    for (g, (group, row)) in chart.groups.iter().zip(values).enumerate() {
        let start = LEFT + group_w * g as f64 + (group_w - bar_w * SERVERS.len() as f64) / 2.0;
        for (s, value) in row.iter().enumerate() {
            let x = start + bar_w * s as f64;
            let Some(value) = value else {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#999">—</text>"##,
                    x + bar_w / 2.0,
                    y(0.0) - 4.0
                );
                continue;
            };
            let cut = *value > top;
            let shown = value.min(top);
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x + 2.0,
                y(shown),
                bar_w - 4.0,
                y(0.0) - y(shown),
                COLOURS[s],
                SERVERS[s].1,
                number(*value)
            );
            if cut {
                // A white zigzag across the bar: it goes on beyond the axis.
                let _ = writeln!(
                    out,
                    r#"<path d="M{:.1} {:.1} l{:.1} -6 l{:.1} 6 l{:.1} -6" stroke="white" stroke-width="3" fill="none"/>"#,
                    x + 2.0,
                    y(top) + 14.0,
                    (bar_w - 4.0) / 3.0,
                    (bar_w - 4.0) / 3.0,
                    (bar_w - 4.0) / 3.0
                );
            }
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                x + bar_w / 2.0,
                y(shown) - 4.0,
                number(*value)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + group_w * (g as f64 + 0.5),
            y(0.0) + 18.0,
            escape(group.0)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        WIDTH - RIGHT,
        y(0.0),
        y(0.0)
    );
    // The legend, one entry per server.
    let legend_y = HEIGHT - 18.0;
    for (s, (_, name)) in SERVERS.iter().enumerate() {
        let x = LEFT + 150.0 * s as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/>"#,
            legend_y - 10.0,
            COLOURS[s]
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{legend_y}">{}</text>"#,
            x + 18.0,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `max` (the axis' top).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&top| top >= max)
        .unwrap_or(10.0 * magnitude)
}

/// A value with three significant digits at most.
fn number(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(863.0), 1000.0);
        assert_eq!(nice_ceiling(243.0), 250.0);
        assert_eq!(nice_ceiling(4.1), 5.0);
        assert_eq!(nice_ceiling(0.18), 0.2);
        assert_eq!(number(3.0 * 1024.0 / 1024.0), "3.00");
        assert_eq!(number(1093.4), "1093");
    }

    #[test]
    fn a_chart_has_a_bar_per_measured_server_and_a_dash_per_missing_one() {
        let values = vec![
            vec![Some(243.0), Some(300.0), Some(186.0), None],
            vec![Some(863.0), None, Some(1093.0), Some(5546.0)],
        ];
        let svg = svg(&CHARTS[0], &values);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 6);
        assert_eq!(svg.matches(">—</text>").count(), 2);
        assert!(svg.contains("uWebSockets.js: 186"));
    }
}
