//! The protobuf wire format: tags, varints, fixed-width and length-delimited values.
//!
//! Everything here works on borrowed slices and reports the offset of a problem;
//! nothing allocates or panics on any input.

use crate::error::{Error, Result};

/// The four wire types Kubernetes messages use (groups, 3 and 4, are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub(crate) fn code(self) -> u8 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::Fixed32 => 5,
        }
    }
}

/// One field occurrence as it sits on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub(crate) fn wire_type(&self) -> WireType {
        match self {
            WireValue::Varint(_) => WireType::Varint,
            WireValue::Fixed64(_) => WireType::Fixed64,
            WireValue::Len(_) => WireType::Len,
            WireValue::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// Iterates over the fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Error::Malformed {
                offset: start,
                reason: "invalid field number",
            });
        }
        let number = number as u32;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.fixed::<8>()?)),
            2 => {
                let len = self.varint()?;
                let len =
                    usize::try_from(len).map_err(|_| Error::Truncated { offset: self.pos })?;
                WireValue::Len(self.take(len)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
            _ => {
                return Err(Error::Malformed {
                    offset: start,
                    reason: "unsupported wire type (groups are not used by Kubernetes)",
                })
            }
        };
        Ok(Some((number, value)))
    }

    /// A base-128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(Error::Truncated { offset: self.pos })?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Malformed {
            offset: self.pos,
            reason: "varint longer than 10 bytes",
        })
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or(Error::Truncated { offset: self.pos })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads a packed fixed-width element (used for packed repeated doubles/floats).
    pub(crate) fn fixed64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.fixed::<8>()?))
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_every_wire_type() {
        // 1: varint 150, 2: "hi", 3: fixed64 1, 4: fixed32 2
        let buf = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0,
        ];
        let mut r = Reader::new(&buf);
        assert!(matches!(
            r.next_field().unwrap(),
            Some((1, WireValue::Varint(150)))
        ));
        assert!(matches!(
            r.next_field().unwrap(),
            Some((2, WireValue::Len(b"hi")))
        ));
        assert!(matches!(
            r.next_field().unwrap(),
            Some((3, WireValue::Fixed64(1)))
        ));
        assert!(matches!(
            r.next_field().unwrap(),
            Some((4, WireValue::Fixed32(2)))
        ));
        assert!(r.next_field().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_input_with_offsets() {
        assert!(matches!(
            Reader::new(&[0x12, 5, b'a']).next_field(),
            Err(Error::Truncated { offset: 2 })
        ));
        assert!(matches!(
            Reader::new(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .next_field(),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x00, 0x01]).next_field(),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x0b]).next_field(),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).next_field(),
            Err(Error::Truncated { .. })
        ));
    }
}
