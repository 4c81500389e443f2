//! NETCONF message framing over SSH (RFC 6242): base:1.0 end-of-message (`]]>]]>`) and
//! base:1.1 chunked framing (`\n#<len>\n…\n##\n`).
//!
//! Pure byte handling, no I/O: the session feeds whatever the channel delivered into a
//! [`Decoder`] and takes whole messages out. What it is not: it does not look inside messages
//! (see `reply.rs`).

/// The end-of-message marker of base:1.0 framing.
const EOM: &[u8] = b"]]>]]>";
/// The largest chunk RFC 6242 allows.
const MAX_CHUNK: u64 = 4_294_967_295;
/// The largest message accepted from a server (a whole conductor configuration fits easily:
/// a million ban entries are about 150 MB of XML). Both framings stop at it: end-of-message
/// stops buffering once this many bytes came without a marker, and chunked framing refuses a
/// chunk header whose size would take the message past it before reading the chunk (a
/// declared 4 GiB chunk is refused at its header, never buffered).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Which framing a session uses; base:1.0 until both hellos advertise base:1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    EndOfMessage,
    Chunked,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("bad chunk header in a base:1.1 message: {0}")]
    BadChunk(String),
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// Frames one message for sending.
pub fn encode(framing: Framing, message: &str) -> Vec<u8> {
    let body = message.as_bytes();
    match framing {
        Framing::EndOfMessage => {
            let mut out = Vec::with_capacity(body.len() + EOM.len());
            out.extend_from_slice(body);
            out.extend_from_slice(EOM);
            out
        }
        Framing::Chunked => {
            let mut out = Vec::with_capacity(body.len() + 32);
            // One chunk per message (messages are far below the 4 GiB chunk limit).
            if !body.is_empty() {
                out.extend_from_slice(format!("\n#{}\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            out.extend_from_slice(b"\n##\n");
            out
        }
    }
}

/// Splits the incoming byte stream into messages.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    buf: Vec<u8>,
    /// End-of-message: where the marker search resumes. Chunked: bytes of `buf` consumed.
    pos: usize,
    /// Chunked: the message assembled so far from complete chunks.
    message: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            framing: Framing::EndOfMessage,
            buf: Vec::new(),
            pos: 0,
            message: Vec::new(),
        }
    }

    /// Switches framing after the hello exchange; bytes already buffered are kept.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        self.pos = 0;
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        match self.framing {
            Framing::EndOfMessage => self.next_eom(),
            Framing::Chunked => self.next_chunked(),
        }
    }

    fn next_eom(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let start = self.pos.saturating_sub(EOM.len() - 1);
        match find(&self.buf[start..], EOM) {
            Some(at) => {
                let end = start + at;
                // Whitespace between messages (a newline after the previous marker) is not
                // part of the next document.
                let skip = self.buf[..end]
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                let message = self.buf[skip..end].to_vec();
                self.buf.drain(..end + EOM.len());
                self.pos = 0;
                Ok(Some(message))
            }
            None if self.buf.len() > MAX_MESSAGE => Err(FramingError::TooLarge),
            None => {
                self.pos = self.buf.len();
                Ok(None)
            }
        }
    }

    fn next_chunked(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            let rest = &self.buf[self.pos..];
            // A chunk header is `\n#` then either `#\n` (end of message) or digits and `\n`.
            if rest.len() < 4 {
                return Ok(None);
            }
            if &rest[..2] != b"\n#" {
                return Err(FramingError::BadChunk(preview(rest)));
            }
            if &rest[2..4] == b"#\n" {
                self.pos += 4;
                self.buf.drain(..self.pos);
                self.pos = 0;
                return Ok(Some(std::mem::take(&mut self.message)));
            }
            let Some(nl) = rest[2..].iter().take(12).position(|&b| b == b'\n') else {
                if rest.len() >= 14 {
                    return Err(FramingError::BadChunk(preview(rest)));
                }
                return Ok(None);
            };
            let digits = &rest[2..2 + nl];
            let len =
                parse_chunk_len(digits).ok_or_else(|| FramingError::BadChunk(preview(rest)))?;
            let header = 2 + nl + 1;
            if self.message.len() + len > MAX_MESSAGE {
                return Err(FramingError::TooLarge);
            }
            if rest.len() < header + len {
                return Ok(None);
            }
            self.message.extend_from_slice(&rest[header..header + len]);
            self.pos += header + len;
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// A chunk size: 1-10 decimal digits, no leading zero, 1..=4294967295.
fn parse_chunk_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 10 || digits[0] == b'0' {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (n <= MAX_CHUNK).then(|| usize::try_from(n).ok()).flatten()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
        .escape_debug()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            out.push(String::from_utf8(m).unwrap());
        }
        out
    }

    #[test]
    fn end_of_message_split_anywhere() {
        let stream = b"<hello/>]]>]]><rpc-reply/>]]>]]><x";
        for cut in 0..stream.len() {
            let mut d = Decoder::new();
            d.push(&stream[..cut]);
            let mut got = all(&mut d);
            d.push(&stream[cut..]);
            got.extend(all(&mut d));
            assert_eq!(got, ["<hello/>", "<rpc-reply/>"], "cut at {cut}");
        }
    }

    #[test]
    fn chunked_round_trip_and_multi_chunk() {
        let mut d = Decoder::new();
        d.set_framing(Framing::Chunked);
        let mut stream = encode(Framing::Chunked, "<rpc-reply><ok/></rpc-reply>");
        stream.extend_from_slice(b"\n#4\n<rpc\n#18\n-reply><ok/></rpc-\n#6\nreply>\n##\n");
        for cut in 0..stream.len() {
            let mut d2 = Decoder::new();
            d2.set_framing(Framing::Chunked);
            d2.push(&stream[..cut]);
            let mut got = all(&mut d2);
            d2.push(&stream[cut..]);
            got.extend(all(&mut d2));
            assert_eq!(
                got,
                [
                    "<rpc-reply><ok/></rpc-reply>",
                    "<rpc-reply><ok/></rpc-reply>"
                ],
                "cut at {cut}"
            );
        }
        d.push(&stream);
        assert_eq!(all(&mut d).len(), 2);
    }

    #[test]
    fn chunked_refuses_bad_headers() {
        for bad in [
            &b"\n#0\nx\n##\n"[..],
            b"\n#01\nx",
            b"\n#x\n",
            b"<rpc-reply>",
            b"\n#99999999999\n",
        ] {
            let mut d = Decoder::new();
            d.set_framing(Framing::Chunked);
            d.push(bad);
            assert!(
                d.next_message().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_huge_declared_chunk_is_refused_at_its_header() {
        for header in [&b"\n#4294967295\n"[..], b"\n#268435457\n"] {
            let mut d = Decoder::new();
            d.set_framing(Framing::Chunked);
            d.push(header);
            d.push(b"<rpc-reply>");
            assert_eq!(d.next_message(), Err(FramingError::TooLarge));
        }
        // Chunks that each fit but together pass the limit.
        let mut d = Decoder::new();
        d.set_framing(Framing::Chunked);
        let half = vec![b'x'; MAX_MESSAGE / 2 + 1];
        d.push(format!("\n#{}\n", half.len()).as_bytes());
        d.push(&half);
        d.push(format!("\n#{}\n", half.len()).as_bytes());
        assert_eq!(d.next_message(), Err(FramingError::TooLarge));
    }

    #[test]
    fn end_of_message_stops_buffering_past_the_limit() {
        let mut d = Decoder::new();
        let block = vec![b'x'; 1024 * 1024];
        let mut result = Ok(None);
        for _ in 0..=MAX_MESSAGE / block.len() {
            d.push(&block);
            result = d.next_message();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FramingError::TooLarge));
        assert!(d.buf.len() <= MAX_MESSAGE + block.len());
    }

    #[test]
    fn encode_end_of_message() {
        assert_eq!(encode(Framing::EndOfMessage, "<a/>"), b"<a/>]]>]]>");
        assert_eq!(encode(Framing::Chunked, "<a/>"), b"\n#4\n<a/>\n##\n");
    }
}
