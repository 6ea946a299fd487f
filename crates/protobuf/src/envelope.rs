//! The Kubernetes protobuf envelope: `k8s\0` followed by a `runtime.Unknown`
//! whose `typeMeta` names the object and whose `raw` holds its encoding.

use serde_json::{Map, Value};

use crate::decode::Decoder;
use crate::descriptor::Registry;
use crate::error::{Error, Result};
use crate::wire::{Reader, WireValue};
use crate::MAGIC;

/// Decodes a full request body: magic, envelope, object.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let unknown = body.strip_prefix(MAGIC).ok_or(Error::BadMagic)?;
    let mut decoder = Decoder::new(Registry::get(), body.len());
    decode_unknown(&mut decoder, unknown, 0)
}

/// Decodes a `runtime.Unknown` (without magic) into the object it carries,
/// with `kind` and `apiVersion` first as Go writes them.
pub(crate) fn decode_unknown(
    decoder: &mut Decoder<'_>,
    unknown: &[u8],
    depth: usize,
) -> Result<Value> {
    let envelope = Envelope::parse(unknown)?;
    if !envelope.content_encoding.is_empty() {
        return Err(Error::UnsupportedEncoding(envelope.content_encoding));
    }
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(Error::MissingTypeMeta);
    }
    let id = Registry::get()
        .kind(&envelope.api_version, &envelope.kind)
        .ok_or_else(|| Error::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let fields = match decoder.message(id, envelope.raw, depth)? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("kind".to_owned(), Value::String(envelope.kind));
    out.insert("apiVersion".to_owned(), Value::String(envelope.api_version));
    out.extend(fields);
    Ok(Value::Object(out))
}

#[derive(Debug, Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut envelope = Envelope::default();
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.next_field()? {
            let WireValue::Len(b) = value else {
                return Err(Error::WrongWireType {
                    message: "k8s.io.apimachinery.pkg.runtime.Unknown".to_owned(),
                    number,
                    wire_type: value.wire_type().code(),
                    expected: "length-delimited",
                });
            };
            match number {
                1 => {
                    let mut type_meta = Reader::new(b);
                    while let Some((n, v)) = type_meta.next_field()? {
                        match (n, v) {
                            (1, WireValue::Len(s)) => {
                                envelope.api_version = String::from_utf8_lossy(s).into_owned()
                            }
                            (2, WireValue::Len(s)) => {
                                envelope.kind = String::from_utf8_lossy(s).into_owned()
                            }
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = b,
                3 => envelope.content_encoding = String::from_utf8_lossy(b).into_owned(),
                _ => {}
            }
        }
        Ok(envelope)
    }
}
