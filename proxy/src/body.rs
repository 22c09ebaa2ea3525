//! The one body type that flows through the proxy in both directions: a
//! streamed hyper body, a buffered copy (for retries and mirrors), or nothing.
//!
//! An enum rather than a boxed trait object, so forwarding a request costs no
//! allocation for the body wrapper.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1::client::ResponseBody;
use crate::h1::decode::H1Error;
use crate::h1::raw::RawHeaders;

/// A request or response body as the proxy forwards it.
#[derive(Debug, Default)]
pub enum ProxyBody {
    /// No body at all.
    #[default]
    Empty,
    /// A fully buffered body; `None` once its single frame was sent.
    Full(Option<Bytes>),
    /// A buffered request body that ended in trailers, sent again as it
    /// came (a retry, a mirror): its data, then its trailers. Its length is
    /// not announced, so HTTP/1.1 frames it chunked, where trailers fit.
    Trailed {
        data: Option<Bytes>,
        /// Boxed: a map inline would make every body, the hot path's too,
        /// larger than the 128 bytes a move copies without a `memcpy` call.
        trailers: Option<Box<HeaderMap>>,
    },
    /// A request body streamed from the caller.
    Caller(CallerBody),
    /// An upstream response body (its connection goes back to the pool at
    /// the end).
    Upstream(UpstreamBody),
}

/// An upstream response body: from gitmesh's own HTTP/1.1 client (its
/// connection goes back to the pool at the end) or from hyper's HTTP/2 one.
#[derive(Debug)]
pub enum UpstreamBody {
    H1(ResponseBody),
    H2(Incoming),
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    H1(#[from] H1Error),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            UpstreamBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
        }
    }
}

/// A request body streamed from the caller: what was read of it while
/// trying to buffer it (then found too large), if anything, and the rest.
///
/// Once watched, it remembers whether reading it failed (a malformed chunk,
/// a caller gone mid-upload), so that a try it breaks is answered as the
/// caller's fault and not charged to the upstream (hyper's HTTP/2 client
/// reports such a try as a reset stream, which says nothing of the cause).
#[derive(Debug)]
pub struct CallerBody {
    prefix: Option<Bytes>,
    rest: Incoming,
    failed: Option<Arc<AtomicBool>>,
}

impl CallerBody {
    pub fn new(rest: Incoming) -> Self {
        CallerBody {
            prefix: None,
            rest,
            failed: None,
        }
    }

    /// The same body with `prefix` (read from it already) sent first.
    pub fn prefixed(mut self, prefix: Bytes) -> Self {
        debug_assert!(self.prefix.is_none(), "a body is buffered once");
        self.prefix = Some(prefix);
        self
    }

    /// A flag that turns true if reading the rest of the body fails.
    pub fn watch(&mut self) -> Arc<AtomicBool> {
        self.failed
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone()
    }
}

impl Body for CallerBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let polled = Pin::new(&mut this.rest).poll_frame(cx);
        if let (Poll::Ready(Some(Err(_))), Some(failed)) = (&polled, &this.failed) {
            failed.store(true, Ordering::Relaxed);
        }
        polled.map_err(BodyError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let inner = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

impl ProxyBody {
    pub fn bytes(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(bytes))
        }
    }

    /// An upstream's header lines not yet in the response's map.
    pub fn raw_headers(&self) -> Option<&RawHeaders> {
        match self {
            ProxyBody::Upstream(UpstreamBody::H1(b)) => b.raw_headers(),
            _ => None,
        }
    }

    /// For a body streamed from the caller, a flag that turns true if
    /// reading it fails (see [`CallerBody`]). None for a body that has
    /// nothing left to read (a GET's), which cannot fail: no allocation.
    pub fn watch_caller(&mut self) -> Option<Arc<AtomicBool>> {
        match self {
            ProxyBody::Caller(c) if !c.is_end_stream() => Some(c.watch()),
            _ => None,
        }
    }

    /// A copy of a body that is held whole (empty or buffered), which can
    /// be sent again; `None` for a streamed one.
    pub fn try_clone(&self) -> Option<ProxyBody> {
        match self {
            ProxyBody::Empty => Some(ProxyBody::Empty),
            ProxyBody::Full(data) => Some(ProxyBody::Full(data.clone())),
            ProxyBody::Trailed { data, trailers } => Some(ProxyBody::Trailed {
                data: data.clone(),
                trailers: trailers.clone(),
            }),
            _ => None,
        }
    }
}

/// Makes a response's header map whole: an upstream's raw header lines
/// move into `headers`. Whoever reads or edits the headers of a response
/// that may come from an upstream calls this first; only the HTTP/1.1
/// fast path's writer relays the lines raw.
pub fn materialize_headers(headers: &mut HeaderMap, body: &mut ProxyBody) {
    if let ProxyBody::Upstream(UpstreamBody::H1(b)) = body
        && let Some(raw) = b.take_raw_headers()
    {
        raw.append_to(headers);
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        ProxyBody::Caller(CallerBody::new(body))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Trailed { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(|t| Frame::trailers(*t)))
                    .map(Ok),
            ),
            ProxyBody::Caller(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Trailed { data, trailers } => data.is_none() && trailers.is_none(),
            ProxyBody::Caller(body) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Trailed { data, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(data.as_ref().map_or(0, |d| d.len() as u64));
                hint
            }
            ProxyBody::Caller(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body is moved a dozen times per request on its way through the
    /// layers of the proxy. Up to 128 bytes, a move is a few vector
    /// stores; past that, a call to `memcpy` (measured: 19 such calls per
    /// request when the body was 144 bytes, see `proxy/bench/README.md`).
    #[test]
    fn a_body_moves_without_a_memcpy_call() {
        assert!(std::mem::size_of::<ProxyBody>() <= 128);
        assert!(std::mem::size_of::<crate::h1::client::ResponseBody>() <= 128);
    }
}
