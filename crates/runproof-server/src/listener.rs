//! The accept loop: a cap on open connections, a deadline for each request's headers, and
//! graceful shutdown.
//!
//! At the cap, the loop stops accepting until a connection closes; new connections wait in
//! the kernel's listen backlog, and those already open are served as before. The header
//! deadline closes a connection that has not sent a complete request head in time: one
//! that sends nothing after connecting, one that trickles its headers, and one idle
//! between keep-alive requests. Together they bound what slow or idle clients can hold.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// How long to pause accepting after an accept error (such as running out of file
/// descriptors), so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Most open connections; 0: no cap.
    pub(crate) max_connections: usize,
    /// The longest a client may take to send a request's head; zero: no deadline.
    pub(crate) header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let mut builder = Builder::new(TokioExecutor::new());
    let header_timeout = (!limits.header_timeout.is_zero()).then_some(limits.header_timeout);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout);
    let graceful = GracefulShutdown::new();
    // Ends connections that have not sent a byte yet when the server stops.
    let stopping = tokio_util::sync::CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = match &permits {
            Some(permits) => {
                if permits.available_permits() == 0 {
                    metrics::counter!("runproof_connection_cap_reached_total").increment(1);
                }
                tokio::select! {
                    permit = Arc::clone(permits).acquire_owned() => match permit {
                        Ok(permit) => Some(permit),
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
            None => None,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            // The connection's slot is free again when this task ends.
            let _permit = permit;
            // The protocol is told from the first bytes, before hyper's own header deadline
            // runs: a client that sends nothing at all is held to the deadline here.
            if let Some(deadline) = header_timeout {
                let mut first = [0u8; 1];
                let spoke = tokio::select! {
                    peeked = tokio::time::timeout(deadline, stream.peek(&mut first)) => {
                        matches!(peeked, Ok(Ok(n)) if n > 0)
                    }
                    () = stopping.cancelled() => false,
                };
                if !spoke {
                    return;
                }
            }
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection).await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    graceful.shutdown().await;
    Ok(())
}
