//! SIGTERM under load: readiness turns false, in-flight reviews complete, HTTP/1.1
//! answers carry `Connection: close` from the start of the drain, the process exits
//! within its grace period, and no request sent on a keep-alive connection is lost
//! (written, then its connection closed without an answer).

#[path = "support/reliability.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_reviews_and_exits_within_grace() {
    let mut server = ServerProcess::start("shutdown: {drainDelay: 2s, grace: 20s}\n");
    server.client.assert_serving().await;
    assert_eq!(server.ops_get("/readyz").await.unwrap().0, 200);

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let closed_by_server = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, ok, failed, lost, closed_by_server) = (
            server.client.clone(),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&lost),
            Arc::clone(&closed_by_server),
        );
        load.push(tokio::spawn(async move {
            let mut conn = None;
            for n in 0.. {
                let uid = format!("w{worker}-{n}");
                let body = pod_review(&uid, "default", &[ALLOWED_IMAGE, DENIED_IMAGE]);
                let mut answered = false;
                for attempt in 0..3 {
                    if conn.is_none() {
                        match client.connect().await {
                            Ok(c) => conn = Some(c),
                            // Nobody listens any more: the endpoint is gone, as
                            // it would be from the Service's endpoints.
                            Err(_) => return,
                        }
                    }
                    let tls = conn.as_mut().unwrap();
                    let sent = tls
                        .write_all(&request_bytes(
                            "/validate",
                            Some("application/json"),
                            &body,
                            true,
                        ))
                        .await;
                    let resp = match sent {
                        Ok(()) => read_response(tls).await,
                        Err(e) => Err(e),
                    };
                    match resp {
                        Ok(resp) => {
                            if resp.status == 200 && resp.json()["response"]["uid"] == uid.as_str()
                            {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                eprintln!("worker {worker}: {} {}", resp.status, resp.text());
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            if resp
                                .header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                            {
                                closed_by_server.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                            answered = true;
                            break;
                        }
                        Err(e) => {
                            // Sent on a keep-alive connection that was then closed
                            // without an answer: a client that does not resend a POST
                            // (Go's, the apiserver's) fails this review.
                            eprintln!("worker {worker}: attempt {attempt} lost: {e}");
                            lost.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
                if !answered {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A review in flight when SIGTERM arrives: headers and half the body sent.
    let mut in_flight = server.client.connect().await.unwrap();
    let body = pod_review("u-in-flight", "default", &[ALLOWED_IMAGE]);
    let req = request_bytes("/validate", Some("application/json"), &body, true);
    let half = req.len() - body.len() / 2;
    in_flight.write_all(&req[..half]).await.unwrap();
    in_flight.flush().await.unwrap();

    server.signal_term();
    let s = &server;
    let not_ready = eventually(PATIENCE, || async move {
        matches!(s.ops_get("/readyz").await, Some((503, _)))
    })
    .await;
    assert!(not_ready, "readiness turns false after SIGTERM");

    // During the drain the listener still accepts, and every HTTP/1.1 answer closes
    // its connection, so keep-alive clients move to another replica.
    let mut draining = server.client.connect().await.unwrap();
    let resp = keep_alive_review(&mut draining, "u-draining")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "an answer during the drain closes its keep-alive connection"
    );

    // After the drain delay the listener closes: new connections are refused.
    let addr = server.client.addr;
    let closed = eventually(PATIENCE, || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(closed, "the listener closes after the drain delay");

    // The in-flight review still completes, and its connection is then closed.
    in_flight.write_all(&req[half..]).await.unwrap();
    in_flight.flush().await.unwrap();
    let resp = tokio::time::timeout(PATIENCE, read_response(&mut in_flight))
        .await
        .expect("in-flight review answered")
        .expect("in-flight review answered");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["response"]["uid"], "u-in-flight");
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(PATIENCE, in_flight.read_to_end(&mut rest)).await;
    assert!(
        matches!(eof, Ok(Ok(0)) | Ok(Err(_))),
        "keep-alive connection closed after its in-flight request: {eof:?} {rest:?}"
    );

    let status = server
        .wait_exit(Duration::from_secs(2 + 20 + 30))
        .expect("exits within drain delay + grace");
    assert!(status.success(), "{status:?}");
    for task in load {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("load stops once the server is gone")
            .unwrap();
    }
    let (ok, failed, lost) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    );
    let closed = closed_by_server.load(Ordering::Relaxed);
    eprintln!(
        "shutdown under load: {ok} ok, {failed} failed, {lost} lost, {closed} answers with Connection: close"
    );
    assert_eq!(failed, 0);
    assert_eq!(lost, 0, "requests lost on keep-alive connections");
    assert!(ok > 10, "the load ran ({ok} reviews)");
    assert!(
        closed >= 4,
        "the load's connections were closed by their answers ({closed})"
    );
}
