//! Interim (1xx) responses relayed to a client of the HTTP/1.1 fast path.
//!
//! RFC 9110 §15.2: a proxy forwards 1xx responses unless it asked for them
//! itself. An upstream's `103 Early Hints` (or `102 Processing`) is read
//! by the upstream side ([`super::client`]) in the middle of the request's
//! task, while the downstream side ([`super::server`]) owns the client's
//! socket. They meet in the connection's [`Interim`] buffer, current on the
//! thread while the downstream side polls the request's handler
//! ([`Interim::enter`]): the upstream side appends the encoded head
//! ([`relay`]), and the downstream side writes it out while it waits for
//! the final response. (A thread-local set around each poll rather than
//! tokio's task-local: that one wraps the handler's 4 kB future in another
//! and costs two more moves of it, ~900 instructions per request measured
//! with callgrind.)
//!
//! Not relayed:
//! - `100 Continue`: the fast path serves no request with `Expect`
//!   (those go to hyper, which answers `100` itself), so an upstream's `100`
//!   answers nothing the client asked;
//! - `101 Switching Protocols`: the codec refuses it (the proxy does no
//!   upgrades here), so it never gets this far;
//! - anything to a request served by hyper (HTTP/2, and the HTTP/1.1
//!   requests the fast path hands over): hyper's server cannot send 1xx
//!   responses, and its tasks have no buffer;
//! - a mirrored request's: it runs in its own task, polled outside
//!   [`Interim::enter`].
//!
//! Each try's 1xx go out as they come, so a retried request may show the
//! client more than one (which RFC 9110 allows before the final response).
//! Heads the client has not taken yet are held up to [`MAX_PENDING`]
//! bytes; past that, more are dropped (an upstream sending 1xx without end
//! to a client that does not read cannot grow the proxy's memory).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::decode::ResponseHead;
use super::encode;
use crate::respond;

/// The most bytes of 1xx heads held for a client that has not read them.
pub const MAX_PENDING: usize = 16 * 1024;

thread_local! {
    /// The buffer of the request being polled on this thread, if any.
    static CURRENT: RefCell<Option<Interim>> = const { RefCell::new(None) };
}

/// A connection's buffer of encoded 1xx heads not yet written.
#[derive(Clone, Debug, Default)]
pub struct Interim(Arc<Mutex<Vec<u8>>>);

impl Interim {
    /// Runs `f` (a poll of the request's handler) with this buffer as the
    /// destination of the 1xx heads read meanwhile.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Interim>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }

    /// Moves the heads relayed so far to the end of `out`.
    pub fn drain_into(&self, out: &mut Vec<u8>) {
        let mut heads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !heads.is_empty() {
            out.append(&mut heads);
        }
    }
}

/// Hands a 1xx head read from an upstream to the client of the request in
/// progress, if it is a fast-path client and the status is one to relay.
pub fn relay(head: &ResponseHead) {
    let status = head.response.status();
    if !status.is_informational() || status == StatusCode::CONTINUE {
        return;
    }
    let _ = CURRENT.try_with(|current| {
        let current = current.borrow();
        let Some(interim) = current.as_ref() else {
            return;
        };
        let mut out = interim.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = out.len();
        match &head.raw {
            // Connection-level lines are not among the raw ones.
            Some(raw) => encode::interim_head(&mut out, status, head.response.headers(), Some(raw)),
            None => {
                let mut headers = head.response.headers().clone();
                respond::strip_hop_by_hop(&mut headers);
                encode::interim_head(&mut out, status, &headers, None);
            }
        }
        if out.len() > MAX_PENDING {
            out.truncate(held);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use http::Method;

    fn head(wire: &str) -> ResponseHead {
        let mut buf = BytesMut::from(wire);
        super::super::decode::parse_response(&mut buf, &Method::GET)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn early_hints_reach_the_entered_buffer_but_not_100() {
        let interim = Interim::default();
        interim.enter(|| {
            relay(&head("HTTP/1.1 100 Continue\r\n\r\n"));
            relay(&head(
                "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            ));
            relay(&head("HTTP/1.1 102 Processing\r\n\r\n"));
            relay(&head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        });
        let mut out = Vec::new();
        interim.drain_into(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
             HTTP/1.1 102 Processing\r\n\r\n"
        );
        let mut again = Vec::new();
        interim.drain_into(&mut again);
        assert!(again.is_empty(), "drained once");
    }

    #[test]
    fn connection_headers_are_not_relayed() {
        let interim = Interim::default();
        // `Connection` naming another header makes the codec build a map.
        let h = head(
            "HTTP/1.1 103 Early Hints\r\nConnection: x-hop\r\nX-Hop: 1\r\nLink: </b.js>\r\n\r\n",
        );
        assert!(h.raw.is_none());
        interim.enter(|| relay(&h));
        let mut out = Vec::new();
        interim.drain_into(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </b.js>\r\n\r\n"
        );
    }

    #[test]
    fn heads_a_client_does_not_take_are_held_up_to_a_bound() {
        let interim = Interim::default();
        let processing = head("HTTP/1.1 102 Processing\r\n\r\n");
        let one = "HTTP/1.1 102 Processing\r\n\r\n".len();
        interim.enter(|| {
            for _ in 0..10_000 {
                relay(&processing);
            }
        });
        let mut out = Vec::new();
        interim.drain_into(&mut out);
        assert_eq!(
            out.len(),
            MAX_PENDING / one * one,
            "whole heads, within the bound"
        );
        // Taken by the client: room again.
        interim.enter(|| relay(&processing));
        out.clear();
        interim.drain_into(&mut out);
        assert_eq!(out.len(), one);
    }

    #[test]
    fn only_the_entered_buffer_gets_heads_and_only_while_entered() {
        let (outer, inner) = (Interim::default(), Interim::default());
        let hints = head("HTTP/1.1 103 Early Hints\r\n\r\n");
        relay(&hints); // none entered: goes nowhere
        outer.enter(|| {
            inner.enter(|| relay(&hints));
            relay(&hints); // the outer one is current again
        });
        relay(&hints);
        let drained = |i: &Interim| {
            let mut out = Vec::new();
            i.drain_into(&mut out);
            String::from_utf8(out).unwrap().matches("103").count()
        };
        assert_eq!((drained(&outer), drained(&inner)), (1, 1));
    }
}
