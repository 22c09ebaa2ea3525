//! Upstream connections, counted while open and while connecting (for the
//! circuit breaker and metrics).
//!
//! HTTP/1.1 uses gitmesh's own codec ([`crate::h1`]) and a small keep-alive
//! pool per endpoint ([`IdleConns`], kept in the endpoint's state): a request
//! takes an idle connection (or dials one), and the connection goes back
//! when the response body has been read to its end. HTTP/2 (one multiplexed
//! connection) uses hyper-util's legacy client.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use http::{Method, Request, Response, Uri, header};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::{ProxyBody, UpstreamBody};
use crate::h1::client::{ClientConn, ResponseBody};
use crate::mtls::{MeshStream, UpstreamTls};

/// Live connection counts of one upstream service.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub open: AtomicU32,
    pub connecting: AtomicU32,
}

/// Decrements a counter when dropped.
#[derive(Debug)]
pub struct CountGuard(Arc<ConnCounters>, fn(&ConnCounters) -> &AtomicU32);

impl CountGuard {
    fn new(c: Arc<ConnCounters>, which: fn(&ConnCounters) -> &AtomicU32) -> Self {
        which(&c).fetch_add(1, Ordering::AcqRel);
        CountGuard(c, which)
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::AcqRel);
    }
}

/// An upstream connection that counts itself while open.
#[derive(Debug)]
pub struct CountedIo {
    io: TokioIo<MeshStream>,
    _open: CountGuard,
}

impl Read for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for CountedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
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
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl Connection for CountedIo {
    fn connected(&self) -> Connected {
        match self.io.inner() {
            MeshStream::Plain(s) => s.connected(),
            _ => Connected::new(),
        }
    }
}

/// Wraps [`HttpConnector`] to count connections.
#[derive(Clone, Debug)]
pub struct CountingConnector {
    inner: HttpConnector,
    counters: Arc<ConnCounters>,
    tls: Option<UpstreamTls>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = CountedIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CountedIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = CountGuard::new(self.counters.clone(), |c| &c.connecting);
        let counters = self.counters.clone();
        let fut = self.inner.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = fut.await?.into_inner();
            let stream = match tls {
                Some(tls) => tls.connect(tcp).await?,
                None => MeshStream::Plain(tcp),
            };
            drop(connecting);
            Ok(CountedIo {
                io: TokioIo::new(stream),
                _open: CountGuard::new(counters, |c| &c.open),
            })
        })
    }
}

/// Which pool a service uses; a new config reuses the pool of an equal key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey {
    pub http2: bool,
    pub connect_timeout: Option<Duration>,
    /// mTLS to the upstream's sidecars (and whom to expect there).
    pub tls: Option<UpstreamTls>,
}

/// A keep-alive pool to the endpoints of one upstream service.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    pub key: ClientKey,
    pub client: Client<CountingConnector, ProxyBody>,
    pub counters: Arc<ConnCounters>,
}

impl UpstreamClient {
    pub fn new(key: ClientKey) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(key.connect_timeout);
        http.enforce_http(true);
        let counters = Arc::new(ConnCounters::default());
        let connector = CountingConnector {
            inner: http,
            counters: counters.clone(),
            tls: key.tls.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .http2_only(key.http2)
            .set_host(true)
            .build(connector);
        UpstreamClient {
            key,
            client,
            counters,
        }
    }
}

/// How long an HTTP/1.1 connection may sit idle before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, connect timeout).
    Connect,
    /// The connection failed after the request was (possibly) sent.
    Reset,
    /// The upstream's HTTP/1.1 response could not be read as one (a
    /// malformed head, disagreeing lengths, an unknown transfer coding).
    Malformed,
    /// The caller's own request body failed while it was being sent (a
    /// malformed chunk, a caller gone mid-upload): not the upstream's fault.
    CallerBody,
}

struct IdleConn {
    conn: Box<ClientConn>,
    since: Instant,
}

/// Idle keep-alive HTTP/1.1 connections to one endpoint, most recently used
/// last (so busy periods reuse warm connections and old ones age out).
#[derive(Default)]
pub struct IdleConns {
    idle: Mutex<Vec<IdleConn>>,
}

impl std::fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.idle.lock().map_or(0, |v| v.len());
        f.debug_struct("IdleConns").field("idle", &n).finish()
    }
}

impl IdleConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection that is still open, if any.
    fn checkout(&self) -> Option<Box<ClientConn>> {
        let mut idle = self.lock();
        let now = Instant::now();
        if idle
            .first()
            .is_some_and(|c| now.saturating_duration_since(c.since) > IDLE_TIMEOUT)
        {
            idle.retain(|c| now.saturating_duration_since(c.since) <= IDLE_TIMEOUT);
        }
        while let Some(mut c) = idle.pop() {
            if c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Puts a connection whose last response was read to the end back.
    pub fn give_back(&self, conn: Box<ClientConn>) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(IdleConn {
                conn,
                since: Instant::now(),
            });
        }
    }
}

/// Whether a request may be sent again after it reached a connection that
/// then failed without a byte of answer (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a watched caller body failed.
fn failed(caller: &Option<Arc<AtomicBool>>) -> bool {
    caller.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
}

impl UpstreamClient {
    /// Sends `req` (absolute URI: `http://<endpoint>/path`) to the endpoint
    /// `authority`, whose idle HTTP/1.1 connections are `idle`.
    pub async fn send(
        &self,
        authority: &Authority,
        idle: &Arc<IdleConns>,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if self.key.http2 {
            let mut req = req;
            let caller = req.body_mut().watch_caller();
            // Boxed: hyper's request future is large, and callers that
            // also hold the HTTP/1.1 send would carry (and copy) it.
            return match Box::pin(self.client.request(req)).await {
                Ok(r) => Ok(r.map(UpstreamBody::H2)),
                Err(e) if e.is_connect() => Err(SendError::Connect),
                Err(_) if failed(&caller) => Err(SendError::CallerBody),
                Err(_) => Err(SendError::Reset),
            };
        }
        let (parts, body) = req.into_parts();
        // HTTP/1.1 to an origin server: origin-form request target.
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.send_h1(authority, idle, &parts.method, target, parts.headers, body)
            .await
    }

    /// Sends an HTTP/1.1 request (`target` in origin form) over one of
    /// `idle`'s connections to `authority`, or a new one, without building
    /// an `http::Request` (the try loop holds the request's parts already).
    /// A request without `Host` gets the endpoint's address.
    pub async fn send_h1(
        &self,
        authority: &Authority,
        idle: &Arc<IdleConns>,
        method: &Method,
        target: &str,
        mut headers: http::HeaderMap,
        mut body: ProxyBody,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if !headers.contains_key(header::HOST)
            && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, v);
        }
        let resend = body.try_clone();
        let caller = body.watch_caller();
        let mut body = Some(body);
        loop {
            let (conn, reused) = match idle.checkout() {
                Some(c) => (c, true),
                // Boxed: the dial's state would otherwise be part of (and
                // copied with) every request's future.
                None => (Box::pin(self.connect(authority)).await?, false),
            };
            let this_try = body.take().unwrap_or_default();
            match conn.send(method, target, &headers, this_try).await {
                Ok((head, conn)) => {
                    let (response, body) = ResponseBody::new(conn, head, idle.clone());
                    return Ok(response.map(|()| UpstreamBody::H1(body)));
                }
                // A kept-alive connection the upstream had closed: a request
                // that never left, or an idempotent one that got no answer,
                // goes again on a fresh connection.
                Err(f)
                    if reused
                        && (f.unsent || (f.nothing_received && idempotent(method)))
                        && resend.is_some() =>
                {
                    tracing::debug!(error = %f.error, upstream = %authority, "kept-alive connection closed; sending again on a new one");
                    body = resend.as_ref().and_then(ProxyBody::try_clone);
                }
                Err(f) => {
                    tracing::debug!(error = %f.error, upstream = %authority, "upstream HTTP/1.1 exchange failed");
                    return Err(if failed(&caller) {
                        SendError::CallerBody
                    } else if f.malformed {
                        SendError::Malformed
                    } else {
                        SendError::Reset
                    });
                }
            }
        }
    }

    /// Dials `authority` (and does the mTLS handshake when the upstream
    /// needs it).
    async fn connect(&self, authority: &Authority) -> Result<Box<ClientConn>, SendError> {
        let connecting = CountGuard::new(self.counters.clone(), |c| &c.connecting);
        let addr = (authority.host(), authority.port_u16().unwrap_or(80));
        let dial = TcpStream::connect(addr);
        let stream = match self.key.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, dial)
                .await
                .map_err(|_| SendError::Connect)?,
            None => dial.await,
        }
        .map_err(|_| SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let stream = match &self.key.tls {
            Some(tls) => {
                // The handshake is bounded by the connect timeout too.
                let handshake = tls.connect(stream);
                let done = match self.key.connect_timeout {
                    Some(limit) => tokio::time::timeout(limit, handshake)
                        .await
                        .map_err(|_| SendError::Connect)?,
                    None => handshake.await,
                };
                done.map_err(|e| {
                    tracing::warn!(error = %e, upstream = %authority, "mTLS handshake with the upstream failed");
                    SendError::Connect
                })?
            }
            None => MeshStream::Plain(stream),
        };
        drop(connecting);
        Ok(ClientConn::new(
            stream,
            CountGuard::new(self.counters.clone(), |c| &c.open),
        ))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream that answers 413 as soon as it has the request head and
    /// closes with the body unread (so the kernel resets the connection
    /// and the rest of the body cannot be written).
    async fn early_413() -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                seen.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
                .await
                .unwrap();
        });
        addr.to_string().parse().unwrap()
    }

    #[tokio::test]
    async fn an_upstreams_early_answer_beats_the_failed_body_write() {
        let authority = early_413().await;
        let client = UpstreamClient::new(ClientKey {
            http2: false,
            connect_timeout: Some(Duration::from_secs(2)),
            tls: None,
        });
        let idle = Arc::new(IdleConns::default());
        // Far more than the socket buffers hold, so the write fails.
        let body = ProxyBody::Full(Some(Bytes::from(vec![b'x'; 32 << 20])));
        let send = client.send_h1(
            &authority,
            &idle,
            &Method::POST,
            "/upload",
            http::HeaderMap::new(),
            body,
        );
        let response = tokio::time::timeout(Duration::from_secs(20), send)
            .await
            .expect("answered in time")
            .expect("the upstream's answer, not a reset");
        assert_eq!(response.status(), 413);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"too big!");
        assert!(idle.checkout().is_none(), "the connection is not reused");
    }
}
