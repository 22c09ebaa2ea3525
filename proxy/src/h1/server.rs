//! The downstream side: serves a connection's HTTP/1.1 requests in the
//! connection's own task, one at a time (pipelined requests wait their
//! turn), until the connection closes or a request needs hyper.
//!
//! The fast path takes the common request: HTTP/1.1, no transfer coding,
//! no `Expect` or `Upgrade`, a body of at most [`MAX_INLINE_BODY`] bytes
//! (read whole before the request is handled). Anything else, including
//! every malformed or oversized head and HTTP/2's preface, is handed to
//! hyper with the bytes read so far, so hyper's answers and limits apply
//! unchanged ([`Ended::Handoff`]).
//!
//! Slow clients: a request head must be complete within the header read
//! timeout; cut off mid-head they get `408`, idle they are closed quietly.
//! A small body read whole gets the same time after its head (hyper's path
//! streams bodies to the upstream instead, under the route's timeouts).
//! The timer is armed once per connection and moved only when it fires
//! early, so a kept-alive request costs a clock read, not a timer update.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::decode::{self, READ_CHUNK, RequestLimits, RequestParse};
use super::encode::{self, BodyLength};
use super::interim::Interim;
use crate::body::ProxyBody;
use crate::mtls::MeshStream;
use crate::peer::PeerIdentity;

/// Largest request body the fast path reads whole before handling the
/// request; larger ones stream through hyper.
pub const MAX_INLINE_BODY: usize = 64 * 1024;
/// Response bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;

/// How the fast path left the connection.
#[derive(Debug)]
pub enum Ended {
    /// Closed (by the client, an error, `Connection: close`, a timeout or
    /// shutdown).
    Closed,
    /// A request the fast path does not serve: hyper takes the connection,
    /// starting with `read` (bytes already read, unconsumed).
    Handoff { io: MeshStream, read: Bytes },
}

/// What a connection needs to know besides its socket.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The caller's verified identity (mTLS), put on every request.
    pub identity: Option<PeerIdentity>,
    pub header_read_timeout: Duration,
    pub limits: RequestLimits,
}

/// Why the fast path closed a connection, when it is a counted reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    HeaderReadTimeout,
    /// A body the fast path reads whole did not arrive in time.
    BodyReadTimeout,
}

impl CloseReason {
    /// The reason as metrics and `x-gitmesh-error` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderReadTimeout => "header-read-timeout",
            CloseReason::BodyReadTimeout => "body-read-timeout",
        }
    }
}

/// Serves requests on `io` with `handler`. A change of `shutdown` closes
/// the connection once it is idle (a request in progress finishes first).
/// `on_close` hears of counted reasons.
pub async fn serve<H, F>(
    io: MeshStream,
    info: &ConnInfo,
    handler: &H,
    shutdown: &mut watch::Receiver<bool>,
    on_close: impl Fn(CloseReason),
) -> Ended
where
    H: Fn(Request<ProxyBody>, SocketAddr) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    let mut conn = Conn {
        io,
        read: BytesMut::with_capacity(READ_CHUNK),
        write: Vec::with_capacity(1024),
    };
    let interim = Interim::default();
    let timer = tokio::time::sleep(info.header_read_timeout);
    tokio::pin!(timer);
    // One wait for shutdown per connection (not one per request): polled
    // whenever the connection is idle.
    let stopping = shutdown.changed();
    tokio::pin!(stopping);
    loop {
        // The head, within the header read timeout.
        let due = Instant::now() + info.header_read_timeout;
        let head = loop {
            match decode::parse_request(&mut conn.read, info.limits) {
                RequestParse::Ready(head) => break head,
                RequestParse::Unsupported => return conn.handoff(),
                RequestParse::Partial => {}
            }
            let idle = conn.read.is_empty();
            conn.read.reserve(READ_CHUNK);
            tokio::select! {
                // The read first: once bytes arrived, the other two are
                // not polled again (each poll of the shutdown wait takes a
                // lock); a request racing shutdown is served, as one in
                // progress is.
                biased;
                read = conn.io.read_buf(&mut conn.read) => match read {
                    Ok(0) | Err(_) => return Ended::Closed,
                    Ok(_) => {}
                },
                _ = &mut stopping, if idle => return Ended::Closed,
                () = &mut timer => {
                    if Instant::now() < due {
                        // Armed for an earlier request: move it on.
                        timer.as_mut().reset(due);
                        continue;
                    }
                    on_close(CloseReason::HeaderReadTimeout);
                    if !idle {
                        let _ = conn.io.write_all(REQUEST_TIMEOUT).await;
                        let _ = conn.io.shutdown().await;
                    }
                    return Ended::Closed;
                },
            }
        };
        let decode::RequestHead {
            request,
            body_length,
            keep_alive,
        } = head;

        // The body, read whole (bounded by MAX_INLINE_BODY), within the
        // same time a head gets.
        if conn.read.len() < body_length {
            let read_body = async {
                while conn.read.len() < body_length {
                    conn.read.reserve(body_length - conn.read.len());
                    match conn.io.read_buf(&mut conn.read).await {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
                true
            };
            match tokio::time::timeout(info.header_read_timeout, read_body).await {
                Ok(true) => {}
                Ok(false) => return Ended::Closed,
                Err(_) => {
                    on_close(CloseReason::BodyReadTimeout);
                    let _ = conn.io.write_all(BODY_TIMEOUT).await;
                    let _ = conn.io.shutdown().await;
                    return Ended::Closed;
                }
            }
        }
        let body = if body_length == 0 {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(conn.read.split_to(body_length).freeze()))
        };
        let head_request = request.method() == Method::HEAD;
        let mut request = request.map(|()| body);
        if let Some(id) = &info.identity {
            request.extensions_mut().insert(id.clone());
        }

        let response = handler(request, info.peer);
        tokio::pin!(response);
        let response = match conn.await_response(response, &interim).await {
            Ok(response) => response,
            Err(_) => return Ended::Closed,
        };
        if conn.write_response(response, head_request).await.is_err() || !keep_alive {
            let _ = conn.io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// The answer to a client too slow to send its request head (the same
/// words as the hyper path's).
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n\
x-gitmesh-error: header-read-timeout\r\nconnection: close\r\ncontent-length: 19\r\n\r\n\
header-read-timeout";

/// The answer to a client that sent a request head but not, in time, the
/// (small) body it announced.
const BODY_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n\
x-gitmesh-error: body-read-timeout\r\nconnection: close\r\ncontent-length: 17\r\n\r\n\
body-read-timeout";

struct Conn {
    io: MeshStream,
    read: BytesMut,
    write: Vec<u8>,
}

impl Conn {
    fn handoff(self) -> Ended {
        Ended::Handoff {
            io: self.io,
            read: self.read.freeze(),
        }
    }

    /// Waits for `response`, writing the 1xx heads `interim` receives
    /// meanwhile; those not written yet when it is ready stay in
    /// `self.write`, ahead of its head. An error: the client's socket
    /// failed (the response is dropped with it).
    async fn await_response<F: Future>(
        &mut self,
        mut response: Pin<&mut F>,
        interim: &Interim,
    ) -> std::io::Result<F::Output> {
        poll_fn(|cx| {
            let ready = interim.enter(|| response.as_mut().poll(cx));
            interim.drain_into(&mut self.write);
            if let Poll::Ready(response) = ready {
                return Poll::Ready(Ok(response));
            }
            while !self.write.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &self.write) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.write.drain(..n);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Writes `response` after any 1xx heads still in `self.write`; an
    /// error leaves the connection unusable.
    async fn write_response(
        &mut self,
        response: Response<ProxyBody>,
        head_request: bool,
    ) -> std::io::Result<()> {
        let (parts, mut body) = response.into_parts();
        let status = parts.status;
        let bodyless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let length = (!bodyless).then(|| match body.size_hint().exact() {
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Chunked,
        });
        encode::response_head(
            &mut self.write,
            status,
            &parts.headers,
            body.raw_headers(),
            length,
        );
        let Some(length) = length else {
            self.io.write_all(&self.write).await?;
            self.write.clear();
            return Ok(());
        };
        let mut sent: u64 = 0;
        let mut trailers = None;
        loop {
            // Frames that are ready now join the head in one write; before
            // waiting for more, what is gathered goes out.
            let ready = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
            let frame = match ready {
                Some(frame) => frame,
                None => {
                    if !self.write.is_empty() {
                        self.io.write_all(&self.write).await?;
                        self.write.clear();
                    }
                    body.frame().await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    Ok(_) => continue,
                    Err(frame) => {
                        // Written in the last chunk; a body framed by its
                        // length has nowhere to carry them.
                        trailers = frame.into_trailers().ok();
                        continue;
                    }
                },
            };
            sent += data.len() as u64;
            if length == BodyLength::Chunked {
                encode::chunk_start(&mut self.write, data.len());
            }
            if data.len() >= WRITE_BATCH {
                self.io.write_all(&self.write).await?;
                self.write.clear();
                self.io.write_all(&data).await?;
            } else {
                self.write.extend_from_slice(&data);
            }
            if length == BodyLength::Chunked {
                self.write.extend_from_slice(encode::CHUNK_END);
            }
            if self.write.len() >= WRITE_BATCH {
                self.io.write_all(&self.write).await?;
                self.write.clear();
            }
        }
        match length {
            BodyLength::Chunked => encode::last_chunk(&mut self.write, trailers.as_ref()),
            BodyLength::Known(n) if n != sent => {
                return Err(std::io::Error::other("response body length mismatch"));
            }
            _ => {}
        }
        if !self.write.is_empty() {
            self.io.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }
}
