//! Connections that hold a slot without asking anything: closed after their timeouts,
//! kept to a budget per client address, and never enough to stop a normal review,
//! on the webhook port and on the ops port, against the real binary.

#[path = "support/reliability.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// On top of a timeout, the time a loaded 2-core machine may take to act on it.
const SLACK: Duration = Duration::from_secs(3);

/// How long until the server closes `stream` (EOF or reset), at most `limit`.
async fn closed_after<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

async fn h2_review(sender: &mut H2Sender, uid: &str) -> hyper::Result<u16> {
    let req = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(pod_review(uid, "default", &[ALLOWED_IMAGE])))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap();
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_closed_within_their_timeouts() {
    let server = ServerProcess::start(
        "connections: {firstRequestTimeout: 1s, idleTimeout: 2s, maxConnectionAge: 5s, keepAliveInterval: 200ms}\n",
    );
    let first_request = Duration::from_secs(1);
    let idle = Duration::from_secs(2);

    // TLS handshake completed, then nothing: hyper's header timer never starts.
    let mut tls = server.client.connect().await.unwrap();
    let after = closed_after(&mut tls, first_request + SLACK).await;
    assert!(after.is_some(), "a silent TLS connection was not closed");

    // TCP only, not even a ClientHello.
    let mut tcp = TcpStream::connect(server.client.addr).await.unwrap();
    assert!(
        closed_after(&mut tcp, first_request + SLACK)
            .await
            .is_some(),
        "a silent TCP connection was not closed"
    );

    // One review on a keep-alive connection, then silence: the idle timeout.
    let mut tls = server.client.connect().await.unwrap();
    let resp = keep_alive_review(&mut tls, "u-idle").await.unwrap();
    assert_eq!(resp.status, 200);
    let after = closed_after(&mut tls, idle + SLACK)
        .await
        .expect("an idle keep-alive connection was not closed");
    assert!(
        after >= idle - Duration::from_millis(500),
        "closed after {after:?}, before its idle timeout"
    );

    // The ops port: silent, and idle after a probe.
    let mut tcp = TcpStream::connect(server.ops).await.unwrap();
    assert!(
        closed_after(&mut tcp, first_request + SLACK)
            .await
            .is_some(),
        "a silent ops connection was not closed"
    );
    let mut tcp = TcpStream::connect(server.ops).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp).await.unwrap().status, 200);
    assert!(
        closed_after(&mut tcp, idle + SLACK).await.is_some(),
        "an idle ops connection was not closed"
    );

    // HTTP/2 answering every PING, no stream open: closed at the idle timeout.
    let (mut sender, conn) = server.client.connect_h2().await;
    assert_eq!(h2_review(&mut sender, "u-h2-idle").await.unwrap(), 200);
    let waited = Instant::now();
    tokio::time::timeout(idle + SLACK, conn)
        .await
        .expect("an idle HTTP/2 connection was not closed")
        .unwrap();
    assert!(waited.elapsed() >= idle - Duration::from_millis(500));

    // HTTP/2 that is never idle: asked to go away at its maximum age, every review
    // sent before that answered.
    let (mut sender, conn) = server.client.connect_h2().await;
    let opened = Instant::now();
    let mut answered = 0;
    while !conn.is_finished() && opened.elapsed() < Duration::from_secs(5) + SLACK {
        match h2_review(&mut sender, &format!("u-h2-age-{answered}")).await {
            Ok(status) => {
                assert_eq!(status, 200);
                answered += 1;
            }
            // Refused after the GOAWAY: the client opens a new connection.
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::timeout(SLACK, conn)
        .await
        .expect("a busy HTTP/2 connection outlived its maximum age")
        .unwrap();
    assert!(
        opened.elapsed() >= Duration::from_secs(4),
        "closed after {:?}, before its maximum age",
        opened.elapsed()
    );
    assert!(
        answered > 5,
        "the connection was in use ({answered} reviews)"
    );
    server.client.assert_serving().await;
}

/// The bound the issue asks for: a normal review answered within 1 s while `held`.
async fn answered_within_a_second(server: &ServerProcess, held: &str) {
    let started = Instant::now();
    server.client.assert_serving().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a review took {took:?} with {held}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_idle_connections_do_not_stop_reviews() {
    const HELD: usize = 5_000;
    let hard = raise_own_open_file_limit();
    assert!(
        hard >= 2 * HELD as u64 + 1_000,
        "this test holds {} connections and needs a hard open-file limit above that (it is {hard})",
        2 * HELD
    );
    // Starts with the soft limit containers often have; held connections are never
    // timed out during the test.
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(dir.path(), "connections: {firstRequestTimeout: 10m}\n");
    let server = ServerProcess::launch(
        dir,
        &yaml,
        Launch {
            soft_open_files: Some(1024),
            ..Launch::default()
        },
    );
    let (soft, hard_server) = open_file_limits(server.pid());
    assert_eq!(
        soft, hard_server,
        "the soft open-file limit is raised to the hard one"
    );

    // 5,000 completed TLS handshakes from 25 addresses (200 each, within the default
    // budget of 256 per address), then silence.
    let client = server.client.clone();
    let webhook: Vec<_> = futures::stream::iter(0..HELD)
        .map(|i| {
            let client = client.clone();
            async move { client.connect_from(loopback(2 + (i / 200) as u8)).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let webhook: Vec<_> = webhook
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every idle connection is accepted");
    let fds = server.open_fds();
    assert!(
        fds >= HELD,
        "the server holds the connections ({fds} descriptors)"
    );
    answered_within_a_second(&server, "5,000 idle webhook connections").await;

    // One address gets its budget of 256 and no more.
    let from_one: Vec<_> = futures::stream::iter(0..300)
        .map(|_| {
            let client = client.clone();
            async move { client.connect_from(loopback(200)).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused = from_one.iter().filter(|c| c.is_err()).count();
    assert_eq!(refused, 300 - 256, "connections over one address's budget");

    // 5,000 idle connections to the ops port, from one address.
    let ops = server.ops;
    let ops_conns: Vec<_> = futures::stream::iter(0..HELD)
        .map(|_| async move { tcp_from(loopback(201), ops).await })
        .buffer_unordered(64)
        .collect()
        .await;
    let ops_open = ops_conns.iter().filter(|c| c.is_ok()).count();
    assert!(ops_open > HELD / 2, "{ops_open} ops connections opened");
    let fds = server.open_fds();
    assert!(
        fds < HELD + 256 + 300,
        "the ops port holds only its budget ({fds} descriptors open)"
    );
    answered_within_a_second(&server, "5,000 idle webhook and 5,000 idle ops connections").await;
    let (status, _) = server.ops_get("/healthz").await.expect("/healthz answers");
    assert_eq!(status, 200);
    drop((webhook, from_one, ops_conns));
}
