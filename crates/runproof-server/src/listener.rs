//! The accept loop: caps on open connections, in all and per client address, deadlines for
//! what a connection must send, and graceful shutdown.
//!
//! At the cap, the loop stops accepting until a connection closes; new connections wait in
//! the kernel's listen backlog, and those already open are served as before. One address
//! (an IPv6 /64) holds at most `max_connections_per_address` of them; more are closed at
//! once, so that one address cannot fill the cap (trusted proxies, which carry everyone,
//! are exempt).
//!
//! Every deadline is the header deadline, counted from the connection's start: the first
//! bytes, which tell HTTP/1 from HTTP/2 (a client that sends part of the HTTP/2 preface and
//! stops is closed), then the first request's head. Afterwards a connection with no request
//! in progress for that long is closed: an HTTP/1 connection idle between keep-alive
//! requests, and an HTTP/2 connection with no open stream, even one that answers every
//! PING. Together they bound what slow or idle clients can hold.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use runproof_service::rate::AddressKey;

use crate::limits::{IpBlock, Shares, is_trusted};

/// How long to pause accepting after an accept error (such as running out of file
/// descriptors), so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The HTTP/2 connection preface (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a connection asked to close at shutdown may stay idle when there is no header
/// deadline.
const SHUTDOWN_IDLE: Duration = Duration::from_secs(5);

/// Limits of the accept loop.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Most open connections; 0: no cap.
    pub(crate) max_connections: usize,
    /// Most open connections from one address; 0: no cap.
    pub(crate) max_connections_per_address: usize,
    /// Proxies exempt from the per-address cap.
    pub(crate) trusted_proxies: Vec<IpBlock>,
    /// The header deadline (see the module's doc); zero: no deadline.
    pub(crate) header_timeout: Duration,
}

/// How each connection is served.
struct Settings {
    app: Router,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    header_timeout: Option<Duration>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let per_address = Shares::new(limits.max_connections_per_address);
    let header_timeout = (!limits.header_timeout.is_zero()).then_some(limits.header_timeout);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout);
    let settings = Arc::new(Settings {
        app,
        http1,
        http2,
        header_timeout,
    });
    let stopping = CancellationToken::new();
    // Each connection's task holds a sender; all are gone once every connection has ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
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
        let peer = remote.ip().to_canonical();
        let share = if is_trusted(&limits.trusted_proxies, peer) {
            None
        } else {
            match per_address.take(AddressKey::from(peer), 1) {
                Some(share) => Some(share),
                None => {
                    metrics::counter!("runproof_connection_per_address_cap_total").increment(1);
                    drop(stream);
                    continue;
                }
            }
        };
        let settings = Arc::clone(&settings);
        let stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            // The connection's places are free again when this task ends.
            let _held = (permit, share, open);
            serve_connection(stream, remote, &settings, &stopping).await;
        });
    }
    drop(listener);
    stopping.cancel();
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Which protocol a connection speaks.
enum Version {
    Http1,
    Http2,
}

/// Reads the first bytes of a connection, as many as it takes to tell HTTP/2's preface from
/// anything else; `None` when the client closes first.
async fn sniff(stream: &mut TcpStream) -> io::Result<Option<(Version, Vec<u8>)>> {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; H2_PREFACE.len()];
    loop {
        let want = H2_PREFACE.len().saturating_sub(seen.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(None);
        }
        seen.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&seen) {
            return Ok(Some((Version::Http1, seen)));
        }
        if seen.len() == H2_PREFACE.len() {
            return Ok(Some((Version::Http2, seen)));
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    settings: &Settings,
    stopping: &CancellationToken,
) {
    let started = Instant::now();
    let sniffed = tokio::select! {
        sniffed = within(settings.header_timeout, sniff(&mut stream)) => sniffed,
        () = stopping.cancelled() => return,
    };
    let (version, prefix) = match sniffed {
        Some(Ok(Some(sniffed))) => sniffed,
        Some(Ok(None)) => return,
        Some(Err(e)) => {
            tracing::trace!(error = %e, "connection ended before its first bytes");
            return;
        }
        None => {
            tracing::debug!(peer = %remote.ip(), "no protocol within the header deadline");
            return;
        }
    };
    let io = TokioIo::new(Rewind {
        prefix,
        read: 0,
        inner: stream,
    });
    let activity = Arc::new(watch::Sender::new(0usize));
    let service = {
        let activity = Arc::clone(&activity);
        let app = settings.app.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = Busy::start(&activity);
            request.extensions_mut().insert(ConnectInfo(remote));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
            }
        })
    };
    let first_idle = settings
        .header_timeout
        .map(|deadline| deadline.saturating_sub(started.elapsed()));
    let result = match version {
        Version::Http1 => {
            let connection = settings.http1.serve_connection(io, service);
            drive(connection, &activity, first_idle, settings, stopping).await
        }
        Version::Http2 => {
            let connection = settings.http2.serve_connection(io, service);
            drive(connection, &activity, first_idle, settings, stopping).await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// `future`, or `None` when `deadline` passes first; no deadline: `future`.
async fn within<F: Future>(deadline: Option<Duration>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// Runs a connection until it ends. Asked to close (at shutdown, or after a header deadline
/// with no request in progress), it finishes the requests in progress; if it is still there
/// after another idle deadline (an HTTP/2 client that never acknowledges the `GOAWAY`), it
/// is dropped.
async fn drive<C>(
    connection: C,
    activity: &watch::Sender<usize>,
    first_idle: Option<Duration>,
    settings: &Settings,
    stopping: &CancellationToken,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let mut in_progress = activity.subscribe();
    let mut idle = first_idle;
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            () = stopping.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
                idle = Some(settings.header_timeout.unwrap_or(SHUTDOWN_IDLE));
            }
            () = idle_for(&mut in_progress, idle.unwrap_or_default()), if idle.is_some() => {
                if closing {
                    return Ok(());
                }
                tracing::trace!("closing a connection with no request in progress");
                connection.as_mut().graceful_shutdown();
                closing = true;
                idle = settings.header_timeout;
            }
        }
    }
}

/// Resolves once no request has been in progress for `period`.
async fn idle_for(in_progress: &mut watch::Receiver<usize>, period: Duration) {
    loop {
        if *in_progress.borrow_and_update() == 0 {
            match tokio::time::timeout(period, in_progress.changed()).await {
                Err(_) => return,
                Ok(Ok(())) => {}
                // The connection holds the sender; without it there is nothing to watch.
                Ok(Err(_)) => return std::future::pending().await,
            }
        } else if in_progress.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// One request in progress on a connection, from its head until its answer is sent.
struct Busy(Arc<watch::Sender<usize>>);

impl Busy {
    fn start(activity: &Arc<watch::Sender<usize>>) -> Self {
        activity.send_modify(|n| *n = n.saturating_add(1));
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in progress until it is sent or
/// dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A stream whose first bytes, read to tell the protocol, are read again.
struct Rewind {
    prefix: Vec<u8>,
    read: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.read..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read = this.read.saturating_add(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
