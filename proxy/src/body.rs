//! The one body type that flows through the proxy in both directions: a
//! streamed hyper body, a buffered copy (for retries and mirrors), or nothing.
//!
//! An enum rather than a boxed trait object, so forwarding a request costs no
//! allocation for the body wrapper.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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
}

impl ProxyBody {
    pub fn bytes(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(bytes))
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        ProxyBody::Streaming(body)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Streaming(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Streaming(body) => body.size_hint(),
        }
    }
}
