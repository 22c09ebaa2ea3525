//! Reading HTTP/1.1: a response head into `http` types, the framing of the
//! body that follows (RFC 9112 §6.3), and a decoder that takes the body out
//! of the read buffer piece by piece without copying it.
//!
//! Pure functions over a buffer: the IO lives in `super::client`.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};

use super::raw::RawHeaders;

/// Most header fields in one message head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest message head, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes reserved in a read buffer before each read.
pub const READ_CHUNK: usize = 8 * 1024;
/// Largest chunk-size line (size and extensions) or trailer section.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// Most fields a trailer section may have.
const MAX_TRAILER_FIELDS: usize = 32;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("malformed message head: {0}")]
    Parse(httparse::Error),
    #[error("message head over {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid content-length")]
    BadContentLength,
    #[error("malformed chunked body")]
    BadChunk,
    #[error("a transfer coding other than chunked alone")]
    TransferCoding,
    #[error("the connection closed before the message was complete")]
    Incomplete,
    #[error("unexpected 101 Switching Protocols (no upgrade was asked for)")]
    UnexpectedUpgrade,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or a request without one).
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status and version; its headers are empty when they are in `raw`.
    pub response: Response<()>,
    /// The end-to-end header lines as they came (the usual case), for the
    /// proxy to relay as they are or turn into a map when it needs one.
    pub raw: Option<RawHeaders>,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
}

/// Byte offsets of one header in the buffer, so the buffer can be frozen
/// (and the values shared) after `httparse` lets go of it.
#[derive(Clone, Copy, Default)]
struct HeaderIndex {
    name: (u32, u32),
    value: (u32, u32),
}

/// Header offsets kept on the stack for the usual head; the rare head with
/// more fields spills into a vector. (Zeroing room for [`MAX_HEADERS`] on
/// every message cost more than parsing it.)
struct Indices {
    inline: [HeaderIndex; 24],
    len: usize,
    spill: Vec<HeaderIndex>,
}

impl Indices {
    fn new() -> Self {
        Indices {
            inline: [HeaderIndex::default(); 24],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, base: *const u8, name: &[u8], value: &[u8]) {
        let at = |part: &[u8]| {
            // Offsets within a head of at most MAX_HEAD_BYTES.
            let start = (part.as_ptr() as usize - base as usize) as u32;
            (start, start + part.len() as u32)
        };
        let index = HeaderIndex {
            name: at(name),
            value: at(value),
        };
        if self.len < self.inline.len() {
            self.inline[self.len] = index;
        } else {
            self.spill.push(index);
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &HeaderIndex> {
        self.inline[..self.len.min(self.inline.len())]
            .iter()
            .chain(&self.spill)
    }
}

/// Parses a response head at the start of `buf`, taking it out of the
/// buffer. `Ok(None)`: the head is not complete yet. `method` is the
/// request's (a response to HEAD has no body).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, H1Error> {
    let mut indices = Indices::new();
    let (len, code, version) = {
        let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(H1Error::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(H1Error::Parse(e)),
        };
        if len > MAX_HEAD_BYTES {
            return Err(H1Error::HeadTooLarge);
        }
        let base = buf.as_ptr();
        for h in parsed.headers.iter() {
            indices.push(base, h.name.as_bytes(), h.value);
        }
        (len, parsed.code.unwrap_or(0), parsed.version.unwrap_or(1))
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Parse(httparse::Error::Status))?;
    let (raw, headers, facts) = match raw_headers(&head, &indices) {
        Some((raw, facts)) => (Some(raw), HeaderMap::new(), facts),
        None => {
            let (headers, facts) = header_map(&head, &indices)?;
            (None, headers, facts)
        }
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(H1Error::UnexpectedUpgrade);
    }
    let framing = if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else {
        facts.framing(true)?
    };
    let keep_alive = framing != Framing::UntilClose && facts.persistent(version);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *response.headers_mut() = headers;
    Ok(Some(ResponseHead {
        response,
        raw,
        framing,
        keep_alive,
    }))
}

/// What [`parse_request`] made of the buffer.
// Not boxed: made once per request and moved once, where a box would cost
// an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RequestParse {
    /// The head is not complete yet (and within the limits).
    Partial,
    /// A request the fast path serves; its head is taken out of the buffer.
    Ready(RequestHead),
    /// Anything else (malformed, over a limit, HTTP/1.0, `CONNECT`,
    /// `Expect`, `Upgrade`, a transfer coding, a body over `max_body`):
    /// left in the buffer untouched, for hyper to serve or refuse.
    Unsupported,
}

/// A parsed HTTP/1.1 request head.
#[derive(Debug)]
pub struct RequestHead {
    pub request: http::Request<()>,
    /// Its body's length (`content-length`, else 0).
    pub body_length: usize,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
}

/// Limits a request head must keep to for the fast path.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    pub max_headers: usize,
    pub max_head_bytes: usize,
    /// Largest body read whole before the request is handled.
    pub max_body: usize,
}

/// Parses an HTTP/1.1 request head at the start of `buf`.
pub fn parse_request(buf: &mut BytesMut, limits: RequestLimits) -> RequestParse {
    let mut indices = Indices::new();
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let (len, method, target) = {
        let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        let len = match parsed.parse_with_uninit_headers(buf, &mut headers[..max_headers]) {
            Ok(httparse::Status::Complete(len)) if len <= limits.max_head_bytes => len,
            Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => {
                return RequestParse::Partial;
            }
            _ => return RequestParse::Unsupported,
        };
        if parsed.version != Some(1) {
            return RequestParse::Unsupported;
        }
        let base = buf.as_ptr();
        for h in parsed.headers.iter() {
            indices.push(base, h.name.as_bytes(), h.value);
        }
        let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes());
        let path = parsed.path.unwrap_or("");
        let start = path.as_ptr() as usize - base as usize;
        (len, method, start..start + path.len())
    };
    let Ok(method) = method else {
        return RequestParse::Unsupported;
    };
    if method == Method::CONNECT {
        return RequestParse::Unsupported;
    }
    let head = buf.split_to(len).freeze();
    // Past this point an unsupported request puts its head back (a copy,
    // on the rare path only), so hyper can still take it.
    let unsupported = |buf: &mut BytesMut| {
        let mut whole = BytesMut::from(&head[..]);
        whole.extend_from_slice(buf);
        *buf = whole;
        RequestParse::Unsupported
    };
    let Ok((headers, facts)) = header_map(&head, &indices) else {
        return unsupported(buf);
    };
    // Several `Host` lines, or one that is not `host[:port]`, are refused
    // (RFC 9112 §3.2): hyper's path answers them.
    if facts.expect_or_upgrade || facts.chunked.is_some() || facts.hosts > 1 || facts.bad_host {
        return unsupported(buf);
    }
    let body_length = match facts.framing(false) {
        Ok(Framing::Empty) => 0,
        Ok(Framing::Length(n)) if n <= limits.max_body as u64 => n as usize,
        _ => return unsupported(buf),
    };
    let Ok(uri) = http::Uri::from_maybe_shared(head.slice(target)) else {
        return unsupported(buf);
    };
    // Authority form, userinfo: hyper's path refuses them.
    if crate::ambiguous::bad_target(&method, &uri) {
        return unsupported(buf);
    }
    let keep_alive = facts.persistent(1);
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    RequestParse::Ready(RequestHead {
        request,
        body_length,
        keep_alive,
    })
}

/// The header map of a head (values share `head`), and what its framing
/// and connection headers say, gathered in the same pass.
fn header_map(head: &Bytes, indices: &Indices) -> Result<(HeaderMap, Facts), H1Error> {
    // Room for one more: the proxy adds a header to many requests (the
    // caller's identity on the inbound side, `Host` where it was missing),
    // and a map built to the exact count regrows on that insert
    // (~800 instructions, measured with callgrind).
    let mut headers = HeaderMap::with_capacity(indices.len + 1);
    let mut facts = Facts::default();
    for i in indices.iter() {
        let name = &head[i.name.0 as usize..i.name.1 as usize];
        let value = i.value.0 as usize..i.value.1 as usize;
        let kind = Kind::of(name);
        let names_others = facts.observe(kind, &head[value.clone()]);
        // `Connection` values that list other headers are kept, so that
        // the proxy's hop-by-hop stripping removes those too.
        if kind.connection_level() && !names_others {
            continue;
        }
        let name = match kind.name().or_else(|| mesh_name(name)) {
            Some(known) => known,
            None => HeaderName::from_bytes(name)
                .map_err(|_| H1Error::Parse(httparse::Error::HeaderName))?,
        };
        let value = HeaderValue::from_maybe_shared(head.slice(value))
            .map_err(|_| H1Error::Parse(httparse::Error::HeaderValue))?;
        headers.append(name, value);
    }
    Ok((headers, facts))
}

/// A response head's end-to-end lines kept raw (see [`RawHeaders`]), and
/// what its framing and connection headers say; `None` when the head needs
/// a map (a `Connection` header naming others, a bare-LF line, lines too
/// scattered), and then the caller builds one.
fn raw_headers(head: &Bytes, indices: &Indices) -> Option<(RawHeaders, Facts)> {
    let mut raw = RawHeaders::new(head.clone());
    let mut facts = Facts::default();
    for i in indices.iter() {
        let kind = Kind::of(&head[i.name.0 as usize..i.name.1 as usize]);
        if facts.observe(kind, &head[i.value.0 as usize..i.value.1 as usize]) {
            return None;
        }
        match kind {
            Kind::ContentLength => continue,
            Kind::Date => raw.set_has_date(),
            _ if kind.connection_level() => continue,
            _ => {}
        }
        if !raw.keep(i.name.0 as usize, i.value.1 as usize) {
            return None;
        }
    }
    raw.set_content_length(facts.content_length);
    Some((raw, facts))
}

/// What the codec makes of a header field by its name alone (compared as
/// bytes, ignoring case: cheaper than building a `HeaderName` first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// `te`, `keep-alive`, `proxy-connection`.
    OtherConnectionLevel,
    Expect,
    Date,
    /// Named here only to skip the name lookup: every request has one.
    Host,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        match name.len() {
            2 if is("te") => Kind::OtherConnectionLevel,
            4 if is("host") => Kind::Host,
            4 if is("date") => Kind::Date,
            6 if is("expect") => Kind::Expect,
            7 if is("upgrade") => Kind::Upgrade,
            10 if is("connection") => Kind::Connection,
            10 if is("keep-alive") => Kind::OtherConnectionLevel,
            14 if is("content-length") => Kind::ContentLength,
            16 if is("proxy-connection") => Kind::OtherConnectionLevel,
            17 if is("transfer-encoding") => Kind::TransferEncoding,
            _ => Kind::Other,
        }
    }

    /// Headers about this connection only, which the codec consumes: they
    /// never reach the request path (which would strip them anyway, RFC
    /// 9110 §7.6.1), so a common `Connection: keep-alive` costs no map
    /// entry. They are the proxy's hop-by-hop headers
    /// ([`crate::respond::is_hop_by_hop`]) but `Proxy-Authorization`, a
    /// credential the request path decides on.
    fn connection_level(self) -> bool {
        matches!(
            self,
            Kind::TransferEncoding | Kind::Connection | Kind::Upgrade | Kind::OtherConnectionLevel
        )
    }

    /// The standard name of a kind that has exactly one.
    fn name(self) -> Option<HeaderName> {
        Some(match self {
            Kind::ContentLength => header::CONTENT_LENGTH,
            Kind::TransferEncoding => header::TRANSFER_ENCODING,
            Kind::Connection => header::CONNECTION,
            Kind::Upgrade => header::UPGRADE,
            Kind::Expect => header::EXPECT,
            Kind::Date => header::DATE,
            Kind::Host => header::HOST,
            Kind::OtherConnectionLevel | Kind::Other => return None,
        })
    }
}

/// Names a mesh's requests commonly carry that `http` has no constant for
/// (tracing, request ids, forwarding, gRPC). `HeaderName::from_bytes`
/// allocates and copies such a name on every request; these are static.
static MESH_NAMES: [HeaderName; 16] = [
    HeaderName::from_static("b3"),
    HeaderName::from_static("baggage"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("x-b3-spanid"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("grpc-timeout"),
    HeaderName::from_static("grpc-encoding"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("grpc-accept-encoding"),
];

/// The static name for `name` if it is one of [`MESH_NAMES`] (any case).
/// By length first, as [`Kind::of`]: a name of another length costs one
/// jump.
fn mesh_name(name: &[u8]) -> Option<HeaderName> {
    let candidates: &[HeaderName] = match name.len() {
        2 => &MESH_NAMES[0..1],
        7 => &MESH_NAMES[1..2],
        9 => &MESH_NAMES[2..3],
        10 => &MESH_NAMES[3..4],
        11 => &MESH_NAMES[4..6],
        12 => &MESH_NAMES[6..10],
        13 => &MESH_NAMES[10..11],
        15 => &MESH_NAMES[11..12],
        16 => &MESH_NAMES[12..13],
        17 => &MESH_NAMES[13..15],
        20 => &MESH_NAMES[15..16],
        _ => return None,
    };
    candidates
        .iter()
        .find(|known| name.eq_ignore_ascii_case(known.as_str().as_bytes()))
        .cloned()
}

/// What a message's framing and connection headers say.
#[derive(Debug, Default)]
struct Facts {
    /// `transfer-encoding` present: whether it names chunked, alone, once.
    chunked: Option<bool>,
    /// `Host` lines seen (counted to two).
    hosts: u8,
    /// A `Host` value that is not `host[:port]`.
    bad_host: bool,
    content_length: Option<u64>,
    /// Unparseable or disagreeing `content-length` values.
    bad_length: bool,
    close: bool,
    keep_alive: bool,
    /// `Expect` or `Upgrade` present.
    expect_or_upgrade: bool,
}

impl Facts {
    /// Notes a field of `kind` with value `raw`. `true`: a `Connection`
    /// value that names headers besides `close` and `keep-alive`.
    fn observe(&mut self, kind: Kind, raw: &[u8]) -> bool {
        let tokens = || raw.split(|b| *b == b',').map(<[u8]>::trim_ascii);
        match kind {
            Kind::ContentLength => {
                for part in tokens() {
                    match parse_length(part) {
                        Some(n) if self.content_length.is_none_or(|l| l == n) => {
                            self.content_length = Some(n);
                        }
                        _ => self.bad_length = true,
                    }
                }
            }
            Kind::TransferEncoding => {
                // A second `transfer-encoding` line is a second coding.
                self.chunked = Some(chunked_alone(raw) && self.chunked.is_none());
            }
            Kind::Host => {
                self.hosts = self.hosts.saturating_add(1).min(2);
                self.bad_host |= !crate::ambiguous::valid_host(raw);
            }
            Kind::Connection => {
                let mut names_others = false;
                for token in tokens() {
                    let close = token.eq_ignore_ascii_case(b"close");
                    let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                    self.close |= close;
                    self.keep_alive |= keep_alive;
                    names_others |= !(close || keep_alive || token.is_empty());
                }
                return names_others;
            }
            Kind::Expect | Kind::Upgrade => self.expect_or_upgrade = true,
            Kind::OtherConnectionLevel | Kind::Date | Kind::Other => {}
        }
        false
    }

    /// The body's framing (RFC 9112 §6.3): chunked when it is the
    /// transfer coding (then `content-length` is ignored, and dropped), a
    /// `content-length` (several must agree), else nothing for a request
    /// and until-close for a response. A message with any other transfer
    /// coding is refused, as nginx does.
    fn framing(&self, response: bool) -> Result<Framing, H1Error> {
        match self.chunked {
            Some(true) => return Ok(Framing::Chunked),
            Some(false) => return Err(H1Error::TransferCoding),
            None => {}
        }
        if self.bad_length {
            return Err(H1Error::BadContentLength);
        }
        Ok(match self.content_length {
            Some(0) if !response => Framing::Empty,
            Some(n) => Framing::Length(n),
            None if response => Framing::UntilClose,
            None => Framing::Empty,
        })
    }

    /// Whether a message of `version` (httparse's minor version) leaves the
    /// connection open: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only
    /// with `Connection: keep-alive`.
    fn persistent(&self, version: u8) -> bool {
        if version >= 1 {
            !self.close
        } else {
            self.keep_alive
        }
    }
}

/// Whether a `transfer-encoding` value names chunked and nothing else.
/// Chunked alone is the one coding the proxy relays: with another (`gzip,
/// chunked`) the next hop would get the body unchunked but still coded,
/// under no header saying so. The fast path and hyper's path
/// ([`crate::ambiguous`]) both decide by this.
pub(crate) fn chunked_alone(value: &[u8]) -> bool {
    let mut codings = value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
    codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Digits only (no sign, no spaces), without overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// What the decoder produced from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A piece of the body.
    Data(Bytes),
    /// The trailer fields of a chunked body (end-to-end ones only); the
    /// body is complete.
    Trailers(HeaderMap),
    /// Nothing yet: read more bytes into the buffer.
    NeedMore,
    /// The body is complete.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    /// In the trailer section, whose end was looked for in the first
    /// `usize` bytes of the buffer already.
    Trailers(usize),
    UntilClose,
    Done,
}

/// The fields of a trailer section (its lines and the empty line), but
/// those about framing or the connection, which a trailer cannot carry
/// (RFC 9110 §6.5.1) and which the writer of the next hop states itself.
fn trailer_fields(section: &Bytes) -> Result<HeaderMap, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let parsed = match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err(H1Error::BadChunk),
    };
    let mut trailers = HeaderMap::with_capacity(parsed.len());
    for field in parsed.iter() {
        let kind = Kind::of(field.name.as_bytes());
        if kind.connection_level() || kind == Kind::ContentLength {
            continue;
        }
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| H1Error::BadChunk)?;
        let value = HeaderValue::from_maybe_shared(section.slice_ref(field.value))
            .map_err(|_| H1Error::BadChunk)?;
        trailers.append(name, value);
    }
    Ok(trailers)
}

/// Up to `n` bytes from the front of `buf` (none there: `None`), and how
/// many of the `n` are still to come.
fn take(buf: &mut BytesMut, n: u64) -> Option<(Bytes, u64)> {
    if buf.is_empty() {
        return None;
    }
    let len = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    Some((buf.split_to(len).freeze(), n - len as u64))
}

/// Takes a body out of a read buffer as its framing says.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of body still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body in `buf` (which it consumes).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Length(n) => {
                    let Some((data, rest)) = take(buf, n) else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if rest == 0 {
                        State::Done
                    } else {
                        State::Length(rest)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers(0)
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(H1Error::BadChunk);
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(H1Error::BadChunk),
                },
                State::ChunkData(n) => {
                    let Some((data, rest)) = take(buf, n) else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if rest == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(rest)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::BadChunk);
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(scanned) => {
                    // The trailer section is taken whole (at most
                    // MAX_TRAILERS bytes), up to its empty line.
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        continue;
                    }
                    // Resumed where the last look ended (less what may be
                    // the start of the final CRLF CRLF).
                    let from = scanned.saturating_sub(3);
                    let Some(end) = buf[from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| from + i)
                    else {
                        if buf.len() > MAX_TRAILERS {
                            return Err(H1Error::BadChunk);
                        }
                        self.state = State::Trailers(buf.len());
                        return Ok(Decoded::NeedMore);
                    };
                    if end + 4 > MAX_TRAILERS {
                        return Err(H1Error::BadChunk);
                    }
                    let section = buf.split_to(end + 4).freeze();
                    self.state = State::Done;
                    let trailers = trailer_fields(&section)?;
                    if !trailers.is_empty() {
                        return Ok(Decoded::Trailers(trailers));
                    }
                }
            }
        }
    }

    /// The peer closed the connection: the end of an until-close body, an
    /// error for any other unfinished one.
    pub fn eof(&mut self) -> Result<(), H1Error> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(H1Error::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, H1Error> {
        parse_response(&mut BytesMut::from(raw), &method)
    }

    /// A response head's headers as one map, raw lines included.
    fn headers(head: &ResponseHead) -> HeaderMap {
        let mut map = head.response.headers().clone();
        if let Some(raw) = head.raw.clone() {
            raw.append_to(&mut map);
        }
        map
    }

    /// Decodes all of `raw` fed in pieces of `step` bytes.
    fn decode_all(framing: Framing, raw: &[u8], step: usize) -> Result<(Vec<u8>, bool), H1Error> {
        let mut d = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => out.extend_from_slice(&b),
                Decoded::Trailers(_) => {}
                Decoded::Done => return Ok((out, true)),
                Decoded::NeedMore if fed >= raw.len() => {
                    d.eof()?;
                    return Ok((out, d.is_done()));
                }
                Decoded::NeedMore => {
                    let end = (fed + step).min(raw.len());
                    buf.extend_from_slice(&raw[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn mesh_names_are_the_names_from_bytes_would_make() {
        for known in &MESH_NAMES {
            let lower = known.as_str();
            // Each sits in the slice for its length.
            assert_eq!(HeaderName::from_bytes(lower.as_bytes()).unwrap(), *known);
            assert_eq!(
                mesh_name(lower.to_ascii_uppercase().as_bytes()).as_ref(),
                Some(known)
            );
        }
        assert_eq!(mesh_name(b"traceparentx"), None);
        assert_eq!(mesh_name(b"x-request-ix"), None);
        let head = "GET / HTTP/1.1\r\nHost: a\r\nTraceParent: 00-1-2-01\r\nX-Other: 1\r\n\r\n";
        let RequestParse::Ready(head) = parse_request(&mut BytesMut::from(head), LIMITS) else {
            panic!("parsed")
        };
        assert_eq!(head.request.headers()["traceparent"], "00-1-2-01");
        assert_eq!(head.request.headers()["x-other"], "1");
    }

    #[test]
    fn response_head_with_length() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 6\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello\n",
        );
        let head = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(head.response.status(), 200);
        assert_eq!(head.framing, Framing::Length(6));
        assert!(head.keep_alive);
        assert!(head.raw.is_some(), "the usual head stays raw");
        let h = headers(&head);
        assert_eq!(h["server"], "nginx");
        assert_eq!(h["content-length"], "6");
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert_eq!(&buf[..], b"hello\n", "the body stays in the buffer");
    }

    #[test]
    fn many_headers_spill_past_the_stack_array() {
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..40 {
            raw.push_str(&format!("x-h{i}: v{i}\r\n"));
        }
        raw.push_str("content-length: 0\r\n\r\n");
        let head = parse(&raw, Method::GET).unwrap().unwrap();
        assert_eq!(headers(&head).len(), 41);
        assert_eq!(headers(&head)["x-h39"], "v39");
        let too_many = raw.replace("content-length: 0\r\n", &"x: y\r\n".repeat(MAX_HEADERS));
        assert!(matches!(
            parse(&too_many, Method::GET),
            Err(H1Error::Parse(_))
        ));
    }

    #[test]
    fn partial_head_waits_and_huge_head_is_refused() {
        assert!(
            parse("HTTP/1.1 200 OK\r\nServer: ng", Method::GET)
                .unwrap()
                .is_none()
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES + 1));
        assert!(matches!(
            parse(&huge, Method::GET),
            Err(H1Error::HeadTooLarge)
        ));
        assert!(matches!(
            parse("HTTP/1.1 2x0 OK\r\n\r\n", Method::GET),
            Err(H1Error::Parse(_))
        ));
    }

    #[test]
    fn framing_of_responses() {
        let f = |raw: &str, m: Method| parse(raw, m).unwrap().unwrap().framing;
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD),
            Framing::Empty
        );
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            Framing::Empty
        );
        assert_eq!(
            f(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::GET
            ),
            Framing::Empty
        );
        assert_eq!(
            f("HTTP/1.1 100 Continue\r\n\r\n", Method::POST),
            Framing::Empty
        );
        // Chunked overrides a length (which is then dropped, RFC 9112 §6.3).
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 3\r\n\r\n",
                Method::GET
            ),
            Framing::Chunked
        );
        // Any other coding is refused: relayed unchunked, the body would
        // reach the caller still gzipped under no header saying so.
        for codings in [
            "gzip, chunked",
            "gzip",
            "chunked, chunked",
            "chunked\r\nTransfer-Encoding: chunked",
            "identity",
            "",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {codings}\r\n\r\n");
            assert!(
                matches!(parse(&raw, Method::GET), Err(H1Error::TransferCoding)),
                "{codings:?}"
            );
        }
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n", Method::GET),
            Framing::UntilClose
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                Method::GET
            ),
            Framing::Length(7)
        );
        assert!(matches!(
            parse(
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
                Method::GET
            ),
            Err(H1Error::BadContentLength)
        ));
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: +7\r\n\r\n", Method::GET),
            Err(H1Error::BadContentLength)
        ));
        assert!(matches!(
            parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET),
            Err(H1Error::UnexpectedUpgrade)
        ));
    }

    #[test]
    fn connection_level_kinds_are_the_proxys_hop_by_hop_headers_but_credentials() {
        for name in [
            "connection",
            "Transfer-Encoding",
            "upgrade",
            "TE",
            "trailer",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "content-length",
            "date",
            "expect",
            "x-connection",
            "host",
        ] {
            let header = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let hop =
                crate::respond::is_hop_by_hop(&header) && header != header::PROXY_AUTHORIZATION;
            let kind = Kind::of(name.as_bytes());
            assert_eq!(kind.connection_level(), hop, "{name}");
            if let Some(known) = kind.name() {
                assert_eq!(known, header, "{name}");
            }
        }
    }

    #[test]
    fn a_head_with_bare_newlines_is_read_into_a_map() {
        let head = parse(
            "HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 0\n\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(head.raw.is_none());
        assert_eq!(head.response.headers()["x-a"], "1");
        assert_eq!(head.framing, Framing::Length(0));
    }

    #[test]
    fn connection_level_headers_stay_in_the_codec() {
        let head = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nX-End: 1\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let map = headers(&head);
        let names: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-end"]);
        let mut lines = Vec::new();
        head.raw.as_ref().unwrap().write(&mut lines);
        assert_eq!(lines, b"X-End: 1\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        // A Connection header naming other headers is kept, for the proxy's
        // hop-by-hop stripping to act on.
        let head = parse(
            "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: close, x-secret\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(head.raw.is_none(), "a map, for the stripping to act on");
        assert_eq!(head.response.headers()["connection"], "close, x-secret");
        assert!(!head.keep_alive);
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        let ka = |raw: &str| parse(raw, Method::GET).unwrap().unwrap().keep_alive;
        assert!(ka("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(
            !ka("HTTP/1.1 200 OK\r\n\r\n"),
            "an until-close body ends the connection"
        );
    }

    const LIMITS: RequestLimits = RequestLimits {
        max_headers: 100,
        max_head_bytes: 8192,
        max_body: 16,
    };

    #[test]
    fn requests_the_fast_path_serves() {
        let mut buf =
            BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: reviews\r\n\r\nPOST / HTTP/1.1\r\n");
        let RequestParse::Ready(head) = parse_request(&mut buf, LIMITS) else {
            panic!("a plain GET is served");
        };
        assert_eq!(head.request.uri(), "/a?b=1");
        assert_eq!(head.request.headers()["host"], "reviews");
        assert_eq!((head.body_length, head.keep_alive), (0, true));
        assert_eq!(
            &buf[..],
            b"POST / HTTP/1.1\r\n",
            "a pipelined request stays"
        );
        assert!(matches!(
            parse_request(&mut buf, LIMITS),
            RequestParse::Partial
        ));

        let mut buf =
            BytesMut::from("PUT /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
        let RequestParse::Ready(head) = parse_request(&mut buf, LIMITS) else {
            panic!("a small body is served");
        };
        assert_eq!((head.body_length, head.keep_alive), (3, false));
        assert_eq!(&buf[..], b"abc");
    }

    #[test]
    fn other_requests_are_left_whole_for_hyper() {
        for raw in [
            "GET / HTTP/1.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\n\r\n",
            // Which host? hyper's path refuses it.
            "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: evil@a\r\n\r\n",
            // Authority form, for CONNECT alone, and userinfo: hyper's
            // path refuses them.
            "GET reviews HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://evil@reviews/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(raw);
            assert!(
                matches!(parse_request(&mut buf, LIMITS), RequestParse::Unsupported),
                "{raw:?}"
            );
            assert_eq!(&buf[..], raw.as_bytes(), "{raw:?} is left untouched");
        }
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        assert!(matches!(
            parse_request(&mut BytesMut::from(long.as_str()), LIMITS),
            RequestParse::Unsupported
        ));
        let few = RequestLimits {
            max_headers: 1,
            ..LIMITS
        };
        let two = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            parse_request(&mut BytesMut::from(two), few),
            RequestParse::Unsupported
        ));
    }

    /// What a header map's framing headers say.
    fn facts(h: &HeaderMap) -> Facts {
        let mut f = Facts::default();
        for (name, value) in h {
            f.observe(Kind::of(name.as_str().as_bytes()), value.as_bytes());
        }
        f
    }

    fn body_framing(h: &HeaderMap, response: bool) -> Result<Framing, H1Error> {
        facts(h).framing(response)
    }

    #[test]
    fn request_framing() {
        let mut h = HeaderMap::new();
        assert_eq!(body_framing(&h, false).unwrap(), Framing::Empty);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(body_framing(&h, false).unwrap(), Framing::Empty);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(body_framing(&h, false).unwrap(), Framing::Length(12));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        assert!(
            body_framing(&h, false).is_err(),
            "a request must end in chunked"
        );
    }

    #[test]
    fn length_body_in_any_pieces() {
        for step in [1, 3, 100] {
            let (body, done) = decode_all(Framing::Length(5), b"hello", step).unwrap();
            assert_eq!((body.as_slice(), done), (&b"hello"[..], true));
        }
        assert!(matches!(
            decode_all(Framing::Length(9), b"hello", 2),
            Err(H1Error::Incomplete)
        ));
    }

    #[test]
    fn length_body_leaves_the_next_message_in_the_buffer() {
        let mut d = BodyDecoder::new(Framing::Length(2));
        let mut buf = BytesMut::from("okHTTP/1.1");
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"ok"))
        );
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Done);
        assert_eq!(&buf[..], b"HTTP/1.1");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 7, 1000] {
            let mut d = BodyDecoder::new(Framing::Chunked);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut trailers = None;
            let mut fed = 0;
            loop {
                match d.decode(&mut buf).unwrap() {
                    Decoded::Data(b) => out.extend_from_slice(&b),
                    Decoded::Trailers(t) => {
                        assert!(d.is_done(), "trailers end the body");
                        trailers = Some(t);
                    }
                    Decoded::Done => break,
                    Decoded::NeedMore => {
                        let end = (fed + step).min(raw.len());
                        assert!(end > fed, "ran out of input at step {step}");
                        buf.extend_from_slice(&raw[fed..end]);
                        fed = end;
                    }
                }
            }
            assert_eq!(out, b"hello world", "step {step}");
            assert_eq!(trailers.expect("trailers")["x-trailer"], "1", "step {step}");
            let mut rest = buf.to_vec();
            rest.extend_from_slice(&raw[fed..]);
            assert_eq!(rest, b"NEXT", "step {step}");
        }
    }

    /// Everything a chunked decoder yields for `raw`, given whole.
    fn chunked_frames(raw: &[u8]) -> Result<Vec<Decoded>, H1Error> {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(raw);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Decoded::Done => return Ok(out),
                Decoded::NeedMore => return Err(H1Error::Incomplete),
                decoded => out.push(decoded),
            }
        }
    }

    #[test]
    fn trailers_keep_end_to_end_fields_only() {
        let out = chunked_frames(
            b"2\r\nok\r\n0\r\nX-Checksum: abc\r\ncontent-length: 9\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\nserver-timing: db;dur=5\r\n\r\n",
        )
        .unwrap();
        let Some(Decoded::Trailers(t)) = out.last() else {
            panic!("no trailers: {out:?}");
        };
        let names: Vec<&str> = t.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-checksum", "server-timing"]);
        assert_eq!(t["x-checksum"], "abc");
        // Only framing fields: no trailers at all.
        let out = chunked_frames(b"2\r\nok\r\n0\r\ncontent-length: 9\r\n\r\n").unwrap();
        assert_eq!(out, [Decoded::Data(Bytes::from_static(b"ok"))]);
    }

    #[test]
    fn trailer_sections_are_bounded() {
        let mut raw = b"0\r\n".to_vec();
        while raw.len() <= MAX_TRAILERS {
            raw.extend_from_slice(b"x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // Over the bound before its end arrived, and with its end.
        assert!(matches!(chunked_frames(&raw), Err(H1Error::BadChunk)));
        raw.extend_from_slice(b"\r\n");
        assert!(matches!(chunked_frames(&raw), Err(H1Error::BadChunk)));
        assert!(matches!(
            chunked_frames(b"0\r\nbad name: 1\r\n\r\n"),
            Err(H1Error::BadChunk)
        ));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        assert!(matches!(
            decode_all(Framing::Chunked, b"zz\r\n", 10),
            Err(H1Error::BadChunk)
        ));
        assert!(matches!(
            decode_all(Framing::Chunked, b"2\r\nokXX0\r\n\r\n", 10),
            Err(H1Error::BadChunk)
        ));
        let long = format!("1;{}", "e".repeat(MAX_CHUNK_LINE + 1));
        assert!(matches!(
            decode_all(Framing::Chunked, long.as_bytes(), 10_000),
            Err(H1Error::BadChunk)
        ));
        assert!(matches!(
            decode_all(Framing::Chunked, b"5\r\nhel", 10),
            Err(H1Error::Incomplete)
        ));
    }

    #[test]
    fn until_close_ends_at_eof() {
        let (body, done) = decode_all(Framing::UntilClose, b"all of it", 4).unwrap();
        assert_eq!((body.as_slice(), done), (&b"all of it"[..], true));
    }
}
