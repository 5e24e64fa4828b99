//! Checked big-endian reads over one message, so malformed input becomes an error, never a
//! panic: every read goes through `get`, never indexing.

/// A malformed message. Offsets count from the tag byte (offset 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nothing to decode.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is not a pgoutput v1 message tag.
    #[error("unknown pgoutput message tag 0x{tag:02x} at offset 0")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// The message ends inside a field.
    #[error("pgoutput message '{tag}' truncated at offset {offset} reading {field}")]
    Truncated {
        /// Message tag.
        tag: char,
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string has no terminating NUL.
    #[error("pgoutput message '{tag}': {field} at offset {offset} has no terminating NUL")]
    UnterminatedString {
        /// Message tag.
        tag: char,
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A string is not UTF-8.
    #[error("pgoutput message '{tag}': {field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Message tag.
        tag: char,
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A count or length is negative.
    #[error("pgoutput message '{tag}': {field} at offset {offset} is negative")]
    Negative {
        /// Message tag.
        tag: char,
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A marker byte (tuple kind, replica identity, ...) has a value the protocol does not define.
    #[error("pgoutput message '{tag}': unexpected {field} byte 0x{byte:02x} at offset {offset}")]
    UnexpectedByte {
        /// Message tag.
        tag: char,
        /// Field being read.
        field: &'static str,
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// Bytes remain after the last field.
    #[error("pgoutput message '{tag}' has trailing bytes from offset {offset}")]
    TrailingBytes {
        /// Message tag.
        tag: char,
        /// Offset of the first extra byte.
        offset: usize,
    },
}

/// Cursor over one pgoutput message; `tag` names the message in errors.
pub(crate) struct Reader<'a> {
    /// The whole message, tag included.
    buf: &'a [u8],
    /// Offset of the next unread byte.
    pos: usize,
    /// The message tag, for errors.
    tag: char,
}

impl<'a> Reader<'a> {
    /// A reader positioned after the tag byte.
    pub(crate) fn new(buf: &'a [u8], tag: char) -> Self {
        Reader { buf, pos: 1, tag }
    }

    /// Current offset in the message, for errors.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                tag: self.tag,
                field,
                offset: self.pos,
            }),
        }
    }

    /// Exactly `N` bytes as an array.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let offset = self.pos;
        let s = self.bytes(N, field)?;
        <[u8; N]>::try_from(s).map_err(|_| DecodeError::Truncated {
            tag: self.tag,
            field,
            offset,
        })
    }

    /// Int8 / Byte1.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// Int16.
    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    /// Int32, signed.
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// Int32, unsigned (OIDs, xids).
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Int64, unsigned (LSNs).
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Int64, signed (timestamps).
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let offset = self.pos;
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|b| *b == 0) else {
            return Err(DecodeError::UnterminatedString {
                tag: self.tag,
                field,
                offset,
            });
        };
        let s = self.bytes(len, field)?;
        self.pos += 1; // the NUL
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            tag: self.tag,
            field,
            offset,
        })
    }

    /// A non-negative count or length stored as Int16/Int32.
    pub(crate) fn count(&mut self, wide: bool, field: &'static str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        usize::try_from(n).map_err(|_| DecodeError::Negative {
            tag: self.tag,
            field,
            offset,
        })
    }

    /// The error for an unexpected marker byte just read at `offset`.
    pub(crate) fn unexpected(&self, field: &'static str, offset: usize, byte: u8) -> DecodeError {
        DecodeError::UnexpectedByte {
            tag: self.tag,
            field,
            offset,
            byte,
        }
    }

    /// Fails if bytes are left over: a message longer than its fields is malformed too.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                tag: self.tag,
                offset: self.pos,
            })
        }
    }
}
