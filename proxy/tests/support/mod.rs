//! Shared test helpers: real upstream hyper servers on 127.0.0.1:0, a client,
//! and a proxy started from a JSON config.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gitmesh_proxy::{Proxy, ProxySettings, RunningProxy};
use gitmesh_proxy_config::ProxyConfig;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Every test gives up after this long rather than hang.
pub const TEST_LIMIT: Duration = Duration::from_secs(20);

pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves `handler` on 127.0.0.1:0 over HTTP/1.1 and h2c.
pub async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let f = handler(req);
                    async move { Ok::<_, Infallible>(f.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

pub fn text(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Answers 200 with its name as the body, echoing request headers as
/// `x-echo-<name>` response headers.
pub async fn named(name: &'static str) -> Upstream {
    upstream(move |req: Request<Incoming>| async move {
        let mut r = text(200, name);
        for (k, v) in req.headers() {
            if let Ok(n) = http::HeaderName::from_bytes(format!("x-echo-{k}").as_bytes()) {
                r.headers_mut().insert(n, v.clone());
            }
        }
        r.headers_mut().insert(
            "x-echo-path",
            req.uri()
                .path_and_query()
                .unwrap()
                .as_str()
                .parse()
                .unwrap(),
        );
        r.headers_mut().insert(
            "x-echo-version",
            format!("{:?}", req.version()).parse().unwrap(),
        );
        r
    })
    .await
}

pub fn config(json: serde_json::Value) -> ProxyConfig {
    ProxyConfig::from_json(json.to_string().as_bytes()).expect("test config is valid")
}

pub async fn start(config: ProxyConfig) -> RunningProxy {
    Proxy::start(ProxySettings::loopback(), config)
        .await
        .unwrap()
}

/// A proxy (service `web`) whose outbound side sends service `up` to
/// `upstream`.
pub async fn start_outbound_to(upstream: SocketAddr) -> RunningProxy {
    start(config(serde_json::json!({
        "version": "c1", "service": "web",
        "upstreams": [{"name": "up", "endpoints": [{"address": upstream.to_string()}]}]
    })))
    .await
}

/// A proxy (service `up`) whose inbound side forwards to the local `app`.
pub async fn start_inbound_to(app: SocketAddr) -> RunningProxy {
    let settings = ProxySettings {
        app: Some(app.to_string()),
        ..ProxySettings::loopback()
    };
    Proxy::start(
        settings,
        config(serde_json::json!({"version": "c1", "service": "up"})),
    )
    .await
    .unwrap()
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A raw HTTP/1.1 upstream that writes exactly what `reply` returns for
/// each request (its path and body, the body read by `content-length`),
/// then closes the connection when `reply` says so. Counts accepted
/// connections. For what a real server library would not send: odd
/// framing, broken answers, closes without a header saying so.
pub async fn scripted_upstream<F>(reply: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(&str, &[u8]) -> (Vec<u8>, bool) + Send + Sync + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..end + length).skip(end).collect();
                    let (bytes, close) = reply(&path, &body);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One h2c (prior knowledge) connection to `addr`, on which requests name
/// the service in `:authority` (`http://<service>/path`), as gRPC clients do.
pub async fn h2_connection(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Writes `request`, raw bytes, to `addr` and reads until the peer closes
/// the connection (at most 5 s), keeping what arrived before a reset too.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the peer closes the connection within 5 s");
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends `req` (whose URI is a path) to `proxy` with `Host: host`.
pub async fn send(
    client: &TestClient,
    proxy: SocketAddr,
    host: &str,
    req: Request<Full<Bytes>>,
) -> Reply {
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("http://{proxy}{}", parts.uri).parse().unwrap();
    parts
        .headers
        .insert(http::header::HOST, host.parse().unwrap());
    let r = client
        .request(Request::from_parts(parts, body))
        .await
        .expect("the proxy answers");
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &TestClient, proxy: SocketAddr, host: &str, path: &str) -> Reply {
    send(
        client,
        proxy,
        host,
        Request::get(path).body(Full::default()).unwrap(),
    )
    .await
}

/// Plain GET of an admin path.
pub async fn admin_get(proxy: &RunningProxy, path: &str) -> Reply {
    let c = client();
    let r = c
        .get(
            format!("http://{}{path}", proxy.admin_addr())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
