//! Descriptor-driven conversion of one protobuf message into Go-compatible JSON.
//!
//! The goal is the JSON that Go's `encoding/json` would produce after the
//! apiserver unmarshalled the same bytes into the Go type: pointer fields appear
//! exactly when present on the wire, `omitempty` scalars only when non-zero,
//! struct-valued fields always, embedded structs flattened. One deliberate
//! deviation: empty lists and maps are left out even without `omitempty`
//! (Go would write `null`), because JSON clients send them that way and
//! Kubernetes treats `null` and absent alike.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::descriptor::{Field, MessageId, Presence, Registry, Scalar, Shape, Special, ValueType};
use crate::error::{Error, Result};
use crate::wellknown;
use crate::wire::{Reader, WireType, WireValue};
use crate::{MAGIC, MAX_DEPTH};

/// What a message's fields decoded to, indexed like `Message::fields`.
#[derive(Debug, Clone)]
enum Slot {
    Absent,
    One(Value),
    Many(Vec<Value>),
    Map(Map<String, Value>),
}

pub(crate) struct Decoder<'r> {
    registry: &'r Registry,
    /// JSON values we may still produce. Real objects yield well under one value
    /// per wire byte; empty entries that expand into default-filled objects
    /// (up to ~10 values per byte) hit this bound instead of eating memory.
    budget: usize,
}

impl<'r> Decoder<'r> {
    pub(crate) fn new(registry: &'r Registry, input_len: usize) -> Self {
        Decoder {
            registry,
            budget: input_len.saturating_mul(2).saturating_add(4096),
        }
    }

    fn spend(&mut self) -> Result<()> {
        self.budget = self.budget.checked_sub(1).ok_or(Error::TooLarge)?;
        Ok(())
    }

    /// The JSON value of message `id` encoded in `bytes`, nested `depth` levels deep.
    pub(crate) fn message(&mut self, id: MessageId, bytes: &[u8], depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        self.spend()?;
        let registry = self.registry;
        let msg = registry.message(id);
        if msg.special == Special::RawJson {
            return self.raw_json(id, bytes, depth);
        }
        let slots = self.collect(id, bytes, depth)?;
        let field = |number: u32| -> Option<&Value> {
            let i = msg.field_index(number)?;
            match &slots[i] {
                Slot::One(v) => Some(v),
                _ => None,
            }
        };
        let list = |number: u32| -> Option<Vec<Value>> {
            let i = msg.field_index(number)?;
            match &slots[i] {
                Slot::Many(v) if !v.is_empty() => Some(v.clone()),
                _ => None,
            }
        };
        let invalid = |reason: String| Error::InvalidValue {
            message: msg.name.clone(),
            reason,
        };
        let int = |number: u32| field(number).and_then(Value::as_i64);
        Ok(match msg.special {
            Special::None => Value::Object(self.object(id, slots, depth)?),
            Special::RawJson => unreachable!("handled above"),
            Special::Time | Special::MicroTime => {
                // Go marshals a zero time as no bytes and unmarshals no bytes as zero.
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                let seconds = int(1).unwrap_or(0);
                let text = if msg.special == Special::Time {
                    wellknown::time(seconds)
                } else {
                    wellknown::micro_time(seconds, int(2).unwrap_or(0))
                };
                Value::String(text.ok_or_else(|| invalid(format!("time {seconds}s out of range")))?)
            }
            Special::Duration => Value::String(wellknown::go_duration(int(1).unwrap_or(0))),
            Special::Quantity => match field(1) {
                Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
                _ => Value::String("0".to_owned()),
            },
            Special::IntOrString => match int(1).unwrap_or(0) {
                0 => Value::from(int(2).unwrap_or(0)),
                1 => field(3)
                    .cloned()
                    .unwrap_or_else(|| Value::String(String::new())),
                other => return Err(invalid(format!("IntOrString type {other}"))),
            },
            Special::ListWrapper => Value::Array(list(1).unwrap_or_default()),
            Special::SchemaOrBool => match field(2) {
                Some(schema) => schema.clone(),
                None => Value::Bool(field(1).and_then(Value::as_bool).unwrap_or(false)),
            },
            Special::SchemaOrArray => match (field(1), list(2)) {
                (Some(schema), _) => schema.clone(),
                (None, Some(items)) => Value::Array(items),
                (None, None) => Value::Null,
            },
            Special::SchemaOrStringArray => match (list(2), field(1)) {
                (Some(items), _) => Value::Array(items),
                (None, Some(schema)) => schema.clone(),
                (None, None) => Value::Null,
            },
        })
    }

    /// Raw bytes that hold JSON (RawExtension, FieldsV1, apiextensions JSON).
    /// Clients fill RawExtension with JSON; a nested protobuf object (magic
    /// prefix) is decoded too.
    fn raw_json(&mut self, id: MessageId, bytes: &[u8], depth: usize) -> Result<Value> {
        let mut raw: &[u8] = &[];
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.next_field()? {
            if number == 1 {
                match value {
                    WireValue::Len(b) => raw = b,
                    other => {
                        return Err(self.wrong_wire_type(
                            id,
                            number,
                            other.wire_type(),
                            "length-delimited",
                        ))
                    }
                }
            }
        }
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if let Some(inner) = raw.strip_prefix(MAGIC) {
            return crate::envelope::decode_unknown(self, inner, depth + 1);
        }
        serde_json::from_slice(raw).map_err(|e| Error::InvalidValue {
            message: self.registry.message(id).name.clone(),
            reason: format!("raw bytes are not JSON: {e}"),
        })
    }

    /// Reads every field of the message into its slot; unknown numbers are skipped.
    fn collect(&mut self, id: MessageId, bytes: &[u8], depth: usize) -> Result<Vec<Slot>> {
        let registry = self.registry;
        let msg = registry.message(id);
        let mut slots = vec![Slot::Absent; msg.fields.len()];
        let mut reader = Reader::new(bytes);
        while let Some((number, wire)) = reader.next_field()? {
            let Some(index) = msg.field_index(number) else {
                continue;
            };
            let field = &msg.fields[index];
            match field.shape {
                Shape::Single(ty) => {
                    // Last one wins, as in protobuf for scalars (Go never repeats a field).
                    slots[index] = Slot::One(self.value(id, field, ty, wire, depth)?);
                }
                Shape::Repeated(ty) => {
                    if !matches!(slots[index], Slot::Many(_)) {
                        slots[index] = Slot::Many(Vec::new());
                    }
                    let mut items = Vec::new();
                    match (ty, wire) {
                        (ValueType::Scalar(s), WireValue::Len(packed)) if packable(s) => {
                            self.unpack(id, field, s, packed, &mut items)?;
                        }
                        _ => items.push(self.value(id, field, ty, wire, depth)?),
                    }
                    if let Slot::Many(list) = &mut slots[index] {
                        for item in items {
                            self.spend()?;
                            list.push(item);
                        }
                    }
                }
                Shape::Map { key, value } => {
                    let WireValue::Len(entry) = wire else {
                        return Err(self.wrong_wire_type(
                            id,
                            number,
                            wire.wire_type(),
                            "length-delimited",
                        ));
                    };
                    let (k, v) = self.map_entry(id, field, key, value, entry, depth)?;
                    if !matches!(slots[index], Slot::Map(_)) {
                        slots[index] = Slot::Map(Map::new());
                    }
                    self.spend()?;
                    if let Slot::Map(map) = &mut slots[index] {
                        map.insert(k, v);
                    }
                }
            }
        }
        Ok(slots)
    }

    /// A plain message: its fields as a JSON object, in Go struct order.
    fn object(
        &mut self,
        id: MessageId,
        slots: Vec<Slot>,
        depth: usize,
    ) -> Result<Map<String, Value>> {
        let registry = self.registry;
        let msg = registry.message(id);
        let mut out = Map::new();
        for (field, slot) in msg.fields.iter().zip(slots) {
            if field.presence == Presence::Inline {
                let Shape::Single(ValueType::Message(inner)) = field.shape else {
                    continue;
                };
                let value = match slot {
                    Slot::One(v) => v,
                    _ => self.message(inner, &[], depth + 1)?,
                };
                if let Value::Object(fields) = value {
                    out.extend(fields);
                }
                continue;
            }
            let Some(name) = &field.json else {
                continue;
            };
            let value = match (slot, field.shape) {
                (Slot::Many(list), _) if !list.is_empty() => Value::Array(list),
                (Slot::Map(map), _) if !map.is_empty() => Value::Object(map),
                (Slot::One(v), Shape::Single(ValueType::Scalar(_)))
                    if field.presence == Presence::OmitEmpty && is_zero(&v) =>
                {
                    continue
                }
                (Slot::One(v), _) => v,
                (Slot::Absent, Shape::Single(ValueType::Message(inner)))
                    if field.presence != Presence::Pointer =>
                {
                    self.message(inner, &[], depth + 1)?
                }
                (Slot::Absent, Shape::Single(ValueType::Scalar(s)))
                    if field.presence == Presence::Always =>
                {
                    zero(s)
                }
                _ => continue,
            };
            self.spend()?;
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    fn value(
        &mut self,
        id: MessageId,
        field: &Field,
        ty: ValueType,
        wire: WireValue<'_>,
        depth: usize,
    ) -> Result<Value> {
        match ty {
            ValueType::Scalar(s) => self.scalar(id, field.number, s, wire),
            ValueType::Message(inner) => match wire {
                WireValue::Len(bytes) => self.message(inner, bytes, depth + 1),
                other => Err(self.wrong_wire_type(
                    id,
                    field.number,
                    other.wire_type(),
                    "length-delimited",
                )),
            },
        }
    }

    fn map_entry(
        &mut self,
        id: MessageId,
        field: &Field,
        key: Scalar,
        value: ValueType,
        entry: &[u8],
        depth: usize,
    ) -> Result<(String, Value)> {
        let mut k = None;
        let mut v = None;
        let mut reader = Reader::new(entry);
        while let Some((number, wire)) = reader.next_field()? {
            match number {
                1 => k = Some(self.scalar(id, field.number, key, wire)?),
                2 => v = Some(self.value(id, field, value, wire, depth)?),
                _ => {}
            }
        }
        let k = match k {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let v = match (v, value) {
            (Some(v), _) => v,
            (None, ValueType::Scalar(s)) => zero(s),
            (None, ValueType::Message(inner)) => self.message(inner, &[], depth + 1)?,
        };
        Ok((k, v))
    }

    fn unpack(
        &mut self,
        id: MessageId,
        field: &Field,
        s: Scalar,
        packed: &[u8],
        out: &mut Vec<Value>,
    ) -> Result<()> {
        let mut reader = Reader::new(packed);
        while !reader.at_end() {
            let wire = match wire_type(s) {
                WireType::Varint => WireValue::Varint(reader.varint()?),
                WireType::Fixed64 => WireValue::Fixed64(reader.fixed64()?),
                WireType::Fixed32 => WireValue::Fixed32(reader.fixed32()?),
                WireType::Len => return Err(self.wrong_wire_type(id, field.number, 2, "scalar")),
            };
            self.spend()?;
            out.push(self.scalar(id, field.number, s, wire)?);
        }
        Ok(())
    }

    fn scalar(&self, id: MessageId, number: u32, s: Scalar, wire: WireValue<'_>) -> Result<Value> {
        let value = match (s, wire) {
            (Scalar::String, WireValue::Len(b)) => {
                Value::String(String::from_utf8_lossy(b).into_owned())
            }
            (Scalar::Bytes, WireValue::Len(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
            // Negative int32 values are sign-extended to 10-byte varints.
            (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i32),
            (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
            (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
            (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
            (Scalar::Sint32, WireValue::Varint(v)) => Value::from(zigzag(v) as i32),
            (Scalar::Sint64, WireValue::Varint(v)) => Value::from(zigzag(v)),
            (Scalar::Fixed32, WireValue::Fixed32(v)) => Value::from(v),
            (Scalar::Sfixed32, WireValue::Fixed32(v)) => Value::from(v as i32),
            (Scalar::Fixed64, WireValue::Fixed64(v)) => Value::from(v),
            (Scalar::Sfixed64, WireValue::Fixed64(v)) => Value::from(v as i64),
            (Scalar::Double, WireValue::Fixed64(v)) => self.float(id, f64::from_bits(v))?,
            (Scalar::Float, WireValue::Fixed32(v)) => {
                self.float(id, f64::from(f32::from_bits(v)))?
            }
            (_, other) => {
                let expected = match wire_type(s) {
                    WireType::Varint => "varint",
                    WireType::Fixed64 => "fixed64",
                    WireType::Len => "length-delimited",
                    WireType::Fixed32 => "fixed32",
                };
                return Err(self.wrong_wire_type(id, number, other.wire_type(), expected));
            }
        };
        Ok(value)
    }

    fn float(&self, id: MessageId, f: f64) -> Result<Value> {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| Error::InvalidValue {
                message: self.registry.message(id).name.clone(),
                reason: format!("{f} has no JSON form"),
            })
    }

    fn wrong_wire_type(
        &self,
        id: MessageId,
        number: u32,
        wire_type: impl Into<WireCode>,
        expected: &'static str,
    ) -> Error {
        Error::WrongWireType {
            message: self.registry.message(id).name.clone(),
            number,
            wire_type: wire_type.into().0,
            expected,
        }
    }
}

/// A wire type code for error messages.
struct WireCode(u8);

impl From<WireType> for WireCode {
    fn from(w: WireType) -> Self {
        WireCode(w.code())
    }
}

impl From<u8> for WireCode {
    fn from(w: u8) -> Self {
        WireCode(w)
    }
}

fn wire_type(s: Scalar) -> WireType {
    match s {
        Scalar::String | Scalar::Bytes => WireType::Len,
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => WireType::Fixed64,
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => WireType::Fixed32,
        _ => WireType::Varint,
    }
}

fn packable(s: Scalar) -> bool {
    wire_type(s) != WireType::Len
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn zero(s: Scalar) -> Value {
    match s {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        Scalar::Double | Scalar::Float => Value::from(0.0),
        _ => Value::from(0),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}
