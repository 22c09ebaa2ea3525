//! Fuzz target: arbitrary bytes as what an upstream answers gitmesh's
//! HTTP/1.1 client, through `parse_response` and the `BodyDecoder`.
//!
//! The first byte picks the request method (GET or HEAD) and how many bytes
//! each read brings (1 to 128). Beyond "no panic", it checks:
//!
//! - reading the head and the body in small reads gives what reading them
//!   whole gives: the same head, the same body bytes, the same trailers,
//!   the same end (done, needs more, or an error). The decoder's state
//!   across reads (a chunk size line cut in two, a trailer section's
//!   search resumed) is where a proxy's framing goes wrong;
//! - the header lines relayed raw to callers (`RawHeaders::write`), read
//!   again as a head, are the fields the proxy sees in its map: what a
//!   caller reads is what the proxy's filters and metrics read.

#![no_main]

use bytes::BytesMut;
use gitmesh_proxy::h1::decode::{BodyDecoder, Decoded, ResponseHead, parse_response};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;

/// How reading a response ended, with everything it produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    head: Option<(u16, String, bool, Vec<(String, Vec<u8>)>)>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    end: &'static str,
}

fn fields(head: &ResponseHead) -> Vec<(String, Vec<u8>)> {
    let mut map = head.response.headers().clone();
    if let Some(raw) = head.raw.clone() {
        raw.append_to(&mut map);
    }
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Reads `data` arriving `step` bytes per read (`usize::MAX`: all at once).
fn read(data: &[u8], method: &Method, step: usize) -> Outcome {
    let mut arriving = data.chunks(step.min(data.len().max(1)));
    let mut buf = BytesMut::new();
    let mut outcome = Outcome {
        head: None,
        body: Vec::new(),
        trailers: None,
        end: "",
    };
    let head = loop {
        match parse_response(&mut buf, method) {
            Ok(Some(head)) => break head,
            Ok(None) => match arriving.next() {
                Some(more) => buf.extend_from_slice(more),
                None => {
                    outcome.end = "head incomplete";
                    return outcome;
                }
            },
            Err(_) => {
                outcome.end = "head error";
                return outcome;
            }
        }
    };
    check_raw_relay(&head);
    outcome.head = Some((
        head.response.status().as_u16(),
        format!("{:?}", head.framing),
        head.keep_alive,
        fields(&head),
    ));
    let mut decoder = BodyDecoder::new(head.framing);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(d)) => outcome.body.extend_from_slice(&d),
            Ok(Decoded::Trailers(t)) => {
                assert!(outcome.trailers.is_none(), "one trailer section");
                outcome.trailers = Some(t);
            }
            Ok(Decoded::Done) => {
                outcome.end = "done";
                return outcome;
            }
            Ok(Decoded::NeedMore) => match arriving.next() {
                Some(more) => buf.extend_from_slice(more),
                None => {
                    outcome.end = match decoder.eof() {
                        Ok(()) => "closed",
                        Err(_) => "cut",
                    };
                    return outcome;
                }
            },
            Err(_) => {
                outcome.end = "body error";
                return outcome;
            }
        }
    }
}

/// The raw lines, relayed under a status line, read back as the same fields.
fn check_raw_relay(head: &ResponseHead) {
    let Some(raw) = &head.raw else {
        return;
    };
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    raw.write(&mut wire);
    wire.extend_from_slice(b"\r\n");
    let relayed = parse_response(&mut BytesMut::from(&wire[..]), &Method::GET)
        .unwrap_or_else(|e| {
            panic!(
                "relayed lines do not parse ({e}): {:?}",
                String::from_utf8_lossy(&wire)
            )
        })
        .expect("a whole head");
    let mut expected = fields(head);
    let mut got = fields(&relayed);
    // The relay states the length itself; its own parse sees none.
    expected.retain(|(n, _)| n != "content-length");
    got.retain(|(n, _)| n != "content-length");
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&wire));
}

fuzz_target!(|input: &[u8]| {
    let Some((&choice, data)) = input.split_first() else {
        return;
    };
    let method = if choice & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let step = usize::from(choice >> 1) + 1;
    let whole = read(data, &method, usize::MAX);
    let pieces = read(data, &method, step);
    assert_eq!(pieces, whole, "read {step} bytes at a time");
});
