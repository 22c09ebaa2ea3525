//! gitmesh's own HTTP/1.1 codec for the request path's hot side.
//!
//! hyper's HTTP/1 machinery is general purpose: a client connection is a
//! separate task fed through an mpsc/oneshot pair, and each message crosses
//! several buffering layers. This codec does the same work inline, in the
//! connection's own task, the way Pingora and Envoy own their codecs.
//! callgrind counts 32.4k instructions per proxied request with hyper on
//! both sides, 20.7k with this codec building header maps both ways, and
//! 17.5k with responses relayed raw (`proxy/bench/README.md`):
//!
//! - [`decode`]: a message head parsed with `httparse` into `http` types
//!   (values share the read buffer), the body's framing (RFC 9112 §6.3) and
//!   a body decoder (content-length, chunked, until close; a chunked
//!   body's trailer fields become its trailers frame, but for framing and
//!   connection fields);
//! - [`raw`]: a response's end-to-end header lines kept as they came, so a
//!   response no filter edits is relayed without an `http::HeaderMap`
//!   (turned into one where the proxy reads or edits headers, or hyper
//!   writes them);
//! - [`encode`]: request and response heads and chunked framing, trailers
//!   in the last chunk (a body framed by its length has nowhere to carry
//!   them: dropped, as RFC 9110 §6.5.1 allows);
//! - `client`: one upstream connection that sends a request and reads the
//!   response, its body streamed by `client::ResponseBody` and the
//!   connection handed back to the endpoint's idle pool at the body's end;
//! - `server`: the downstream fast path for the common request, which
//!   hands the connection to hyper at the first request it does not serve;
//! - `interim`: an upstream's 1xx responses (`103 Early Hints`) relayed
//!   from `client` to `server`'s client while the final response is awaited.
//!
//! What this codec does not do stays with hyper: HTTP/2 on either side,
//! HTTP/1.0 clients, streamed request bodies, `Expect: 100-continue`, and
//! protocol upgrades (the proxy strips `Upgrade` as a hop-by-hop header).

// The connection halves use the proxy's body and pool types: crate-only.
// The pure halves are public for the codec benchmark (`benches/codec.rs`).
pub(crate) mod client;
pub mod decode;
pub mod encode;
pub(crate) mod interim;
pub mod raw;
pub(crate) mod server;
