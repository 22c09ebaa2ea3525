//! gitmesh's own HTTP/1.1 codec for the request path's hot side.
//!
//! hyper serves every protocol the proxy speaks, but its HTTP/1 machinery is
//! general purpose: a client connection is a separate task fed through an
//! mpsc/oneshot pair, and each message crosses several buffering layers.
//! Profiles put hyper's HTTP/1 client at about 40% of the instructions of a
//! proxied request. This codec does the same work inline, in the task that
//! handles the request, the way Pingora and Envoy own their codecs:
//!
//! - [`decode`]: a message head parsed with `httparse` into `http` types
//!   (values share the read buffer), the body's framing (RFC 9112 §6.3) and
//!   a body decoder (content-length, chunked, until close);
//! - [`encode`]: request heads and chunked framing;
//! - [`client`]: one upstream connection that sends a request and reads the
//!   response, its body streamed by [`client::ResponseBody`] and the
//!   connection handed back to the endpoint's idle pool at the body's end.
//!
//! What this codec does not do stays with hyper: HTTP/2 upstreams, and
//! protocol upgrades (the proxy strips `Upgrade` as a hop-by-hop header).

pub mod client;
pub mod decode;
pub mod encode;
pub mod server;
