//! Connections that never make a request cannot hold the server's connection slots: the
//! protocol must be told within the header deadline (a connection that sends one byte of
//! the HTTP/2 preface and stops is closed), an HTTP/2 connection with no open stream is
//! closed after the header deadline even while it answers every PING, and one address
//! holds at most `max_connections_per_address` connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options};
use hyper_util::rt::{TokioExecutor, TokioIo};
use runproof_server::LimitsConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; how long that took, or `None` when it is
/// still open after `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .ok()
        .map(|()| started.elapsed())
}

fn addr(h: &Harness) -> String {
    h.url.trim_start_matches("http://").to_owned()
}

/// `GET /healthz` on a fresh connection: the status, or `None` without an answer in `within`.
async fn health(h: &Harness, within: Duration) -> Option<u16> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let request = client.get(format!("{}/healthz", h.url)).send();
    match tokio::time::timeout(within, request).await {
        Ok(Ok(response)) => Some(response.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn rule_one_byte_connections_are_closed_at_the_version_deadline() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 4,
            max_connections_per_address: 0,
            header_timeout_seconds: 1,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    // Every slot is taken by a connection that sends the first byte of the HTTP/2 preface
    // (or the first bytes of it) and then nothing.
    let mut held = Vec::new();
    for prefix in [&b"P"[..], b"P", b"PRI * HTTP/2.0", b"P"] {
        let mut s = TcpStream::connect(addr(&h)).await.unwrap();
        s.write_all(prefix).await.unwrap();
        held.push(s);
    }
    for s in &mut held {
        let closed = closed_after(s, Duration::from_secs(5)).await;
        let closed = closed.expect("a one-byte connection is closed at the deadline");
        eprintln!("one-byte connection held its slot for {closed:?} (deadline 1 s)");
    }
    // The slots are free again: others are served.
    assert_eq!(health(&h, Duration::from_secs(5)).await, Some(200));
}

/// An HTTP/2 client connection whose driver answers the server's PINGs; the driver ends
/// when the server closes the connection.
async fn h2_client(
    h: &Harness,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr(h)).await.unwrap();
    let (send, connection) = hyper::client::conn::http2::handshake::<_, _, String>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, driver)
}

#[tokio::test]
async fn rule_idle_http2_connections_are_closed_even_when_they_answer_pings() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            header_timeout_seconds: 1,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    // One connection never opens a stream.
    let (_never, never_driver) = h2_client(&h).await;
    let started = Instant::now();
    // Another makes a request, then keeps the connection without a stream.
    let (mut used, used_driver) = h2_client(&h).await;
    let request = hyper::Request::get(format!("{}/healthz", h.url))
        .body(String::new())
        .unwrap();
    let response = used.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    tokio::time::timeout(Duration::from_secs(5), never_driver)
        .await
        .expect("an HTTP/2 connection with no stream is closed")
        .unwrap();
    eprintln!(
        "idle HTTP/2 connection held its slot for {:?} (deadline 1 s, PINGs every 1 s)",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), used_driver)
        .await
        .expect("an HTTP/2 connection idle after its request is closed")
        .unwrap();
}

#[tokio::test]
async fn http2_streams_in_progress_keep_their_connection() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            header_timeout_seconds: 1,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let (mut send, driver) = h2_client(&h).await;
    // Requests back to back for longer than the deadline: never idle, never closed.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let request = hyper::Request::get(format!("{}/healthz", h.url))
            .body(String::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!driver.is_finished());
}

#[tokio::test]
async fn rule_one_address_holds_at_most_its_share_of_connections() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 16,
            max_connections_per_address: 3,
            header_timeout_seconds: 0,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    // One more from the same address is closed at once, without waiting for a slot...
    let mut extra = TcpStream::connect(addr(&h)).await.unwrap();
    assert!(
        closed_after(&mut extra, Duration::from_secs(5))
            .await
            .is_some(),
        "over the per-address cap"
    );
    // ... while the three already open stay open.
    assert!(
        closed_after(&mut held[0], Duration::from_millis(200))
            .await
            .is_none()
    );
    // A connection closed frees its place for the address.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        served = health(&h, Duration::from_secs(5)).await;
        if served == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, Some(200));
}

#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_per_address_cap() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 16,
            max_connections_per_address: 2,
            header_timeout_seconds: 0,
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    assert_eq!(health(&h, Duration::from_secs(5)).await, Some(200));
}
