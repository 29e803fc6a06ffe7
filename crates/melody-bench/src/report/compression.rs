//! The "Compression" section: melody (and Node `ws`, when measured) with permessage-deflate
//! off and on, side by side, and whether the two targets are met.
//!
//! Results: `<server>-<scenario>.json` for the uncompressed scenario and
//! `<server>-<scenario>-deflate.json` for the compressed one (the same load, subscribers
//! offering permessage-deflate).

use std::fmt::Write as _;
use std::path::Path;

use super::rows::{Better, Unit};
use super::{format_value, load};

/// The fan-out scenarios compared: label and the uncompressed scenario's file name.
const FANOUTS: [(&str, &str); 2] = [
    ("fan-out 1,000 subs × 4 KiB JSON", "fanout-1k-json4k"),
    ("fan-out 1,000 subs × 64 B JSON", "fanout-1k-json64"),
];

/// The figures shown for each fan-out scenario.
const FANOUT_FIGURES: [(&str, &str, Unit, Better); 6] = [
    (
        "deliveries/s",
        "/deliveries_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    (
        "server CPU",
        "/cpu/server_cpu_pct",
        Unit::Percent,
        Better::Lower,
    ),
    (
        "server CPU per delivery",
        "/server_cpu_us_per_delivery",
        Unit::MicrosFine,
        Better::Lower,
    ),
    (
        "bytes on the wire per delivery",
        "/wire_bytes_per_delivery",
        Unit::Bytes,
        Better::Lower,
    ),
    ("lost deliveries", "/lost", Unit::Count, Better::Lower),
    (
        "generator CPU",
        "/cpu/generator_cpu_pct",
        Unit::Percent,
        Better::Lower,
    ),
];

/// Server CPU per delivery, compressed ÷ uncompressed, for 4 KiB JSON: at most this.
const CPU_TARGET: f64 = 1.5;
/// RSS per idle session, compressed − uncompressed: at most this many bytes.
const IDLE_TARGET: f64 = 1024.0;

/// Every scenario file the section reads (without the `-deflate` twins), for the report's
/// check of other load.
pub(super) const SCENARIOS: [&str; 3] = ["fanout-1k-json4k", "fanout-1k-json64", "idle"];

fn figure(dir: &Path, server: &str, scenario: &str, pointer: &str) -> Option<f64> {
    load(dir, server, scenario).and_then(|v| v.pointer(pointer)?.as_f64())
}

/// Appends the section to `md`.
pub(super) fn section(dir: &Path, md: &mut String) {
    let _ = writeln!(md, "## Compression (permessage-deflate)\n");
    let _ = writeln!(
        md,
        "The same load with subscribers that do not offer permessage-deflate (uncompressed, \
         `--raw`) and with subscribers that offer it as a browser does (`--deflate`: \
         `permessage-deflate; client_max_window_bits`), both read by the generator's own \
         client, against melody's `chat` example \
         (`Compression::shared()`: a broadcast is compressed once, level 1, and the one frame \
         goes to every session; messages under 256 bytes go uncompressed) with its message \
         limit raised for 4 KiB messages. Messages are JSON-like chat events (`--payload \
         json`). **node ws** runs `perMessageDeflate` with the same negotiation (no context \
         takeover, level 1, threshold 256), compressing per recipient. The generator inflates \
         each distinct broadcast once (identical payloads are compared byte for byte, not \
         inflated again). Ratio = compressed ÷ uncompressed.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | melody uncompressed | melody compressed | ratio | node ws uncompressed | \
         node ws compressed |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for (label, scenario) in FANOUTS {
        let deflate = format!("{scenario}-deflate");
        for (what, pointer, unit, better) in FANOUT_FIGURES {
            row(
                dir,
                md,
                &format!("{label}: {what}"),
                [scenario, &deflate],
                pointer,
                unit,
                better,
            );
        }
    }
    row(
        dir,
        md,
        "idle: server RSS per connection",
        ["idle", "idle-deflate"],
        "/bytes_per_connection",
        Unit::KiB,
        Better::Lower,
    );
    let _ = writeln!(md);
    targets(dir, md);
}

fn row(
    dir: &Path,
    md: &mut String,
    label: &str,
    scenarios: [&str; 2],
    pointer: &str,
    unit: Unit,
    better: Better,
) {
    let cell = |server: &str, scenario: &str| {
        figure(dir, server, scenario, pointer)
            .map_or_else(|| "—".to_owned(), |v| format_value(v, unit))
    };
    let ratio = match (
        figure(dir, "melody", scenarios[0], pointer),
        figure(dir, "melody", scenarios[1], pointer),
    ) {
        (Some(off), Some(on)) if off != 0.0 => format!("{:.2}", on / off),
        (Some(off), Some(on)) if off == on => "=".to_owned(),
        _ => "—".to_owned(),
    };
    let arrow = match better {
        Better::Higher => "↑",
        Better::Lower => "↓",
    };
    let _ = writeln!(
        md,
        "| {label} {arrow} | {} | {} | {ratio} | {} | {} |",
        cell("melody", scenarios[0]),
        cell("melody", scenarios[1]),
        cell("node", scenarios[0]),
        cell("node", scenarios[1]),
    );
}

/// The targets, met or not, from melody's figures.
fn targets(dir: &Path, md: &mut String) {
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let cpu = |s: &str| figure(dir, "melody", s, "/server_cpu_us_per_delivery");
    match (cpu("fanout-1k-json4k"), cpu("fanout-1k-json4k-deflate")) {
        (Some(off), Some(on)) if off > 0.0 => {
            let ratio = on / off;
            let _ = writeln!(
                md,
                "- Target: fan-out of 4 KiB JSON to 1,000 subscribers, compressed, costs at most \
                 {CPU_TARGET}× the server CPU per delivery of the uncompressed run: {on:.3} µs ÷ \
                 {off:.3} µs = {ratio:.2}×, {}.",
                verdict(ratio <= CPU_TARGET)
            );
        }
        _ => {
            let _ = writeln!(md, "- Target (CPU per delivery): not measured.");
        }
    }
    let rss = |s: &str| figure(dir, "melody", s, "/bytes_per_connection");
    match (rss("idle"), rss("idle-deflate")) {
        (Some(off), Some(on)) => {
            let extra = on - off;
            let _ = writeln!(
                md,
                "- Target: an idle compressing session costs at most 1 KiB more than an \
                 uncompressed one: {} − {} = {:+.1} KiB, {}.",
                format_value(on, Unit::KiB),
                format_value(off, Unit::KiB),
                extra / 1024.0,
                verdict(extra <= IDLE_TARGET)
            );
        }
        _ => {
            let _ = writeln!(md, "- Target (idle RSS): not measured.");
        }
    }
    if let Some(ratio) = figure(
        dir,
        "melody",
        "fanout-1k-json4k-deflate",
        "/compression_ratio",
    ) {
        let _ = writeln!(
            md,
            "- The 4 KiB JSON messages compressed {ratio:.2}× (message bytes ÷ payload bytes \
             received)."
        );
    }
    let busy: Vec<String> = FANOUTS
        .iter()
        .flat_map(|(_, s)| [s.to_string(), format!("{s}-deflate")])
        .filter(|s| figure(dir, "melody", s, "/cpu/generator_cpu_pct").is_some_and(|g| g >= 90.0))
        .collect();
    if !busy.is_empty() {
        let _ = writeln!(
            md,
            "- The generator used 90% of its core or more in {}: deliveries/s there may be \
             the generator's limit as much as the server's (see the server CPU row); CPU per \
             delivery is the figure to compare.",
            busy.join(", ")
        );
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_judged_from_melodys_figures() {
        let dir =
            std::env::temp_dir().join(format!("melody-bench-compress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let put = |name: &str, json: &str| std::fs::write(dir.join(name), json).unwrap();
        put(
            "melody-fanout-1k-json4k.json",
            r#"{"deliveries_per_sec": 800000.0, "server_cpu_us_per_delivery": 1.0,
                "wire_bytes_per_delivery": 4096.0, "cpu": {"generator_cpu_pct": 97.0}}"#,
        );
        put(
            "melody-fanout-1k-json4k-deflate.json",
            r#"{"deliveries_per_sec": 1000000.0, "server_cpu_us_per_delivery": 0.6,
                "wire_bytes_per_delivery": 1236.4, "compression_ratio": 3.31}"#,
        );
        put("melody-idle.json", r#"{"bytes_per_connection": 3072.0}"#);
        put(
            "melody-idle-deflate.json",
            r#"{"bytes_per_connection": 4608.0}"#,
        );
        let mut md = String::new();
        section(&dir, &mut md);
        assert!(
            md.contains(
                "| fan-out 1,000 subs × 4 KiB JSON: deliveries/s ↑ | 800,000 | 1,000,000 | 1.25 | — | — |"
            ),
            "{md}"
        );
        assert!(md.contains("| 4,096 B | 1,236 B | 0.30 |"), "{md}");
        assert!(md.contains("0.600 µs ÷ 1.000 µs = 0.60×, met."), "{md}");
        assert!(md.contains("= +1.5 KiB, **not met**."), "{md}");
        assert!(md.contains("compressed 3.31×"), "{md}");
        assert!(
            md.contains("90% of its core or more in fanout-1k-json4k:"),
            "{md}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
