//! One upstream HTTP/1.1 connection, driven by the request that uses it:
//! the request is written and the response head read in the request's own
//! task (no connection task, no channel between the two), and the response
//! body reads straight from the socket. At the body's end the connection
//! goes back to its endpoint's idle pool ([`IdleConns`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::decode::{self, BodyDecoder, Decoded, H1Error, READ_CHUNK, ResponseHead};
use super::encode::{self, BodyLength};
use super::interim;
use super::raw::RawHeaders;
use crate::body::ProxyBody;
use crate::connect::{CountGuard, IdleConns};
use crate::mtls::MeshStream;

/// Bodies up to this size are written with their head in one write.
const INLINE_BODY: usize = 16 * 1024;
/// How long a failed request write waits for the upstream's early answer.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// An open upstream connection between requests. Always boxed: it is
/// made once per connection and then moved with every request (through
/// the request's futures and the response body), where 8 bytes move
/// cheaper than 104.
#[derive(Debug)]
pub struct ClientConn {
    io: MeshStream,
    /// Bytes read but not consumed yet.
    read: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    write: Vec<u8>,
    _open: CountGuard,
}

/// Why a send failed, and what the caller may still do about it.
#[derive(Debug)]
pub struct SendFailure {
    pub error: H1Error,
    /// Not one byte of the request reached the connection.
    pub unsent: bool,
    /// Not one byte of a response came back.
    pub nothing_received: bool,
    /// The upstream stopped taking the rest of a request it had started
    /// to receive (the one failure an early answer can explain).
    pub write_cut: bool,
    /// What the upstream sent was not a valid response head.
    pub malformed: bool,
}

impl SendFailure {
    fn unsent(error: impl Into<H1Error>) -> Self {
        SendFailure {
            error: error.into(),
            unsent: true,
            nothing_received: true,
            write_cut: false,
            malformed: false,
        }
    }

    fn sent(error: impl Into<H1Error>, nothing_received: bool) -> Self {
        SendFailure {
            error: error.into(),
            unsent: false,
            nothing_received,
            write_cut: false,
            malformed: false,
        }
    }
}

impl ClientConn {
    /// Wraps a freshly dialled connection, counted open by `open`.
    pub fn new(io: MeshStream, open: CountGuard) -> Box<Self> {
        Box::new(ClientConn {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            _open: open,
        })
    }

    /// Whether an idle connection can take a request: nothing arrived on it
    /// since its last response (no close, no TLS alert, no stray bytes).
    /// Costs no system call unless the socket was flagged readable.
    pub fn is_open(&mut self) -> bool {
        let tcp = match &self.io {
            MeshStream::Plain(s) => s,
            MeshStream::Client(s) => s.get_ref().0,
            MeshStream::Server(s) => s.get_ref().0,
        };
        let mut cx = Context::from_waker(Waker::noop());
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                // Readable: the peer's close, or readiness a read finds stale.
                self.read.reserve(64);
                let polled =
                    tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.read);
                polled.is_pending() && self.read.is_empty()
            }
        }
    }

    /// Sends one request (`target` in origin form) and reads the response
    /// head. The connection comes back with the head, for the body.
    pub async fn send(
        mut self: Box<Self>,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: ProxyBody,
    ) -> Result<(ResponseHead, Box<ClientConn>), SendFailure> {
        if let Err(failure) = self.write_request(method, target, headers, body).await {
            // An upstream may answer before it has read the whole body (a
            // 413, say) and close, which fails the rest of the write: its
            // answer, when one came, is what the caller gets (as hyper
            // does), on a connection that is then closed. (A failure of
            // the client's own body waits for no answer.)
            if failure.write_cut
                && let Some(mut head) = self.early_answer(method).await
            {
                head.keep_alive = false;
                return Ok((head, self));
            }
            return Err(failure);
        }
        let head = self.read_head(method).await?;
        Ok((head, self))
    }

    /// A response head the upstream sent before the request was written
    /// whole: one already received, or arriving within a short wait (a
    /// closed or reset connection ends the wait at once).
    async fn early_answer(&mut self, method: &Method) -> Option<ResponseHead> {
        tokio::time::timeout(EARLY_ANSWER_WAIT, self.read_head(method))
            .await
            .ok()?
            .ok()
    }

    async fn write_request(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        mut body: ProxyBody,
    ) -> Result<(), SendFailure> {
        let exact = body.size_hint().exact();
        let length = encode::body_length(method, exact);
        self.write.clear();
        encode::request_head(&mut self.write, method, target, headers, length);
        let inline = match &mut body {
            ProxyBody::Empty => Some(None),
            ProxyBody::Full(bytes) if bytes.as_ref().is_none_or(|b| b.len() <= INLINE_BODY) => {
                Some(bytes.take())
            }
            _ => None,
        };
        if let Some(data) = inline {
            if let Some(data) = data {
                self.write.extend_from_slice(&data);
            }
            return self
                .io
                .write_all(&self.write)
                .await
                .map_err(SendFailure::unsent);
        }
        self.io
            .write_all(&self.write)
            .await
            .map_err(SendFailure::unsent)?;
        let mut sent: u64 = 0;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendFailure::sent(std::io::Error::other(e), true))?;
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Sent in the last chunk; a body framed by its length
                    // has nowhere to carry them.
                    trailers = frame.into_trailers().ok();
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if length == BodyLength::Chunked {
                self.write.clear();
                encode::chunk_start(&mut self.write, data.len());
                if data.len() <= INLINE_BODY {
                    // A small chunk goes out in one write with its framing.
                    self.write.extend_from_slice(&data);
                    self.write.extend_from_slice(encode::CHUNK_END);
                    self.io.write_all(&self.write).await.map_err(io_sent)?;
                } else {
                    self.io.write_all(&self.write).await.map_err(io_sent)?;
                    self.io.write_all(&data).await.map_err(io_sent)?;
                    self.io
                        .write_all(encode::CHUNK_END)
                        .await
                        .map_err(io_sent)?;
                }
            } else {
                if exact.is_some_and(|n| sent > n) {
                    return Err(SendFailure::sent(H1Error::BadContentLength, true));
                }
                self.io.write_all(&data).await.map_err(io_sent)?;
            }
        }
        match length {
            BodyLength::Chunked => {
                self.write.clear();
                encode::last_chunk(&mut self.write, trailers.as_ref());
                self.io.write_all(&self.write).await.map_err(io_sent)
            }
            BodyLength::Known(n) if n != sent => {
                Err(SendFailure::sent(H1Error::BadContentLength, true))
            }
            _ => Ok(()),
        }
    }

    /// Reads until a final (non-1xx) response head is complete; 1xx heads
    /// on the way are handed to [`interim::relay`].
    async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, SendFailure> {
        let mut received = false;
        loop {
            if !self.read.is_empty() {
                match decode::parse_response(&mut self.read, method) {
                    Ok(Some(head)) if head.response.status().is_informational() => {
                        interim::relay(&head);
                        continue;
                    }
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(SendFailure {
                            malformed: true,
                            ..SendFailure::sent(e, false)
                        });
                    }
                }
            }
            self.read.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return Err(SendFailure::sent(H1Error::Incomplete, !received)),
                Ok(_) => received = true,
                Err(e) => return Err(SendFailure::sent(e, !received)),
            }
        }
    }
}

fn io_sent(e: std::io::Error) -> SendFailure {
    SendFailure {
        write_cut: true,
        ..SendFailure::sent(e, true)
    }
}

/// A response body read from its upstream connection, which goes back to
/// the endpoint's idle pool once the body is complete (when the response
/// allowed keep-alive and nothing unexpected followed it).
#[derive(Debug)]
pub struct ResponseBody {
    /// `None` once the body is complete or failed.
    conn: Option<Box<ClientConn>>,
    decoder: BodyDecoder,
    /// Body bytes already taken out of the buffer, yielded first.
    ready: Option<Bytes>,
    /// The pool the connection goes back to; `None` when the response
    /// forbids reusing it. (One field for both keeps the body within the
    /// 128 bytes a move copies without a `memcpy` call.)
    idle: Option<Arc<IdleConns>>,
    /// The head's header lines while they are raw. They travel with the
    /// body because the body is what the proxy carries unchanged from the
    /// upstream to the downstream writer ([`crate::body::materialize_headers`]).
    headers: Option<RawHeaders>,
}

impl ResponseBody {
    /// The body that follows response `head`. A body that is already in
    /// the read buffer whole is taken out at once, so the connection is
    /// back in the pool before the response is relayed.
    pub fn new(
        conn: Box<ClientConn>,
        head: ResponseHead,
        idle: Arc<IdleConns>,
    ) -> (Response<()>, Self) {
        let ResponseHead {
            response,
            raw,
            framing,
            keep_alive,
        } = head;
        let mut body = ResponseBody {
            conn: Some(conn),
            decoder: BodyDecoder::new(framing),
            ready: None,
            idle: keep_alive.then_some(idle),
            headers: raw,
        };
        let buffered = body.conn.as_ref().map_or(0, |c| c.read.len() as u64);
        if let Some(rest) = body.decoder.remaining()
            && rest <= buffered
        {
            if let Some(conn) = body.conn.as_mut()
                && let Ok(Decoded::Data(data)) = body.decoder.decode(&mut conn.read)
            {
                body.ready = Some(data);
            }
            body.finish();
        }
        (response, body)
    }

    /// The upstream's header lines, while they are raw.
    pub fn raw_headers(&self) -> Option<&RawHeaders> {
        self.headers.as_ref()
    }

    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.headers.take()
    }

    /// The body is complete: the connection goes back to the pool if it
    /// can carry another request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Some(idle) = &self.idle
            && self.decoder.is_done()
            && conn.read.is_empty()
        {
            idle.give_back(conn);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.read) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(trailers)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            conn.read.reserve(READ_CHUNK);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read);
            match ready!(read) {
                Ok(0) => {
                    // The peer closed: the end of an until-close body, or
                    // an error. Either way the connection is done.
                    this.conn = None;
                    return Poll::Ready(this.decoder.eof().err().map(Err));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        let ready = self.ready.as_ref().map_or(0, |b| b.len() as u64);
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n + ready),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(ready);
                hint
            }
        }
    }
}
