//! Runs the admission benchmark in its smoke mode (a few seconds of every
//! measurement) and checks the report's shape. Timings are never asserted.

#[path = "../benches/admission/bench/mod.rs"]
#[allow(dead_code)]
mod bench;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};
use serde_json::Value;

/// A test binary of its own (no libtest harness): the benchmark starts its
/// executable again as the baseline server, and here that executable is this one.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = bench::baseline::serve_if_asked(&args) {
        return code;
    }
    let trials = vec![Trial::test(
        "admission_benchmark_smoke_writes_every_row",
        // libtest-mimic turns a failed assertion (a panic) into this trial's failure.
        || {
            admission_benchmark_smoke_writes_every_row();
            Ok(())
        },
    )];
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

fn admission_benchmark_smoke_writes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("admission-smoke.json");
    let options = bench::Options {
        out: out.clone(),
        ..bench::Options::smoke()
    };
    let report = bench::run(&options)
        .expect("the smoke benchmark runs")
        .expect("a full run writes a report");
    assert!(!report.table().is_empty());

    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["mode"], "smoke");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        bench::PROTOCOLS.len() * bench::CONNECTIONS.len() * bench::CONTAINERS.len()
    );
    let mut kernel_us = 0.0;
    for proto in ["http1", "h2"] {
        for conns in bench::CONNECTIONS {
            for containers in bench::CONTAINERS {
                let row = rows
                    .iter()
                    .find(|r| {
                        r["protocol"] == proto
                            && r["connections"] == conns
                            && r["containers"] == containers
                    })
                    .unwrap_or_else(|| panic!("row {proto} {conns} {containers} missing"));
                for server in ["baseline", "vulngate"] {
                    let s = &row[server];
                    for field in ["rps", "p50_ms", "p99_ms", "p999_ms"] {
                        assert!(s[field].is_number(), "{server}.{field} in {row}");
                    }
                    assert!(
                        s["requests"].as_u64().unwrap() > 0,
                        "{server} served nothing: {row}"
                    );
                    assert_eq!(s["errors"], 0, "{server} errors: {row}");
                    let cpu = s["server_cpu_us_per_request"].as_f64().unwrap();
                    assert!(cpu > 0.0, "{server} CPU not measured: {row}");
                    let kernel = s["server_kernel_us_per_request"].as_f64().unwrap();
                    assert!((0.0..=cpu).contains(&kernel), "{server} kernel CPU: {row}");
                    kernel_us += kernel;
                }
                assert!(row["ratio_rps"].is_number());
            }
        }
    }
    // Every answer is a system call: the kernel's part is seen somewhere.
    assert!(kernel_us > 0.0, "no kernel CPU time in any row");
    // The headline cell is measured again, and its targets are judged on the median.
    let headline = &json["headline"];
    let rounds = headline["rounds"].as_array().expect("headline rounds");
    assert_eq!(rounds.len(), options.headline_rounds, "{headline}");
    assert!(rounds.iter().all(
        |r| r["baseline"]["requests"].as_u64().is_some_and(|n| n > 0)
            && r["vulngate"]["requests"].as_u64().is_some_and(|n| n > 0)
            && r["vulngate"]["errors"] == 0
    ));
    let ratio = |key: &str| headline[key].as_f64().unwrap_or(f64::NAN);
    let median = ratio("median_ratio_rps");
    assert!(
        ratio("min_ratio_rps") <= median && median <= ratio("max_ratio_rps"),
        "{headline}"
    );
    let target = json["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["limit"] == 0.6))
        .expect("the throughput target");
    assert_eq!(target["value"], headline["median_ratio_rps"], "{target}");
    assert!(json["vulngate_rss_mib"].as_f64().unwrap() > 0.0);
    let cold = &json["cold"];
    assert_eq!(cold["reviews"], 1000);
    // Concurrent misses of one digest make one scanner call: behaviour, not timing.
    assert_eq!(cold["scanner_calls"], 1);
    assert_eq!(cold["errors"], 0);
    assert!(cold["p99_ms"].is_number());
    assert!(cold["warm_p99_ms"].is_number());
    // The burst's timeline: the scanner sleeps 50 ms between its call and its answer.
    let called = cold["scanner_called_ms"].as_f64().unwrap_or(f64::NAN);
    let answered = cold["scanner_answered_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(answered - called >= 50.0, "{cold}");
    assert!(
        cold["last_answer_after_scanner_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0),
        "{cold}"
    );
    let decision = json["decision"].as_array().expect("decision rows");
    assert_eq!(decision.len(), bench::CONTAINERS.len());
    assert!(
        decision
            .iter()
            .all(|d| d["micros_per_review"].as_f64().is_some_and(|us| us > 0.0))
    );
    let memory = &json["memory"];
    assert!(memory["rss_filled_mib"].as_f64().unwrap() > 0.0);
    assert!(
        memory["rss_load_peak_mib"].as_f64().unwrap() >= memory["rss_start_mib"].as_f64().unwrap(),
        "the load peak is reported: {memory}"
    );
    assert!(
        memory["entries_after_churn"].as_u64().unwrap() <= memory["max_entries"].as_u64().unwrap()
    );
    // Replicas: with the shared tier, one scanner call whatever their number; without
    // it, one per replica.
    let replicas = json["replicas"].as_array().expect("replica rows");
    assert_eq!(replicas.len(), 6, "{replicas:?}");
    for row in replicas {
        let n = row["replicas"].as_u64().unwrap();
        let expected = if row["shared"] == true { 1 } else { n };
        assert_eq!(row["scanner_calls"], expected, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
    }
    // The audit: each distinct image looked up once, never over the scanner's limit.
    let audit = &json["audit"];
    assert_eq!(audit["scanner_calls"], audit["images"], "{audit}");
    assert_eq!(audit["throttled"], 0, "{audit}");
    assert_eq!(audit["pods_judged"], audit["pods"], "{audit}");
    assert!(!json["targets"].as_array().unwrap().is_empty());
}
