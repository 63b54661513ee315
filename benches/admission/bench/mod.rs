//! The admission benchmark, shared by the bench target and its smoke test.

pub mod baseline;
pub mod client;
pub mod cold;
pub mod decide;
pub mod fleet;
pub mod memory;
pub mod setup;

#[path = "../../../tests/support/apiserver/mod.rs"]
pub mod apiserver;
#[path = "../../../tests/support/redis.rs"]
pub mod redis;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use client::{LoadResult, Proto};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Connection counts and pod sizes of the matrix.
pub const CONNECTIONS: [usize; 3] = [1, 16, 64];
pub const CONTAINERS: [usize; 3] = [1, 5, 20];
pub const PROTOCOLS: [Proto; 2] = [Proto::Http1, Proto::Http2];

#[derive(Debug, Clone)]
pub struct Options {
    pub smoke: bool,
    /// Load before each measurement, discarded.
    pub warmup: Duration,
    /// Measured load of one cell (one server, protocol, connection count, pod size).
    pub measure: Duration,
    /// Times the headline cell is measured in all, the matrix's own measurement
    /// included: the targets are judged on the median, so one slow moment of the
    /// machine neither passes nor fails them.
    pub headline_rounds: usize,
    /// Concurrent reviews of the cold path.
    pub cold_reviews: usize,
    /// Reviews per body of the in-process decision measurement.
    pub decide_iterations: usize,
    pub scanner_latency: Duration,
    /// Distinct digests cached for the memory figure (also the cache's maxEntries).
    pub memory_digests: usize,
    /// Concurrent reviews of one cold digest spread over 1, 2, 3 replicas.
    pub replica_reviews: usize,
    /// The generated cluster of the audit figure, and its scanner's limit.
    pub audit_pods: usize,
    pub audit_images: usize,
    pub audit_rate: f64,
    /// Where the JSON report is written.
    pub out: PathBuf,
    /// The `vulngate` binary to start.
    pub vulngate_bin: PathBuf,
    /// Only matrix cells whose `protocol/connections/containers` contains this
    /// (`VULNGATE_BENCH_FILTER`, for profiling one cell).
    pub filter: Option<String>,
    /// Run only this part (`VULNGATE_BENCH_ONLY`: one of [`SECTIONS`]), for
    /// profiling; no report is written.
    pub only: Option<String>,
}

impl Options {
    pub fn full() -> Options {
        let secs = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(Duration::from_secs_f64(default), Duration::from_secs_f64)
        };
        Options {
            smoke: false,
            warmup: secs("VULNGATE_BENCH_WARMUP_SECS", 1.0),
            measure: secs("VULNGATE_BENCH_SECS", 3.0),
            headline_rounds: std::env::var("VULNGATE_BENCH_HEADLINE_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(7),
            cold_reviews: 1000,
            decide_iterations: std::env::var("VULNGATE_BENCH_DECIDE_ITERATIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000),
            scanner_latency: Duration::from_millis(50),
            memory_digests: 100_000,
            replica_reviews: 1000,
            audit_pods: env_or("VULNGATE_BENCH_AUDIT_PODS", 10_000),
            audit_images: env_or("VULNGATE_BENCH_AUDIT_IMAGES", 2_000),
            audit_rate: 10.0,
            out: out_path("admission.json"),
            vulngate_bin: std::env::var_os("VULNGATE_BENCH_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_vulngate")),
                PathBuf::from,
            ),
            filter: std::env::var("VULNGATE_BENCH_FILTER").ok(),
            only: std::env::var("VULNGATE_BENCH_ONLY").ok(),
        }
    }

    pub fn smoke() -> Options {
        Options {
            smoke: true,
            warmup: Duration::from_millis(50),
            measure: Duration::from_millis(150),
            headline_rounds: 3,
            cold_reviews: 1000,
            decide_iterations: 500,
            scanner_latency: Duration::from_millis(50),
            memory_digests: 2_000,
            replica_reviews: 300,
            audit_pods: 300,
            audit_images: 60,
            audit_rate: 100.0,
            out: out_path("admission-smoke.json"),
            filter: None,
            only: None,
            ..Options::full()
        }
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VULNGATE_BENCH_OUT`, else `<target dir>/bench/<name>` (the target dir found from
/// this executable's path: `<target>/<profile>/deps/<exe>`).
fn out_path(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("VULNGATE_BENCH_OUT") {
        return PathBuf::from(p);
    }
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench").join(name)
}

/// One cell of the matrix, both servers.
#[derive(Debug, Clone)]
pub struct Row {
    pub proto: Proto,
    pub connections: usize,
    pub containers: usize,
    pub body_bytes: usize,
    pub baseline: LoadResult,
    pub vulngate: LoadResult,
}

impl Row {
    pub fn is_headline(&self) -> bool {
        (self.proto, self.connections, self.containers) == HEADLINE
    }

    pub fn ratio(&self) -> f64 {
        if self.baseline.rps() > 0.0 {
            self.vulngate.rps() / self.baseline.rps()
        } else {
            0.0
        }
    }
}

/// Every measurement of the headline cell (the matrix's first), in the order run.
#[derive(Debug, Clone, Default)]
pub struct Headline {
    pub rounds: Vec<Row>,
}

impl Headline {
    pub fn median_ratio(&self) -> Option<f64> {
        median(self.ratios())
    }

    pub fn median_vulngate_p99_ms(&self) -> Option<f64> {
        median(self.rounds.iter().map(|r| r.vulngate.quantile_ms(0.99)))
    }

    fn ratios(&self) -> impl Iterator<Item = f64> + '_ {
        self.rounds.iter().map(Row::ratio)
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub struct Report {
    pub json: Value,
    pub rows: Vec<Row>,
    pub headline: Headline,
    pub cold: cold::ColdResult,
    pub decide: Vec<decide::DecideRow>,
    pub memory: memory::MemoryResult,
    pub vulngate_rss_kib: u64,
    pub replicas: Vec<fleet::ReplicaRow>,
    pub audit: Option<fleet::AuditResult>,
}

/// The parts of one run, for `VULNGATE_BENCH_ONLY`.
pub const SECTIONS: [&str; 6] = ["matrix", "cold", "decision", "memory", "replicas", "audit"];

/// Runs everything and writes the JSON report; a partial run (`VULNGATE_BENCH_ONLY`)
/// prints its figures and writes none, since a report names every part.
pub fn run(options: &Options) -> Result<Option<Report>> {
    if let Some(only) = options.only.as_deref().filter(|o| !SECTIONS.contains(o)) {
        return Err(format!("VULNGATE_BENCH_ONLY={only}: expected one of {SECTIONS:?}").into());
    }
    let workdir = tempfile::tempdir()?;
    let files = setup::write_files(workdir.path(), options)?;
    let wanted = |section: &str| options.only.as_deref().is_none_or(|o| o == section);

    // The load generator's runtime; each server runs in a process of its own.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-client")
        .enable_all()
        .build()?;

    let (rows, headline, vulngate_rss_kib) = if wanted("matrix") {
        run_matrix(options, &files, workdir.path(), &client_rt)?
    } else {
        (Vec::new(), Headline::default(), 0)
    };
    let cold = if wanted("cold") {
        let cold = client_rt.block_on(cold::run(
            &files,
            options.cold_reviews,
            options.scanner_latency,
        ))?;
        eprintln!("{}", cold.summary());
        Some(cold)
    } else {
        None
    };
    let decide = if wanted("decision") {
        let decide = client_rt.block_on(decide::run(&files, options.decide_iterations))?;
        for row in &decide {
            eprintln!(
                "decision in process: {} containers, {:.1} us per review ({:.1} us to decode)",
                row.containers, row.micros_per_review, row.micros_per_decode
            );
        }
        decide
    } else {
        Vec::new()
    };
    let memory = if wanted("memory") {
        let memory = client_rt.block_on(memory::run(options, workdir.path(), &files))?;
        eprintln!(
            "memory: {} digests cached: RSS {:.1} MiB; churned: {:.1} MiB, {} entries",
            memory.digests,
            kib_to_mib(memory.rss_filled_kib),
            kib_to_mib(memory.rss_churned_kib),
            memory.entries_after_churn
        );
        Some(memory)
    } else {
        None
    };
    let replicas = if wanted("replicas") {
        client_rt.block_on(fleet::replicas(
            &files,
            workdir.path(),
            options.replica_reviews,
            options.scanner_latency,
        ))?
    } else {
        Vec::new()
    };
    let audit = if wanted("audit") {
        let audit = client_rt.block_on(fleet::audit(
            &files,
            options.audit_pods,
            options.audit_images,
            options.audit_rate,
        ))?;
        eprintln!("{}", audit.line());
        Some(audit)
    } else {
        None
    };
    drop(client_rt);

    let (Some(cold), Some(memory), None) = (cold, memory, &options.only) else {
        return Ok(None);
    };
    let report = Report {
        json: Value::Null,
        rows,
        headline,
        cold,
        decide,
        memory,
        vulngate_rss_kib,
        replicas,
        audit,
    };
    let json = report.to_json(options);
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, serde_json::to_vec_pretty(&json)?)?;
    Ok(Some(Report { json, ..report }))
}

/// Both servers, cell after cell, then the headline cell's further rounds;
/// vulngate's RSS after the last cell.
fn run_matrix(
    options: &Options,
    files: &setup::Files,
    dir: &std::path::Path,
    client_rt: &tokio::runtime::Runtime,
) -> Result<(Vec<Row>, Headline, u64)> {
    let mut vulngate = setup::start_vulngate(&options.vulngate_bin, &files.config, dir)?;
    let vulngate_target = client::Target::new(vulngate.webhook, &files.ca_pem)?;
    eprintln!(
        "vulngate pid {} on {}",
        vulngate.child.id(),
        vulngate.webhook
    );

    // vulngate's real answers, which the baseline then returns as fixed bytes.
    let responses = client_rt.block_on(setup::warm_up(&vulngate_target, &files.bodies))?;
    let mut baseline = baseline::spawn(dir, &files.cert, &files.key, &responses)?;
    let baseline_target = client::Target::new(baseline.addr, &files.ca_pem)?;

    // One cell, both servers; `vulngate_first` turns the order around, so that
    // the machine speeding up or slowing down within a cell favours neither.
    let cell = |proto: Proto,
                connections: usize,
                containers: usize,
                body: &bytes::Bytes,
                vulngate_first: bool|
     -> Result<Row> {
        let load = |target: &client::Target, pid: u32| {
            client_rt.block_on(client::run_load(
                target,
                pid,
                proto,
                connections,
                body.clone(),
                options.warmup,
                options.measure,
            ))
        };
        let (baseline_result, vulngate_result) = if vulngate_first {
            let v = load(&vulngate_target, vulngate.child.id())?;
            (load(&baseline_target, baseline.pid())?, v)
        } else {
            let b = load(&baseline_target, baseline.pid())?;
            (b, load(&vulngate_target, vulngate.child.id())?)
        };
        Ok(Row {
            proto,
            connections,
            containers,
            body_bytes: body.len(),
            baseline: baseline_result,
            vulngate: vulngate_result,
        })
    };

    let mut rows = Vec::new();
    let mut headline = Headline::default();
    eprintln!("{}", table_header());
    for proto in PROTOCOLS {
        for connections in CONNECTIONS {
            for (containers, body) in &files.bodies {
                let name = format!("{}/{connections}/{containers}", proto.as_str());
                if options
                    .filter
                    .as_ref()
                    .is_some_and(|f| !name.contains(f.as_str()))
                {
                    continue;
                }
                let row = cell(proto, connections, *containers, body, false)?;
                eprintln!("{}", table_row(&row));
                if row.is_headline() {
                    headline.rounds.push(row.clone());
                }
                rows.push(row);
            }
        }
    }
    let headline_body = files.bodies.iter().find(|(c, _)| *c == HEADLINE.2);
    if let (Some((containers, body)), false) = (headline_body, headline.rounds.is_empty()) {
        eprintln!(
            "headline cell again, {} rounds in all:",
            options.headline_rounds
        );
        for round in 1..options.headline_rounds {
            let row = cell(HEADLINE.0, HEADLINE.1, *containers, body, round % 2 == 1)?;
            eprintln!("{}", table_row(&row));
            headline.rounds.push(row);
        }
    }
    let rss = setup::rss_kib(vulngate.child.id()).unwrap_or(0);
    vulngate.stop();
    baseline.stop();
    Ok((rows, headline, rss))
}

/// The cell the throughput targets are set for: warm cache, HTTP/1.1 keep-alive,
/// 16 connections, 5 containers.
pub const HEADLINE: (Proto, usize, usize) = (Proto::Http1, 16, 5);

pub fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn table_header() -> String {
    format!(
        "{:<6} {:>5} {:>4} | {:>9} {:>7} {:>7} {:>7} {:>6} {:>6} | {:>9} {:>7} {:>7} {:>7} {:>6} {:>6} | {:>6}",
        "proto",
        "conns",
        "ctrs",
        "base r/s",
        "p50 ms",
        "p99",
        "p99.9",
        "cpu us",
        "sys us",
        "vg r/s",
        "p50 ms",
        "p99",
        "p99.9",
        "cpu us",
        "sys us",
        "ratio"
    )
}

fn table_row(r: &Row) -> String {
    format!(
        "{:<6} {:>5} {:>4} | {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>6.1} {:>6.1} | {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>6.1} {:>6.1} | {:>5.1}%",
        r.proto.as_str(),
        r.connections,
        r.containers,
        r.baseline.rps(),
        r.baseline.quantile_ms(0.5),
        r.baseline.quantile_ms(0.99),
        r.baseline.quantile_ms(0.999),
        r.baseline.server_cpu_us_per_request(),
        r.baseline.server_kernel_us_per_request(),
        r.vulngate.rps(),
        r.vulngate.quantile_ms(0.5),
        r.vulngate.quantile_ms(0.99),
        r.vulngate.quantile_ms(0.999),
        r.vulngate.server_cpu_us_per_request(),
        r.vulngate.server_kernel_us_per_request(),
        r.ratio() * 100.0
    )
}

fn load_json(r: &LoadResult) -> Value {
    json!({
        "requests": r.requests,
        "errors": r.errors,
        "seconds": r.elapsed.as_secs_f64(),
        "rps": round(r.rps(), 1),
        "p50_ms": round(r.quantile_ms(0.5), 3),
        "p99_ms": round(r.quantile_ms(0.99), 3),
        "p999_ms": round(r.quantile_ms(0.999), 3),
        "max_ms": round(r.quantile_ms(1.0), 3),
        "server_cpu_us_per_request": round(r.server_cpu_us_per_request(), 2),
        "server_kernel_us_per_request": round(r.server_kernel_us_per_request(), 2),
    })
}

fn row_json(r: &Row) -> Value {
    json!({
        "protocol": r.proto.as_str(),
        "connections": r.connections,
        "containers": r.containers,
        "body_bytes": r.body_bytes,
        "baseline": load_json(&r.baseline),
        "vulngate": load_json(&r.vulngate),
        "ratio_rps": round(r.ratio(), 3),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Report {
    fn targets(&self, options: &Options) -> Vec<Value> {
        let mut out = Vec::new();
        let rounds = self.headline.rounds.len();
        if let (Some(ratio), Some(p99)) = (
            self.headline.median_ratio(),
            self.headline.median_vulngate_p99_ms(),
        ) {
            out.push(json!({
                "name": format!("warm h1 16 conn 5 ctr: vulngate req/s >= 60% of baseline (median of {rounds} rounds)"),
                "value": round(ratio, 3), "limit": 0.6, "met": ratio >= 0.6,
            }));
            out.push(json!({
                "name": format!("warm h1 16 conn 5 ctr: vulngate p99 < 2 ms (median of {rounds} rounds)"),
                "value": round(p99, 3), "limit": 2.0, "met": p99 < 2.0,
            }));
        }
        out.push(json!({
            "name": "cold path: exactly one scanner call",
            "value": self.cold.scanner_calls, "limit": 1, "met": self.cold.scanner_calls == 1,
        }));
        let cold_limit = options.scanner_latency.as_secs_f64() * 1000.0 + 5.0;
        // The cold path's target is what it adds to the same burst served from the cache:
        // on 2 shared cores the client's own burst time is not vulngate's (the absolute
        // p99 stays in the report as a figure, not a target).
        let over_warm = self.cold.p99_ms - self.cold.warm_p99_ms;
        out.push(json!({
            "name": "cold path: p99 beyond the same burst's warm p99 <= scanner latency + 5 ms",
            "value": round(over_warm, 3), "limit": cold_limit,
            "met": over_warm <= cold_limit,
        }));
        if let Some(three) = self.replicas.iter().find(|r| r.shared && r.replicas == 3) {
            out.push(json!({
                "name": "shared tier: one scanner call for a cold digest on 3 replicas",
                "value": three.scanner_calls, "limit": 1, "met": three.scanner_calls == 1,
            }));
        }
        if let Some(audit) = &self.audit {
            out.push(json!({
                "name": format!("audit against a scanner limited to {} req/s: no throttled call", audit.limit_per_second),
                "value": audit.throttled, "limit": 0, "met": audit.throttled == 0,
            }));
        }
        let rss = kib_to_mib(self.memory.rss_filled_kib);
        out.push(json!({
            "name": format!("RSS < 128 MiB with {} cached digests", self.memory.digests),
            "value": round(rss, 1), "limit": 128.0, "met": rss < 128.0,
        }));
        out
    }

    fn to_json(&self, options: &Options) -> Value {
        let rows: Vec<Value> = self.rows.iter().map(row_json).collect();
        json!({
            "benchmark": "admission",
            "mode": if options.smoke { "smoke" } else { "full" },
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "warmup_seconds": options.warmup.as_secs_f64(),
            "measure_seconds": options.measure.as_secs_f64(),
            "rows": rows,
            "headline": {
                "protocol": HEADLINE.0.as_str(),
                "connections": HEADLINE.1,
                "containers": HEADLINE.2,
                "rounds": self.headline.rounds.iter().map(row_json).collect::<Vec<_>>(),
                "median_ratio_rps": self.headline.median_ratio().map(|x| round(x, 3)),
                "min_ratio_rps": self.headline.ratios().reduce(f64::min).map(|x| round(x, 3)),
                "max_ratio_rps": self.headline.ratios().reduce(f64::max).map(|x| round(x, 3)),
                "median_vulngate_p99_ms": self.headline.median_vulngate_p99_ms().map(|x| round(x, 3)),
            },
            "vulngate_rss_mib": round(kib_to_mib(self.vulngate_rss_kib), 1),
            "cold": {
                "reviews": self.cold.reviews,
                "connections": self.cold.connections,
                "scanner_latency_ms": options.scanner_latency.as_secs_f64() * 1000.0,
                "scanner_calls": self.cold.scanner_calls,
                "errors": self.cold.errors,
                "p50_ms": round(self.cold.p50_ms, 3),
                "p99_ms": round(self.cold.p99_ms, 3),
                "max_ms": round(self.cold.max_ms, 3),
                "scanner_called_ms": round(self.cold.scanner_called_ms, 3),
                "scanner_answered_ms": round(self.cold.scanner_answered_ms, 3),
                "last_answer_after_scanner_ms": round(self.cold.last_answer_after_scanner_ms, 3),
                "warm_p50_ms": round(self.cold.warm_p50_ms, 3),
                "warm_p99_ms": round(self.cold.warm_p99_ms, 3),
            },
            "decision": self.decide.iter().map(|d| json!({
                "containers": d.containers,
                "body_bytes": d.body_bytes,
                "micros_per_review": round(d.micros_per_review, 2),
                "micros_per_decode": round(d.micros_per_decode, 2),
            })).collect::<Vec<_>>(),
            "memory": {
                "digests": self.memory.digests,
                "max_entries": self.memory.max_entries,
                "rss_start_mib": round(kib_to_mib(self.memory.rss_start_kib), 1),
                "rss_load_peak_mib": round(kib_to_mib(self.memory.rss_load_peak_kib), 1),
                "rss_filled_mib": round(kib_to_mib(self.memory.rss_filled_kib), 1),
                "rss_churned_mib": round(kib_to_mib(self.memory.rss_churned_kib), 1),
                "rss_peak_mib": round(kib_to_mib(self.memory.rss_peak_kib), 1),
                "entries_after_churn": self.memory.entries_after_churn,
                "churn_digests": self.memory.churn_digests,
            },
            "replicas": self.replicas.iter().map(fleet::ReplicaRow::json).collect::<Vec<_>>(),
            "audit": self.audit.as_ref().map(fleet::AuditResult::json),
            "targets": self.targets(options),
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", table_header());
        for r in &self.rows {
            let _ = writeln!(s, "{}", table_row(r));
        }
        if let Some(ratio) = self.headline.median_ratio() {
            let ratios: Vec<String> = self
                .headline
                .ratios()
                .map(|r| format!("{:.1}%", r * 100.0))
                .collect();
            let _ = writeln!(
                s,
                "headline cell, {} rounds: median ratio {:.1}% ({}), median vulngate p99 {:.3} ms",
                self.headline.rounds.len(),
                ratio * 100.0,
                ratios.join(", "),
                self.headline.median_vulngate_p99_ms().unwrap_or(f64::NAN)
            );
        }
        let _ = writeln!(
            s,
            "vulngate RSS after the matrix: {:.1} MiB",
            kib_to_mib(self.vulngate_rss_kib)
        );
        let _ = writeln!(s, "{}", self.cold.summary());
        for d in &self.decide {
            let _ = writeln!(
                s,
                "decision in process (one thread, no HTTP/TLS/logging): {} containers ({} bytes): {:.1} us per review, of which {:.1} us to decode",
                d.containers, d.body_bytes, d.micros_per_review, d.micros_per_decode
            );
        }
        let m = &self.memory;
        let _ = writeln!(
            s,
            "memory (maxEntries {}): RSS at start {:.1} MiB (peak while loading the summaries file {:.1} MiB), {} digests cached {:.1} MiB, after {} more (churn) {:.1} MiB with {} entries, peak {:.1} MiB",
            m.max_entries,
            kib_to_mib(m.rss_start_kib),
            kib_to_mib(m.rss_load_peak_kib),
            m.digests,
            kib_to_mib(m.rss_filled_kib),
            m.churn_digests,
            kib_to_mib(m.rss_churned_kib),
            m.entries_after_churn,
            kib_to_mib(m.rss_peak_kib)
        );
        for row in &self.replicas {
            let _ = writeln!(s, "{}", row.line());
        }
        if let Some(audit) = &self.audit {
            let _ = writeln!(s, "{}", audit.line());
        }
        if let Some(targets) = self.json.get("targets").and_then(Value::as_array) {
            for t in targets {
                let _ = writeln!(
                    s,
                    "target {}: {} (value {}, limit {})",
                    t["name"].as_str().unwrap_or(""),
                    if t["met"].as_bool() == Some(true) {
                        "met"
                    } else {
                        "NOT met"
                    },
                    t["value"],
                    t["limit"]
                );
            }
        }
        s
    }
}
