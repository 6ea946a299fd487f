//! SPDY/3.1 framing: the subset a port-forward session uses (SYN_STREAM,
//! SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and
//! DATA), as a [`tokio_util::codec`] codec.
//!
//! No maintained Rust crate speaks SPDY/3.1 (the protocol was retired in favour
//! of HTTP/2), but Kubernetes still uses it for port-forward, so this is a small
//! hand-written codec. Header blocks are zlib streams primed with the SPDY/3
//! dictionary; one compression context lives for the whole session in each
//! direction, every block ending in a sync flush.
//!
//! Flow control is not enforced: the Go implementation both kubectl and the
//! kubelet use (moby/spdystream) neither sends nor honours WINDOW_UPDATE, so
//! those frames are parsed and ignored.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

/// The protocol version this codec speaks.
pub const VERSION: u16 = 3;
/// A frame's length field is 24 bits.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// The most a header block may inflate to (a port-forward stream has three
/// short headers; this only bounds what a hostile peer can make us allocate).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// `FLAG_FIN` on SYN_STREAM, SYN_REPLY, HEADERS and DATA: the sender is done.
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (SPDY/3.1 section 2.6.3).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
}

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Errors of the SPDY codec. Any of them ends the session.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        frame: &'static str,
        reason: &'static str,
    },
    #[error("header block inflates past {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge,
    #[error("frame payload of {0} bytes does not fit a SPDY frame")]
    FrameTooLarge(usize),
    #[error("inflating a header block: {0}")]
    Inflate(#[from] flate2::DecompressError),
    #[error("deflating a header block: {0}")]
    Deflate(#[from] flate2::CompressError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Header name/value pairs of a stream. Names are lower case on the wire.
pub type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// SETTINGS: `(flags, id, value)` entries.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type this codec does not know (NOOP, CREDENTIAL, ...):
    /// SPDY says to ignore it.
    Unknown(u16),
}

/// The value of header `name` (names compare case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The SPDY/3 header compression dictionary (SPDY/3.1 section 2.6.10.1).
/// It is a run of length-prefixed words followed by a run of plain text; it
/// is built from those two parts rather than spelled out byte by byte.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TEXT: &[&str] = &[
            "100101201202205206300302303304305306307",
            "402405406407408409410411412413414415416417",
            "502504505",
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,",
            "application/xml,application/xhtml+xml,text/plain,text/javascript,",
            "publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            // Every word is far shorter than u32::MAX.
            d.extend_from_slice(&u32::try_from(w.len()).unwrap_or(0).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        for t in TEXT {
            d.extend_from_slice(t.as_bytes());
        }
        d
    })
}

/// Encodes and decodes frames for one direction pair of a session. Use one
/// codec per session side: the header compression contexts are stateful.
/// The frames of one SPDY session: incoming ones, a sender for outgoing
/// ones, and the future that writes those in order (run it as a task); it
/// closes the connection once every sender is gone. Each direction has its
/// own compression context.
pub struct SessionIo<R> {
    pub frames: FramedRead<R, Codec>,
    pub out: mpsc::Sender<Frame>,
    pub write: futures::future::BoxFuture<'static, ()>,
}

/// [`SessionIo`] over `reader`/`writer`.
pub fn session_io<R, W>(reader: R, writer: W) -> Result<SessionIo<R>, SpdyError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let frames = FramedRead::new(reader, Codec::new()?);
    let mut sink = FramedWrite::new(writer, Codec::new()?);
    let (out, mut out_rx) = mpsc::channel::<Frame>(64);
    let write = Box::pin(async move {
        while let Some(f) = out_rx.recv().await {
            if let Err(e) = sink.send(f).await {
                tracing::debug!(error = %e, "SPDY session write failed");
                return;
            }
        }
        let _ = sink.close().await; // the peer may be gone already
    });
    Ok(SessionIo { frames, out, write })
}

pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec with fresh compression contexts.
    pub fn new() -> Result<Codec, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(dictionary())?;
        Ok(Codec {
            inflate: Decompress::new(true),
            deflate,
        })
    }

    fn inflate_block(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).max(256));
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlockTooLarge);
                }
                out.reserve(out.capacity());
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary())?;
                }
                Err(e) => return Err(e.into()),
            }
            let consumed = usize::try_from(self.inflate.total_in() - in_before).unwrap_or(0);
            input = input.get(consumed..).unwrap_or_default();
            let produced = out.len() - out_before;
            // Done once the input is used up and the output had room left
            // (so nothing is held back in the inflater).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(SpdyError::Malformed {
                    frame: "header block",
                    reason: "truncated zlib data",
                });
            }
        }
    }

    fn deflate_block(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            if out.capacity() - out.len() < 32 {
                out.reserve(out.capacity().max(64));
            }
            let in_before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)?;
            let consumed = usize::try_from(self.deflate.total_in() - in_before).unwrap_or(0);
            input = input.get(consumed..).unwrap_or_default();
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn decode_headers(&mut self, block: &[u8], frame: &'static str) -> Result<Headers, SpdyError> {
        let raw = self.inflate_block(block)?;
        parse_header_block(&raw, frame)
    }

    fn encode_headers(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        put_len(&mut raw, headers.len())?;
        for (name, value) in headers {
            put_len(&mut raw, name.len())?;
            raw.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            put_len(&mut raw, value.len())?;
            raw.extend_from_slice(value.as_bytes());
        }
        self.deflate_block(&raw)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), SpdyError> {
    let n = u32::try_from(n).map_err(|_| SpdyError::FrameTooLarge(n))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn parse_header_block(mut raw: &[u8], frame: &'static str) -> Result<Headers, SpdyError> {
    let bad = |reason| SpdyError::Malformed { frame, reason };
    let take = |raw: &mut &[u8]| -> Result<String, SpdyError> {
        if raw.remaining() < 4 {
            return Err(bad("short header length"));
        }
        let n = usize::try_from(raw.get_u32()).unwrap_or(usize::MAX);
        if raw.remaining() < n {
            return Err(bad("header runs past the block"));
        }
        let s = String::from_utf8(raw.get(..n).unwrap_or_default().to_vec())
            .map_err(|_| bad("header is not UTF-8"))?;
        raw.advance(n);
        Ok(s)
    };
    if raw.remaining() < 4 {
        return Err(bad("missing header count"));
    }
    let count = raw.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut raw)?;
        let value = take(&mut raw)?;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

fn stream_id(payload: &mut Bytes, frame: &'static str) -> Result<u32, SpdyError> {
    if payload.remaining() < 4 {
        return Err(SpdyError::Malformed {
            frame,
            reason: "too short",
        });
    }
    Ok(payload.get_u32() & 0x7fff_ffff)
}

fn two_words(payload: &mut Bytes, frame: &'static str) -> Result<(u32, u32), SpdyError> {
    if payload.remaining() < 8 {
        return Err(SpdyError::Malformed {
            frame,
            reason: "too short",
        });
    }
    Ok((payload.get_u32() & 0x7fff_ffff, payload.get_u32()))
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        let Some(head) = src.get(..8) else {
            return Ok(None);
        };
        let word0 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        src.advance(8);
        let mut payload = src.split_to(len).freeze();
        if word0 & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: word0 & 0x7fff_ffff,
                flags,
                data: payload,
            }));
        }
        let version = u16::try_from((word0 >> 16) & 0x7fff).unwrap_or(0);
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::try_from(word0 & 0xffff).unwrap_or(0);
        let frame = match kind {
            TYPE_SYN_STREAM => {
                let (stream_id, associated_to) = two_words(&mut payload, "SYN_STREAM")?;
                if payload.remaining() < 2 {
                    return Err(SpdyError::Malformed {
                        frame: "SYN_STREAM",
                        reason: "too short",
                    });
                }
                let priority = payload.get_u8() >> 5;
                payload.advance(1); // slot: unused by SPDY/3.1
                let headers = self.decode_headers(&payload, "SYN_STREAM")?;
                Frame::SynStream {
                    stream_id,
                    associated_to: associated_to & 0x7fff_ffff,
                    priority,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY => {
                let stream_id = stream_id(&mut payload, "SYN_REPLY")?;
                let headers = self.decode_headers(&payload, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }
            TYPE_HEADERS => {
                let stream_id = stream_id(&mut payload, "HEADERS")?;
                let headers = self.decode_headers(&payload, "HEADERS")?;
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
            TYPE_RST_STREAM => {
                let (stream_id, status) = two_words(&mut payload, "RST_STREAM")?;
                Frame::RstStream { stream_id, status }
            }
            TYPE_SETTINGS => {
                if payload.remaining() < 4 {
                    return Err(SpdyError::Malformed {
                        frame: "SETTINGS",
                        reason: "too short",
                    });
                }
                let n = payload.get_u32();
                let mut entries = Vec::new();
                for _ in 0..n {
                    if payload.remaining() < 8 {
                        return Err(SpdyError::Malformed {
                            frame: "SETTINGS",
                            reason: "entry runs past the frame",
                        });
                    }
                    let id = payload.get_u32();
                    entries.push((
                        u8::try_from(id >> 24).unwrap_or(0),
                        id & 0xff_ffff,
                        payload.get_u32(),
                    ));
                }
                Frame::Settings(entries)
            }
            TYPE_PING => {
                if payload.remaining() < 4 {
                    return Err(SpdyError::Malformed {
                        frame: "PING",
                        reason: "too short",
                    });
                }
                Frame::Ping(payload.get_u32())
            }
            TYPE_GOAWAY => {
                let (last_good_stream_id, status) = two_words(&mut payload, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            TYPE_WINDOW_UPDATE => {
                let (stream_id, delta) = two_words(&mut payload, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id,
                    delta: delta & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown(other),
        };
        Ok(Some(frame))
    }
}

fn put_control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(SpdyError::FrameTooLarge(payload.len()));
    }
    dst.reserve(8 + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u8(flags);
    put_u24(dst, payload.len());
    dst.put_slice(payload);
    Ok(())
}

fn put_u24(dst: &mut BytesMut, n: usize) {
    dst.put_u8(u8::try_from(n >> 16 & 0xff).unwrap_or(0));
    dst.put_u8(u8::try_from(n >> 8 & 0xff).unwrap_or(0));
    dst.put_u8(u8::try_from(n & 0xff).unwrap_or(0));
}

impl Encoder<Frame> for Codec {
    type Error = SpdyError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        let mut p = Vec::new();
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x7) << 5);
                p.push(0);
                p.extend(self.encode_headers(&headers)?);
                put_control(dst, TYPE_SYN_STREAM, flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend(self.encode_headers(&headers)?);
                put_control(dst, TYPE_SYN_REPLY, flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend(self.encode_headers(&headers)?);
                put_control(dst, TYPE_HEADERS, flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&status.to_be_bytes());
                put_control(dst, TYPE_RST_STREAM, 0, &p)
            }
            Frame::Settings(entries) => {
                put_len(&mut p, entries.len())?;
                for (flags, id, value) in entries {
                    p.extend_from_slice(&(u32::from(flags) << 24 | id & 0xff_ffff).to_be_bytes());
                    p.extend_from_slice(&value.to_be_bytes());
                }
                put_control(dst, TYPE_SETTINGS, 0, &p)
            }
            Frame::Ping(id) => put_control(dst, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.extend_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&status.to_be_bytes());
                put_control(dst, TYPE_GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                put_control(dst, TYPE_WINDOW_UPDATE, 0, &p)
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(SpdyError::FrameTooLarge(data.len()));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u8(flags);
                put_u24(dst, data.len());
                dst.put_slice(&data);
                Ok(())
            }
            Frame::Unknown(kind) => put_control(dst, kind, 0, &[]),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) -> Frame {
        let mut tx = Codec::new().unwrap();
        let mut rx = Codec::new().unwrap();
        let mut buf = BytesMut::new();
        tx.encode(frame, &mut buf).unwrap();
        let out = rx.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "the decoder consumed the whole frame");
        out
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        // SPDY/3.1 section 2.6.10.1: 1423 bytes, starting with the
        // length-prefixed "options" and ending with "enq=0.".
        assert_eq!(d.len(), 1423);
        assert_eq!(d.get(..11).unwrap(), b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
        // zlib names a preset dictionary by its Adler-32 in the stream header;
        // this is the id every SPDY/3 peer writes (and checks).
        let mut c = Compress::new(Compression::default(), true);
        assert_eq!(c.set_dictionary(d).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn ping_is_bytes_from_the_spec() {
        // Control bit + version 3, type 6, flags 0, length 4, id 7.
        let mut buf = BytesMut::new();
        Codec::new()
            .unwrap()
            .encode(Frame::Ping(7), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(
            Codec::new().unwrap().decode(&mut buf).unwrap(),
            Some(Frame::Ping(7))
        );
    }

    #[test]
    fn data_frame_bytes() {
        let mut buf =
            BytesMut::from(&[0x00, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0x02, b'h', b'i'][..]);
        assert_eq!(
            Codec::new().unwrap().decode(&mut buf).unwrap(),
            Some(Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hi")
            })
        );
    }

    #[test]
    fn rst_goaway_window_bytes() {
        let mut buf = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5, // RST 3 CANCEL
                0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0, // GOAWAY 9 OK
                0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0, // WINDOW 1 +65536
            ][..],
        );
        let mut c = Codec::new().unwrap();
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL
            })
        );
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::GoAway {
                last_good_stream_id: 9,
                status: 0
            })
        );
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 65536
            })
        );
        assert_eq!(c.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut full = BytesMut::new();
        Codec::new()
            .unwrap()
            .encode(
                Frame::Data {
                    stream_id: 1,
                    flags: 0,
                    data: Bytes::from_static(b"hello"),
                },
                &mut full,
            )
            .unwrap();
        let mut c = Codec::new().unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in full.iter().enumerate() {
            buf.put_u8(*b);
            let got = c.decode(&mut buf).unwrap();
            assert_eq!(got.is_some(), i == full.len() - 1, "byte {i}");
        }
    }

    #[test]
    fn header_blocks_share_one_compression_context() {
        let mut tx = Codec::new().unwrap();
        let mut rx = Codec::new().unwrap();
        let mut buf = BytesMut::new();
        for id in [1u32, 3, 5] {
            let headers = vec![
                ("streamtype".to_string(), "data".to_string()),
                ("port".to_string(), "8080".to_string()),
                ("requestid".to_string(), id.to_string()),
            ];
            tx.encode(
                Frame::SynStream {
                    stream_id: id,
                    associated_to: 0,
                    priority: 0,
                    flags: 0,
                    headers: headers.clone(),
                },
                &mut buf,
            )
            .unwrap();
            // Decoded one at a time: every block ends in a sync flush.
            match rx.decode(&mut buf).unwrap() {
                Some(Frame::SynStream {
                    stream_id,
                    headers: got,
                    ..
                }) => {
                    assert_eq!(stream_id, id);
                    assert_eq!(got, headers);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn header_names_are_lowercased_and_looked_up_case_insensitively() {
        let f = roundtrip(Frame::SynReply {
            stream_id: 1,
            flags: FLAG_FIN,
            headers: vec![("StreamType".into(), "error".into())],
        });
        let Frame::SynReply { headers, flags, .. } = f else {
            panic!("not a reply")
        };
        assert_eq!(flags, FLAG_FIN);
        assert_eq!(
            headers,
            vec![("streamtype".to_string(), "error".to_string())]
        );
        assert_eq!(header(&headers, "streamType"), Some("error"));
    }

    #[test]
    fn other_versions_and_garbage_are_errors() {
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            Codec::new().unwrap().decode(&mut v2),
            Err(SpdyError::Version(2))
        ));
        // A SYN_STREAM whose header block is not zlib data.
        let mut bad = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ][..],
        );
        assert!(Codec::new().unwrap().decode(&mut bad).is_err());
    }
}
