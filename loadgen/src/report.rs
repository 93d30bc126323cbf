//! Output: a human table or one JSON object per run, comparisons against the baseline, and the
//! markdown tables `scripts/bench.sh` builds from collected JSON lines.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{Value, json};

use crate::stats::Summary;

/// What every scenario's result can do.
pub trait Report: Serialize {
    /// A human-readable table.
    fn table(&self) -> String;
    /// True when the run counted no error, lost, duplicated or misrouted message.
    fn clean(&self) -> bool;
}

/// How a run ended, as a process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with nothing counted against it.
    Clean,
    /// Completed, but counted errors, losses, duplicates or misroutes.
    Dirty,
    /// Could not run.
    Failed,
}

impl Outcome {
    /// Clean or dirty according to `clean`.
    pub fn from_clean(clean: bool) -> Self {
        if clean {
            Outcome::Clean
        } else {
            Outcome::Dirty
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::Dirty => ExitCode::from(2),
        }
    }
}

/// Prints one run.
pub fn emit<R: Report>(json: bool, report: &R) -> Outcome {
    if json {
        println!("{}", to_json(report));
    } else {
        print!("{}", report.table());
    }
    Outcome::from_clean(report.clean())
}

/// Prints a run against the target next to the same run against the baseline, with the ratios
/// `target / baseline` of the named numeric fields.
pub fn emit_comparison<R: Report>(
    json: bool,
    scenario: &str,
    target: &R,
    baseline: &R,
    fields: &[&str],
) -> Outcome {
    let (target_value, baseline_value) = (to_value(target), to_value(baseline));
    let ratio: serde_json::Map<String, Value> = fields
        .iter()
        .map(|field| {
            let ratio = match (
                number_at(&target_value, field),
                number_at(&baseline_value, field),
            ) {
                (Some(t), Some(b)) if b != 0.0 => json!(t / b),
                _ => Value::Null,
            };
            ((*field).to_owned(), ratio)
        })
        .collect();
    if json {
        let combined = json!({
            "scenario": scenario,
            "target": target_value,
            "baseline": baseline_value,
            "ratio": ratio,
        });
        println!("{combined}");
    } else {
        print!("{}{}", baseline.table(), target.table());
        println!(
            "  ratio {} / {}:",
            label_of(&target_value),
            label_of(&baseline_value)
        );
        for (field, value) in &ratio {
            println!(
                "    {field:<24} {}",
                value
                    .as_f64()
                    .map_or("n/a".to_owned(), |r| format!("{r:.3}"))
            );
        }
    }
    Outcome::from_clean(target.clean() && baseline.clean())
}

/// Rows `name  p50  p99  p99.9  max  count` in microseconds.
pub fn latency_table<'a>(rows: impl Iterator<Item = (&'a str, &'a Summary)>) -> String {
    let mut out = format!(
        "  {:<16} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "latency (µs)", "p50", "p99", "p99.9", "max", "count"
    );
    for (name, s) in rows {
        let _ = writeln!(
            out,
            "  {name:<16} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            s.p50_us, s.p99_us, s.p999_us, s.max_us, s.count
        );
    }
    out
}

fn to_value<R: Serialize>(report: &R) -> Value {
    serde_json::to_value(report)
        .unwrap_or_else(|e| json!({ "error": format!("unserializable report: {e}") }))
}

fn to_json<R: Serialize>(report: &R) -> String {
    to_value(report).to_string()
}

/// A number at a `/`-separated path, e.g. `latency/p99_us`.
fn number_at(value: &Value, path: &str) -> Option<f64> {
    path.split('/')
        .try_fold(value, |v, key| v.get(key))?
        .as_f64()
}

fn label_of(value: &Value) -> &str {
    value.get("label").and_then(Value::as_str).unwrap_or("?")
}

/// Markdown tables, one per scenario, from `--json` outputs (single runs or comparisons).
pub fn markdown(lines: &str) -> String {
    let mut pairing = Vec::new();
    let mut relay = Vec::new();
    let mut broadcast = Vec::new();
    let mut connections = Vec::new();
    let mut servers = Vec::new();
    let mut redis = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // A comparison contributes its baseline row, then the target row with the ratios.
        let runs: Vec<(Value, Option<&Value>)> = match value.get("target") {
            Some(target) => vec![
                (value["baseline"].clone(), None),
                (target.clone(), value.get("ratio")),
            ],
            None => vec![(value.clone(), None)],
        };
        for (run, ratio) in runs {
            if run.get("redis").is_some() {
                redis.push(redis_row(&run));
            }
            match run.get("scenario").and_then(Value::as_str) {
                Some("pairing") => pairing.push(pairing_row(&run, ratio)),
                Some("relay") => relay.push(relay_row(&run, ratio)),
                Some("broadcast") => broadcast.push(broadcast_row(&run, ratio)),
                Some("connections") => connections.push(connections_row(&run, ratio)),
                Some("server") => servers.push(server_row(&run)),
                _ => {}
            }
        }
    }
    let mut out = String::new();
    if !servers.is_empty() {
        out += "### fresh server\n\n| server | start-up to first answered request | idle RSS |\n|---|---:|---:|\n";
        out += &servers.concat();
        out += "\n";
    }
    if !pairing.is_empty() {
        out += "### pairing\n\n| server | concurrency | rate | s | pairings/s | vs baseline | errors | create p50/p99 µs | check(204) p50/p99 µs | accept p50/p99 µs | check(200) p50/p99 µs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        out += &pairing.concat();
        out += "\n";
    }
    if !relay.is_empty() {
        out += "### relay\n\n| server | rooms | rate (msg/s) | size (B) | window | s | delivered/s | vs baseline | p50 µs | p99 µs | p99.9 µs | p99 vs baseline | lost | duplicated | misrouted | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        out += &relay.concat();
        out += "\n";
    }
    if !broadcast.is_empty() {
        out += "### broadcast\n\n| server | rooms | members | rate (msg/s sent) | size (B) | window | s | sent/s | delivered/s | vs baseline | p50 µs | p99 µs | p99.9 µs | p99 vs baseline | lost | duplicated | misrouted | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        out += &broadcast.concat();
        out += "\n";
    }
    if !connections.is_empty() {
        out += "### connections\n\n| server | requested | established | server RSS before | server RSS after | bytes/connection | vs baseline | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
        out += &connections.concat();
        out += "\n";
    }
    if !redis.is_empty() {
        out += "### Redis work per operation\n\n| scenario | run | server | operations | per | commands/op | scripts/op | Redis CPU µs/op | Redis memory B/op |\n|---|---|---|---:|---|---:|---:|---:|---:|\n";
        out += &redis.concat();
        out += "\n";
    }
    out
}

fn num(value: &Value, path: &str, decimals: usize) -> String {
    number_at(value, path).map_or("–".to_owned(), |n| format!("{n:.decimals$}"))
}

fn ratio_cell(ratio: Option<&Value>, field: &str) -> String {
    // Ratio keys are the compared fields' paths, stored whole (`latency/p99_us`).
    let value = ratio.and_then(|r| r.get(field)).and_then(Value::as_f64);
    value.map_or(String::new(), |r| format!("{r:.3}"))
}

fn pairing_row(run: &Value, ratio: Option<&Value>) -> String {
    let pair = |step: &str| {
        format!(
            "{} / {}",
            num(run, &format!("latency/{step}/p50_us"), 0),
            num(run, &format!("latency/{step}/p99_us"), 0)
        )
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        label_of(run),
        num(run, "concurrency", 0),
        rate_cell(run),
        num(run, "duration_s", 1),
        num(run, "pairings_per_sec", 0),
        ratio_cell(ratio, "pairings_per_sec"),
        num(run, "errors", 0),
        pair("create"),
        pair("check_pending"),
        pair("accept"),
        pair("check_accepted"),
    )
}

fn rate_cell(run: &Value) -> String {
    match number_at(run, "rate") {
        Some(rate) if rate > 0.0 => format!("{rate:.0}"),
        _ => "max".to_owned(),
    }
}

fn size_cell(run: &Value) -> String {
    match run.get("size") {
        Some(Value::Number(n)) => n.to_string(),
        _ => "mixed".to_owned(),
    }
}

fn relay_row(run: &Value, ratio: Option<&Value>) -> String {
    let size = size_cell(run);
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        label_of(run),
        num(run, "rooms", 0),
        rate_cell(run),
        size,
        num(run, "window", 0),
        num(run, "duration_s", 1),
        num(run, "delivered_per_sec", 0),
        ratio_cell(ratio, "delivered_per_sec"),
        num(run, "latency/p50_us", 0),
        num(run, "latency/p99_us", 0),
        num(run, "latency/p999_us", 0),
        ratio_cell(ratio, "latency/p99_us"),
        num(run, "lost", 0),
        num(run, "duplicated", 0),
        num(run, "misrouted", 0),
        num(run, "errors", 0),
    )
}

/// Like a relay row, with the room size, and the senders' rate next to the receipts'.
fn broadcast_row(run: &Value, ratio: Option<&Value>) -> String {
    let sent_per_sec = match (number_at(run, "sent"), number_at(run, "duration_s")) {
        (Some(sent), Some(s)) if s > 0.0 => format!("{:.0}", sent / s),
        _ => "–".to_owned(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {sent_per_sec} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        label_of(run),
        num(run, "rooms", 0),
        num(run, "members", 0),
        rate_cell(run),
        size_cell(run),
        num(run, "window", 0),
        num(run, "duration_s", 1),
        num(run, "delivered_per_sec", 0),
        ratio_cell(ratio, "delivered_per_sec"),
        num(run, "latency/p50_us", 0),
        num(run, "latency/p99_us", 0),
        num(run, "latency/p999_us", 0),
        ratio_cell(ratio, "latency/p99_us"),
        num(run, "lost", 0),
        num(run, "duplicated", 0),
        num(run, "misrouted", 0),
        num(run, "errors", 0),
    )
}

/// What a run was, in a few words, for the Redis table.
fn run_cell(run: &Value) -> String {
    let window = || format!("window {}", num(run, "window", 0));
    match run.get("scenario").and_then(Value::as_str) {
        Some("pairing") => format!(
            "concurrency {}, rate {}",
            num(run, "concurrency", 0),
            rate_cell(run)
        ),
        Some("relay") => format!(
            "{} rooms, {} B, {}, rate {}",
            num(run, "rooms", 0),
            size_cell(run),
            window(),
            rate_cell(run)
        ),
        Some("broadcast") => format!(
            "{} rooms × {}, {} B, {}, rate {}",
            num(run, "rooms", 0),
            num(run, "members", 0),
            size_cell(run),
            window(),
            rate_cell(run)
        ),
        Some("connections") => format!("{} connections", num(run, "established", 0)),
        _ => String::new(),
    }
}

/// Redis commands, scripts, CPU and memory per operation of a run metered with `--redis`.
fn redis_row(run: &Value) -> String {
    let redis = &run["redis"];
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        run.get("scenario").and_then(Value::as_str).unwrap_or("?"),
        run_cell(run),
        label_of(run),
        num(redis, "ops", 0),
        redis.get("per").and_then(Value::as_str).unwrap_or("?"),
        num(redis, "commands_per_op", 2),
        num(redis, "scripts_per_op", 2),
        num(redis, "cpu_us_per_op", 1),
        num(redis, "memory_bytes_per_op", 0),
    )
}

/// A `server` line is written by `scripts/bench.sh`: start-up time and idle RSS of a fresh process.
fn server_row(run: &Value) -> String {
    let startup = number_at(run, "startup_ms").map_or("–".to_owned(), |ms| format!("{ms:.0} ms"));
    let rss = number_at(run, "idle_rss_bytes")
        .map_or("–".to_owned(), |b| format!("{:.1} MiB", b / 1048576.0));
    format!("| {} | {startup} | {rss} |\n", label_of(run))
}

fn connections_row(run: &Value, ratio: Option<&Value>) -> String {
    let mib = |path: &str| {
        number_at(run, path).map_or("–".to_owned(), |b| format!("{:.1} MiB", b / 1048576.0))
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        label_of(run),
        num(run, "requested", 0),
        num(run, "established", 0),
        mib("server_rss_before_bytes"),
        mib("server_rss_after_bytes"),
        num(run, "server_bytes_per_connection", 0),
        ratio_cell(ratio, "server_bytes_per_connection"),
        num(run, "errors", 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_at_follows_paths() {
        let value = json!({"latency": {"p99_us": 12.5}, "n": 3});
        assert_eq!(number_at(&value, "latency/p99_us"), Some(12.5));
        assert_eq!(number_at(&value, "n"), Some(3.0));
        assert_eq!(number_at(&value, "latency/missing"), None);
    }

    #[test]
    fn markdown_has_a_row_per_run_and_skips_garbage() {
        let lines = [
            json!({"scenario": "pairing", "label": "signalpost", "concurrency": 4, "pairings_per_sec": 100.0, "errors": 0}),
            json!({"scenario": "relay",
                   "target": {"scenario": "relay", "label": "signalpost", "delivered_per_sec": 90.0},
                   "baseline": {"scenario": "relay", "label": "baseline", "delivered_per_sec": 100.0},
                   "ratio": {"delivered_per_sec": 0.9, "latency/p99_us": 1.25}}),
        ]
        .map(|v| v.to_string())
        .join("\nnot json\n");
        let md = markdown(&lines);
        assert!(md.contains("### pairing"), "{md}");
        assert!(md.contains("| signalpost | 4 |"), "{md}");
        assert!(md.contains("| baseline |"), "{md}");
        assert!(md.contains("| 0.900 |"), "{md}");
        assert!(md.contains("| 1.250 |"), "{md}");
        assert!(!md.contains("### connections"), "{md}");
        assert!(!md.contains("### broadcast"), "{md}");
    }

    #[test]
    fn broadcast_comparisons_get_their_own_table() {
        let run = |label: &str, per_sec: f64| {
            json!({"scenario": "broadcast", "label": label, "rooms": 3, "members": 8, "rate": 0,
                   "size": 200, "window": 4, "duration_s": 2.0, "sent": 1000,
                   "delivered_per_sec": per_sec, "lost": 0, "duplicated": 0, "misrouted": 0,
                   "errors": 0,
                   "latency": {"p50_us": 100.0, "p99_us": 300.0, "p999_us": 400.0}})
        };
        let line = json!({"scenario": "broadcast", "target": run("signalpost", 3150.0),
                          "baseline": run("baseline", 3500.0),
                          "ratio": {"delivered_per_sec": 0.9, "latency/p99_us": 1.1}})
        .to_string();
        let md = markdown(&line);
        assert!(md.contains("### broadcast"), "{md}");
        assert!(!md.contains("### relay"), "{md}");
        assert!(
            md.contains("| baseline | 3 | 8 | max | 200 | 4 | 2.0 | 500 | 3500 |  | 100 |"),
            "{md}"
        );
        assert!(
            md.contains("| signalpost | 3 | 8 | max | 200 | 4 | 2.0 | 500 | 3150 | 0.900 |"),
            "{md}"
        );
        assert!(md.contains("| 1.100 | 0 | 0 | 0 | 0 |"), "{md}");
    }

    #[test]
    fn metered_runs_get_a_redis_row_and_pairings_a_ratio() {
        let run = |label: &str, redis: Option<Value>| {
            let mut run = json!({"scenario": "pairing", "label": label, "concurrency": 16,
                                "rate": 0, "pairings_per_sec": 1000.0, "errors": 0});
            if let Some(redis) = redis {
                run["redis"] = redis;
            }
            run
        };
        let redis = json!({"per": "pairing", "ops": 5000, "commands_per_op": 12.5,
                           "scripts_per_op": 4.0, "cpu_us_per_op": 80.25,
                           "memory_bytes_per_op": null});
        let line = json!({"scenario": "pairing",
                          "target": run("cluster (2 nodes)", Some(redis)),
                          "baseline": run("single node", None),
                          "ratio": {"pairings_per_sec": 0.5}})
        .to_string();
        let md = markdown(&line);
        assert!(md.contains("| cluster (2 nodes) | 16 | max |"), "{md}");
        assert!(md.contains("| 1000 | 0.500 | 0 |"), "{md}");
        assert!(md.contains("### Redis work per operation"), "{md}");
        assert!(
            md.contains(
                "| pairing | concurrency 16, rate max | cluster (2 nodes) | 5000 | pairing | 12.50 | 4.00 | 80.2 | – |"
            ),
            "{md}"
        );
        assert_eq!(md.matches("| single node |").count(), 1, "{md}");
    }
}
