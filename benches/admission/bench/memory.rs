//! Memory: a `vulngate serve` whose cache (maxEntries = N) is filled with N distinct
//! digests the file scanner knows, then churned with N more it does not know (their
//! "not scanned" summaries are cached too); RSS from /proc at each step, the peak
//! while the summaries file was loaded (before any review), and the entry count at
//! the end from `POST /cache/purge`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{self, Proto, Target};
use super::setup::{self, Files, digest_of};
use super::{Options, Result};

/// Containers per review while filling.
const PER_REVIEW: usize = 20;
const CONNECTIONS: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct MemoryResult {
    pub digests: usize,
    pub max_entries: usize,
    pub churn_digests: usize,
    pub rss_start_kib: u64,
    /// Peak RSS up to the end of start-up: loading the summaries file.
    pub rss_load_peak_kib: u64,
    pub rss_filled_kib: u64,
    pub rss_churned_kib: u64,
    pub rss_peak_kib: u64,
    pub entries_after_churn: u64,
}

fn image(set: &str, i: usize) -> String {
    let name = format!("registry.example.com/{set}/img-{i}");
    format!("{name}@{}", digest_of(&name))
}

/// Sends reviews naming images `set`/0..count, `PER_REVIEW` at a time.
async fn send_all(target: &Target, files: &Files, set: &str, count: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let reviews = count.div_ceil(PER_REVIEW);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut sender = client::connect(target, Proto::Http1).await?;
        let next = Arc::clone(&next);
        let target = target.clone();
        let template = files.template.clone();
        let set = set.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= reviews {
                    return Ok::<_, super::Error>(());
                }
                let images: Vec<String> = (r * PER_REVIEW..((r + 1) * PER_REVIEW).min(count))
                    .map(|i| image(&set, i))
                    .collect();
                let review = setup::review_with(&template, &format!("mem-{set}-{r}"), &images);
                let body = Bytes::from(serde_json::to_vec(&review)?);
                let (status, bytes) = sender.send(&target, body).await?;
                if !status.is_success() {
                    return Err(format!(
                        "vulngate answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    )
                    .into());
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The purge endpoint is off unless configured with a token file.
const PURGE_TOKEN: &str = "memory-bench-purge";

/// `POST /cache/purge` on the ops port: "purged N entries".
async fn purge(ops: std::net::SocketAddr) -> Result<u64> {
    let mut tcp = TcpStream::connect(ops).await?;
    let request = format!(
        "POST /cache/purge HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {PURGE_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).await?;
    out.split("purged ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected purge answer: {out}").into())
}

pub async fn run(
    options: &Options,
    workdir: &std::path::Path,
    files: &Files,
) -> Result<MemoryResult> {
    let n = options.memory_digests;
    let dir = workdir.join("memory");
    std::fs::create_dir_all(dir.join("scans"))?;
    setup::write_summaries(
        &dir.join("scans/summaries.yaml"),
        (0..n).map(|i| {
            let image = image("mem", i);
            let (name, digest) = image.split_once('@').unwrap_or((&image, ""));
            (digest.to_string(), name.to_string())
        }),
    )?;
    // The same TLS files and namespaces as the main run.
    let main_dir = files.config.parent().ok_or("config has no directory")?;
    let config = dir.join("memory.yaml");
    let token_file = dir.join("purge-token");
    std::fs::write(&token_file, PURGE_TOKEN)?;
    let purge_config = format!(
        "ops: {{purge: {{enabled: true, tokenFile: {}}}}}\n",
        token_file.display()
    );
    std::fs::write(
        &config,
        setup::config_text(main_dir, &dir.join("scans"), n, "10m") + &purge_config,
    )?;
    let mut vulngate = setup::start_vulngate(&options.vulngate_bin, &config, &dir)?;
    let pid = vulngate.child.id();
    let target = Target::new(vulngate.webhook, &files.ca_pem)?;
    let rss = || setup::rss_kib(pid).unwrap_or(0);

    let rss_start_kib = rss();
    let rss_load_peak_kib = setup::peak_rss_kib(pid).unwrap_or(0);
    send_all(&target, files, "mem", n).await?;
    let rss_filled_kib = rss();
    send_all(&target, files, "churn", n).await?;
    let rss_churned_kib = rss();
    let rss_peak_kib = setup::peak_rss_kib(pid).unwrap_or(0);
    let entries_after_churn = purge(vulngate.ops).await?;
    vulngate.stop();
    Ok(MemoryResult {
        digests: n,
        max_entries: n,
        churn_digests: n,
        rss_start_kib,
        rss_load_peak_kib,
        rss_filled_kib,
        rss_churned_kib,
        rss_peak_kib,
        entries_after_churn,
    })
}
