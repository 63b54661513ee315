//! Namespace annotations are written by whoever may edit the Namespace: any value,
//! any key. Each input line is one annotation `key=value`; a line whose first byte is
//! below 0x20 names one of vulngate's own keys, so the fuzzer reaches them quickly.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use vulngate::config::PolicyConfig;
use vulngate::image::ImageRef;
use vulngate::policy::{judge, NamespacePolicy, Source};
use vulngate::domain::limits::LimitKey;
use vulngate::domain::summary::{ScanStatus, ScanSummary, SeverityCounts};

const KEYS: [&str; 18] = [
    "vulngate.io/max-critical",
    "vulngate.io/max-high",
    "vulngate.io/max-medium",
    "vulngate.io/max-low",
    "vulngate.io/max-unknown",
    "vulngate.io/max-total",
    "vulngate.io/max-malicious-files",
    "vulngate.io/max-baseline-risks",
    "vulngate.io/max-app-vulnerabilities",
    "vulngate.io/mode",
    "vulngate.io/unscanned",
    "vulngate.io/exempt-images",
    "vulngate.io/count",
    "vulngate.io/allow-cves",
    "vulngate.io/grace-days",
    "vulngate.io/max-scan-age",
    "vulngate.io/break-glass-until",
    "vulngate.io/controller-pods",
];

/// A fixed "now", so that an input decides the same way on every run.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut annotations = BTreeMap::new();
    for line in text.split('\n') {
        let first = line.as_bytes().first().copied().unwrap_or(0);
        if (first as usize) < 0x20 && !line.is_empty() {
            let key = KEYS[first as usize % KEYS.len()];
            annotations.insert(key.to_string(), line[1..].to_string());
        } else if let Some((k, v)) = line.split_once('=') {
            annotations.insert(k.to_string(), v.to_string());
        }
    }
    let config = PolicyConfig::default();
    let policy = NamespacePolicy::resolve(&config, &[], "fuzz", Some(&annotations), now());

    // Every limit key at most once; an annotation that parsed sets exactly that limit;
    // one that did not is reported and never becomes "no limit".
    for key in LimitKey::ALL {
        let limits: Vec<_> = policy.limits.iter().filter(|l| l.key == key).collect();
        assert!(limits.len() <= 1, "limit {key} twice");
        let name = key.annotation();
        match annotations.get(&name).map(|v| v.trim().parse::<u64>()) {
            Some(Ok(max)) => {
                assert_eq!(limits[0].max, max);
                assert!(matches!(limits[0].source, Source::Annotation { .. }));
            }
            Some(Err(_)) => {
                assert!(policy.problems.iter().any(|p| p.contains(&name)));
                if let Some(&max) = config.defaults.limits.get(key.as_str()) {
                    assert_eq!(limits[0].max, max, "bad {name} dropped the default limit");
                }
            }
            None => {}
        }
    }

    let mut summary = ScanSummary::status_only("file", ScanStatus::Complete);
    summary.counts = SeverityCounts {
        critical: Some(data.len() as u64 % 3),
        high: Some(data.len() as u64 % 5),
        ..SeverityCounts::zero()
    };
    let judgement = judge(&policy, &summary, now());
    for v in &judgement.violations {
        assert!(v.count > v.limit.max);
    }
    let digest_image = format!("localhost:5000/a/b@sha256:{}", "a".repeat(64));
    for image in [
        "nginx:1.25",
        "registry.k8s.io/pause:3.9",
        digest_image.as_str(),
    ] {
        let _ = policy.is_exempt(&ImageRef::parse(image).unwrap());
    }
});
