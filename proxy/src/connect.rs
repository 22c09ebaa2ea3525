//! Upstream connections: one keep-alive pool (hyper-util's legacy client) per
//! upstream service and protocol, behind a connector that counts open
//! connections and connects in progress for the circuit breaker and metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// Live connection counts of one upstream service.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub open: AtomicU32,
    pub connecting: AtomicU32,
}

/// Decrements a counter when dropped.
#[derive(Debug)]
struct CountGuard(Arc<ConnCounters>, fn(&ConnCounters) -> &AtomicU32);

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
    io: TokioIo<TcpStream>,
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
        self.io.connected()
    }
}

/// Wraps [`HttpConnector`] to count connections.
#[derive(Clone, Debug)]
pub struct CountingConnector {
    inner: HttpConnector,
    counters: Arc<ConnCounters>,
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
        Box::pin(async move {
            let io = fut.await?;
            drop(connecting);
            Ok(CountedIo {
                io,
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
