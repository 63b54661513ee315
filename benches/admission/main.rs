//! `cargo bench --bench admission`: vulngate against a baseline server built on the
//! same HTTP + TLS stack, plus the cold-path and memory figures. See docs/benchmarks.md.
//!
//! `cargo bench --bench admission -- --smoke` (or `VULNGATE_BENCH_SMOKE=1`) runs a
//! few-seconds version of every measurement. Run without `--bench` (as `cargo test
//! --all-targets` does) it only says how to run it: `tests/bench_smoke.rs` runs the smoke.

mod bench;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = bench::baseline::serve_if_asked(&args) {
        return code;
    }
    let smoke = args.iter().any(|a| a == "--smoke")
        || std::env::var("VULNGATE_BENCH_SMOKE").is_ok_and(|v| v == "1");
    if !smoke && !args.iter().any(|a| a == "--bench") {
        println!(
            "admission benchmark: run it with `cargo bench --bench admission` (tests/bench_smoke.rs runs its smoke mode)"
        );
        return ExitCode::SUCCESS;
    }
    let options = if smoke {
        bench::Options::smoke()
    } else {
        bench::Options::full()
    };
    match bench::run(&options) {
        Ok(Some(report)) => {
            println!("{}", report.table());
            println!("wrote {}", options.out.display());
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!(
                "VULNGATE_BENCH_ONLY={}: the other parts were skipped, so no report was written",
                options.only.as_deref().unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("admission benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
