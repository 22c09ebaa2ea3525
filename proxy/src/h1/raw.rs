//! A response's header lines kept as the upstream sent them, so that a
//! response no filter touches is relayed without building an
//! `http::HeaderMap` and writing it out again (that pair was the largest
//! cost of relaying an HTTP/1.1 response).
//!
//! The lines kept are the end-to-end ones: the codec leaves out the
//! connection-level headers and `content-length` (the writer states the
//! framing itself). Whoever reads or edits a response's headers turns the
//! lines into a map first ([`RawHeaders::append_to`], through
//! `crate::body::materialize_headers`); the HTTP/1.1 fast path writes them
//! as they are ([`RawHeaders::write`]).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Runs of consecutive kept lines held inline. A head that needs more
/// (many connection-level lines interleaved) is turned into a map at once.
const MAX_SPANS: usize = 4;

/// The end-to-end header lines of a response head.
#[derive(Clone, Debug)]
pub struct RawHeaders {
    /// The whole head the lines are in.
    head: Bytes,
    /// Byte ranges of runs of kept lines, each line ending in CRLF.
    spans: [(u16, u16); MAX_SPANS],
    len: u8,
    has_date: bool,
    /// The upstream's `content-length`, left out of the lines, when
    /// `has_length` (two fields, not an `Option<u64>`: that would take 8
    /// bytes more, and a response body carries these lines through every
    /// move of the hot path).
    content_length: u64,
    has_length: bool,
}

impl RawHeaders {
    /// No lines yet, over `head` (at most 64 kB: offsets are 16-bit).
    pub fn new(head: Bytes) -> Self {
        RawHeaders {
            head,
            spans: [(0, 0); MAX_SPANS],
            len: 0,
            has_date: false,
            content_length: 0,
            has_length: false,
        }
    }

    /// Keeps the line that starts at `start` and whose value ends at
    /// `value_end`. `false`: the line cannot be kept raw (it does not end in
    /// CRLF, or the runs are used up), and the caller builds a map instead.
    pub fn keep(&mut self, start: usize, value_end: usize) -> bool {
        let Some(newline) = self.head[value_end..].iter().position(|b| *b == b'\n') else {
            return false;
        };
        let end = value_end + newline + 1;
        if self.head[end - 2] != b'\r' || end > usize::from(u16::MAX) {
            return false;
        }
        let (start, end) = (start as u16, end as u16);
        if self.len > 0 && self.spans[usize::from(self.len) - 1].1 == start {
            self.spans[usize::from(self.len) - 1].1 = end;
            return true;
        }
        if usize::from(self.len) == MAX_SPANS {
            return false;
        }
        self.spans[usize::from(self.len)] = (start, end);
        self.len += 1;
        true
    }

    /// A `date` line is among the kept ones.
    pub fn set_has_date(&mut self) {
        self.has_date = true;
    }

    pub fn set_content_length(&mut self, length: Option<u64>) {
        self.content_length = length.unwrap_or(0);
        self.has_length = length.is_some();
    }

    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The upstream's `content-length` (which a writer states again for a
    /// response without a body, such as the answer to HEAD).
    pub fn content_length(&self) -> Option<u64> {
        self.has_length.then_some(self.content_length)
    }

    fn spans(&self) -> impl Iterator<Item = &[u8]> {
        self.spans[..usize::from(self.len)]
            .iter()
            .map(|(s, e)| &self.head[usize::from(*s)..usize::from(*e)])
    }

    /// Appends the kept lines, CRLFs included.
    pub fn write(&self, out: &mut Vec<u8>) {
        for span in self.spans() {
            out.extend_from_slice(span);
        }
    }

    /// Appends the lines to `map` (names lowercased, values sharing the
    /// head), with `content-length` back among them.
    pub fn append_to(self, map: &mut HeaderMap) {
        for (s, e) in &self.spans[..usize::from(self.len)] {
            let (mut at, end) = (usize::from(*s), usize::from(*e));
            while at < end {
                let line_end = at
                    + self.head[at..end]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(end - at, |n| n + 1);
                if let Some((name, value)) = self.field(at, line_end) {
                    map.append(name, value);
                }
                at = line_end;
            }
        }
        if let Some(n) = self.content_length() {
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }

    /// The field on the line `start..end`. The codec only keeps lines the
    /// parser accepted, so the `None` arm (skipping the field) is a guard.
    fn field(&self, start: usize, end: usize) -> Option<(HeaderName, HeaderValue)> {
        let line = &self.head[start..end];
        let colon = line.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..].trim_ascii();
        let offset =
            start + colon + 1 + (value.as_ptr() as usize - line[colon + 1..].as_ptr() as usize);
        let value =
            HeaderValue::from_maybe_shared(self.head.slice(offset..offset + value.len())).ok()?;
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the lines of `head` (after its status line) whose names are
    /// not in `skip`.
    fn raw(head: &'static [u8], skip: &[&str]) -> Option<RawHeaders> {
        let head = Bytes::from_static(head);
        let mut raw = RawHeaders::new(head.clone());
        let mut at = head.iter().position(|b| *b == b'\n').unwrap() + 1;
        while head[at] != b'\r' && head[at] != b'\n' {
            let end = at + head[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
            let line = &head[at..end];
            let colon = line.iter().position(|b| *b == b':').unwrap();
            let name = std::str::from_utf8(&line[..colon]).unwrap();
            let value_end = end - 1 - usize::from(line.ends_with(b"\r\n"));
            if !skip.iter().any(|s| s.eq_ignore_ascii_case(name)) && !raw.keep(at, value_end) {
                return None;
            }
            at = end;
        }
        Some(raw)
    }

    fn written(raw: &RawHeaders) -> String {
        let mut out = Vec::new();
        raw.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_kept_lines_verbatim_and_skips_the_others() {
        let r = raw(
            b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nX-A:  1 \r\nx-b: 2\r\n\r\n",
            &["connection"],
        )
        .unwrap();
        assert_eq!(written(&r), "Server: up\r\nX-A:  1 \r\nx-b: 2\r\n");
        // Two runs: before and after the skipped line.
        assert_eq!(r.len, 2);
    }

    #[test]
    fn map_lowercases_names_trims_values_and_restores_the_length() {
        let mut r = raw(
            b"HTTP/1.1 200 OK\r\nX-A:  1 \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Empty:\r\n\r\n",
            &[],
        )
        .unwrap();
        r.set_content_length(Some(6));
        let mut map = HeaderMap::new();
        r.append_to(&mut map);
        assert_eq!(map["x-a"], "1");
        assert_eq!(map["x-empty"], "");
        assert_eq!(map.get_all("set-cookie").iter().count(), 2);
        assert_eq!(map[header::CONTENT_LENGTH], "6");
        assert_eq!(map.len(), 5);
    }

    #[test]
    fn bare_newlines_and_too_many_runs_are_refused() {
        assert!(raw(b"HTTP/1.1 200 OK\nX-A: 1\n\n", &[]).is_none());
        let interleaved: &[u8] = b"HTTP/1.1 200 OK\r\na: 1\r\nte: x\r\nb: 1\r\nte: x\r\nc: 1\r\n\
te: x\r\nd: 1\r\nte: x\r\ne: 1\r\n\r\n";
        assert!(raw(interleaved, &["te"]).is_none());
        let four: &[u8] = b"HTTP/1.1 200 OK\r\na: 1\r\nte: x\r\nb: 1\r\nte: x\r\nc: 1\r\n\
te: x\r\nd: 1\r\n\r\n";
        assert_eq!(
            written(&raw(four, &["te"]).unwrap()),
            "a: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\n"
        );
    }
}
