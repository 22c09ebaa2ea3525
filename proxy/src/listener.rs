//! Accept loops: HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one port, with
//! header size and count limits, a header read timeout for slow clients, a
//! gauge of open connections, and graceful draining on shutdown.
//!
//! Each connection starts on gitmesh's HTTP/1.1 fast path
//! ([`crate::h1::server`]); the first request it does not serve (HTTP/2's
//! preface, a malformed or oversized head, a streamed body, ...) hands the
//! connection and the bytes read so far to hyper for the rest of its life.
//!
//! A slow client cut off at the header read timeout in the middle of a
//! request head gets `408 Request Timeout`. hyper itself closes such a
//! connection without a word (its timeout error skips the automatic 4xx it
//! writes for parse errors, and it owns the socket until it returns), so the
//! accept loop keeps a duplicate of the socket's descriptor and writes the
//! 408 there once hyper has returned the timeout. An idle keep-alive
//! connection (no byte of a new request since the last response) is closed
//! quietly, as is a connection that never sent a byte.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use gitmesh_proxy_config::MtlsMode;

use crate::ambiguous;
use crate::body::{ProxyBody, materialize_headers};
use crate::h1;
use crate::h1::decode::RequestLimits;
use crate::h1::server::{CloseReason, ConnInfo, Ended, MAX_INLINE_BODY, REQUEST_TIMEOUT};
use crate::metrics::Metrics;
use crate::mtls::{InboundTls, MeshStream, MeshTls};
use crate::peer::PeerIdentity;
use crate::respond;

/// hyper's own HTTP/1.1 header count limit.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Limits applied to every downstream connection.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1.1 request.
    pub max_headers: usize,
    /// How long a client may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then drains.
pub fn spawn<H, F>(
    name: &'static str,
    listener: TcpListener,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<InboundTls>,
    handler: H,
) -> JoinHandle<()>
where
    H: Fn(Request<ProxyBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .writev(false);
    if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        // Any explicit value makes hyper size a header array per request on
        // the heap; its default (the same 100) uses a stack array instead.
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let open = metrics.connections(name);
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        metrics.error(name, "accept-failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let metrics = metrics.clone();
            let open = open.clone();
            let first_byte_timeout = limits.header_read_timeout;
            let tls = tls.clone();
            let conn_shutdown = shutdown.clone();
            let fast_limits = RequestLimits {
                max_headers: limits.max_headers,
                max_head_bytes: limits.max_header_bytes,
                max_body: MAX_INLINE_BODY,
            };
            tokio::spawn(async move {
                open.inc();
                // A client that connects and sends nothing is cut off at the
                // header read timeout too (before protocol detection).
                let mut probe = [0u8; 1];
                match tokio::time::timeout(first_byte_timeout, stream.peek(&mut probe)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let conn = Conn {
                            name,
                            peer,
                            builder,
                            watcher,
                            metrics: metrics.clone(),
                            handler,
                            shutdown: conn_shutdown,
                            header_read_timeout: first_byte_timeout,
                            limits: fast_limits,
                        };
                        match admit(name, tls.as_ref(), probe[0], &metrics) {
                            Admit::Plaintext => conn.serve_plain(stream).await,
                            Admit::Tls(tls) => {
                                let handshake = tls.accept(stream);
                                match tokio::time::timeout(first_byte_timeout, handshake).await {
                                    Ok(Ok((stream, identity))) => {
                                        conn.serve(stream, identity, None).await;
                                    }
                                    Ok(Err(e)) => {
                                        metrics.error(name, "tls-handshake-failed");
                                        tracing::debug!(listener = name, %peer, error = %e, "mTLS handshake refused");
                                    }
                                    Err(_) => metrics.error(name, "tls-handshake-timeout"),
                                }
                            }
                            Admit::Refuse(reason) => refuse(stream, reason).await,
                        }
                    }
                    Ok(_) => {}
                    Err(_) => metrics.error(name, "header-read-timeout"),
                }
                open.dec();
            });
        }
        drop(listener);
        if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = name,
                "drain timed out; closing remaining connections"
            );
        }
    })
}

/// What to do with a new connection, from its first byte.
enum Admit {
    Plaintext,
    Tls(Arc<MeshTls>),
    Refuse(&'static [u8]),
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Plaintext or mTLS, by the mode in force and the first byte (`permissive`
/// serves both on one port).
fn admit(name: &'static str, tls: Option<&InboundTls>, first: u8, metrics: &Metrics) -> Admit {
    let Some(tls) = tls else {
        return Admit::Plaintext;
    };
    let mode = (tls.mode)();
    match (first == TLS_HANDSHAKE, mode, &tls.tls) {
        (_, MtlsMode::Disabled, _) => Admit::Plaintext,
        (true, _, Some(t)) => Admit::Tls(t.clone()),
        (true, _, None) => {
            metrics.error(name, "mtls-unavailable");
            Admit::Refuse(b"")
        }
        (false, MtlsMode::Permissive, _) => Admit::Plaintext,
        (false, MtlsMode::Strict, _) => {
            metrics.error(name, "plaintext-refused");
            Admit::Refuse(MTLS_REQUIRED)
        }
    }
}

/// The answer to plaintext on a strict listener.
const MTLS_REQUIRED: &[u8] = b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\
x-gitmesh-error: mtls-required\r\nconnection: close\r\ncontent-length: 13\r\n\r\n\
mtls-required";

/// How long, and how many bytes, a refused connection is read after its
/// answer (see [`refuse`]).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;

/// Answers and closes a connection without serving it. The close lingers:
/// what the client already sent is read and dropped until it closes its side
/// (bounded by [`LINGER`] and [`LINGER_BYTES`]). Closing a socket with unread
/// input makes the kernel reset the connection, and a reset can reach the
/// client before it has read the answer.
async fn refuse(mut stream: TcpStream, answer: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !answer.is_empty() {
        let _ = stream.write_all(answer).await;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// One accepted connection, ready to be served.
struct Conn<H> {
    name: &'static str,
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    /// Held while the fast path serves, so draining waits for it too.
    watcher: hyper_util::server::graceful::Watcher,
    metrics: Arc<Metrics>,
    handler: H,
    shutdown: watch::Receiver<bool>,
    header_read_timeout: Duration,
    limits: RequestLimits,
}

impl<H, F> Conn<H>
where
    H: Fn(Request<ProxyBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    async fn serve_plain(self, stream: TcpStream) {
        // A second descriptor of the socket, to answer 408 after hyper
        // gives the connection up.
        let reply = stream
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::net::TcpStream::from);
        self.serve(MeshStream::Plain(stream), None, reply).await;
    }

    /// Serves HTTP on `stream`; every request carries the caller's
    /// `identity` (mTLS) in its extensions.
    async fn serve(
        self,
        stream: MeshStream,
        identity: Option<PeerIdentity>,
        reply: Option<std::net::TcpStream>,
    ) {
        let Conn {
            name,
            peer,
            builder,
            watcher,
            metrics,
            handler,
            mut shutdown,
            header_read_timeout,
            limits,
        } = self;
        let info = ConnInfo {
            peer,
            identity,
            header_read_timeout,
            limits,
        };
        let on_close = |reason: CloseReason| metrics.error(name, reason.as_str());
        let (stream, read) =
            match h1::server::serve(stream, &info, &handler, &mut shutdown, on_close).await {
                Ended::Closed => return,
                Ended::Handoff { io, read } => (io, read),
            };
        let identity = info.identity;
        let refusals = metrics.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(ProxyBody::from);
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            let refused = refuse_ambiguous(name, peer, &refusals, &req);
            let h = handler.clone();
            async move {
                if let Some(r) = refused {
                    return Ok::<_, Infallible>(r);
                }
                let (mut parts, mut body) = h(req, peer).await.into_parts();
                // hyper writes the map only.
                materialize_headers(&mut parts.headers, &mut body);
                Ok::<_, Infallible>(Response::from_parts(parts, body))
            }
        });
        let mid_request = Arc::new(AtomicBool::new(!read.is_empty()));
        let io = TrackedIo {
            io: TokioIo::new(stream),
            prefix: read,
            mid_request: mid_request.clone(),
        };
        let conn = builder.serve_connection(io, svc);
        let result = watcher.watch(conn).await;
        if let Err(e) = result
            && let Some(reason) = classify(e.as_ref())
        {
            metrics.error(name, reason);
            tracing::debug!(listener = name, %peer, error = %e, reason, "connection error");
            if reason == "header-read-timeout"
                && mid_request.load(Ordering::Relaxed)
                && let Some(mut reply) = reply
            {
                // Non-blocking like the original; a small answer fits the
                // empty send buffer.
                let _ = reply.write_all(REQUEST_TIMEOUT);
                let _ = reply.shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

/// A downstream connection that remembers whether bytes of a request
/// arrived since the last response bytes were written (a request head in
/// progress, for the 408 decision). It first yields `prefix`: what the fast
/// path read before handing the connection over.
struct TrackedIo {
    io: TokioIo<MeshStream>,
    prefix: Bytes,
    mid_request: Arc<AtomicBool>,
}

impl Read for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let part = self.prefix.split_to(n);
            buf.put_slice(&part);
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        // Bytes arrived (or the end of the stream, after which hyper stops
        // without a timeout, so it does not matter here).
        if let Poll::Ready(Ok(())) = &polled {
            self.mid_request.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl Write for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.mid_request.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.mid_request.store(false, Ordering::Relaxed);
        }
        polled
    }
}

/// The answer to a request that [`ambiguous::refusal`] refuses, counted
/// and logged. On HTTP/1.1 it closes the connection.
fn refuse_ambiguous(
    listener: &'static str,
    peer: SocketAddr,
    metrics: &Metrics,
    req: &Request<ProxyBody>,
) -> Option<Response<ProxyBody>> {
    let (status, reason) = ambiguous::refusal(req.method(), req.uri(), req.headers())?;
    metrics.error(listener, reason);
    tracing::info!(listener, %peer, status = status.as_u16(), reason, "request refused");
    let mut r = respond::error(status, reason);
    if req.version() < http::Version::HTTP_2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(r)
}

/// The counted reason of a connection-level error, for the bad-input ones.
fn classify(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return Some(if h.is_timeout() {
                "header-read-timeout"
            } else if h.is_parse_too_large() {
                "headers-too-large"
            } else if h.is_parse() {
                "malformed-request"
            } else {
                return None;
            });
        }
        source = err.source();
    }
    None
}
