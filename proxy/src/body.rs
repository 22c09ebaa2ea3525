//! The one body type that flows through the proxy in both directions: a
//! streamed hyper body, a buffered copy (for retries and mirrors), or nothing.
//!
//! An enum rather than a boxed trait object, so forwarding a request costs no
//! allocation for the body wrapper.

use std::pin::Pin;
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
    /// A body streamed straight from the peer.
    Streaming(Incoming),
    /// The start of a request body that was read while trying to buffer it
    /// (then found too large), followed by the rest, streamed.
    Prefixed(Option<Bytes>, Incoming),
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

    /// A copy of a body that is held whole (empty or buffered), which can
    /// be sent again; `None` for a streamed one.
    pub fn try_clone(&self) -> Option<ProxyBody> {
        match self {
            ProxyBody::Empty => Some(ProxyBody::Empty),
            ProxyBody::Full(data) => Some(ProxyBody::Full(data.clone())),
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
        ProxyBody::Streaming(body)
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
            ProxyBody::Streaming(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::from),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Prefixed(prefix, rest) => match prefix.take() {
                Some(p) => Poll::Ready(Some(Ok(Frame::data(p)))),
                None => Pin::new(rest).poll_frame(cx).map_err(BodyError::from),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Streaming(body) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Prefixed(prefix, rest) => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Streaming(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Prefixed(prefix, rest) => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}
