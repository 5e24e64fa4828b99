//! The versioned MessagePack envelope.
//!
//! Body = MessagePack array `[version, batch]`. The version is read first, on its own, so a
//! reader can refuse an envelope from the future before it tries to interpret the rest
//! (rmp-serde's compact form is not forward-compatible: a newer batch would misread).

use meshsync_core::ChangeBatch;
use serde::{
    Deserializer as _,
    de::{self, IgnoredAny, SeqAccess, Visitor},
};

/// Envelope version this build writes and the highest it reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// Why a message body could not be turned into a batch. Apply parks these (I10).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Written by a newer meshsync; upgrade this peer before its writers.
    #[error(
        "envelope version {found} is newer than this peer understands (up to {supported}); \
         upgrade meshsync on this peer"
    )]
    FutureEnvelope {
        /// Version in the message.
        found: u16,
        /// Highest version this build reads.
        supported: u16,
    },
    /// Not a meshsync envelope at all, or damaged.
    #[error("malformed envelope")]
    Malformed(#[source] rmp_serde::decode::Error),
    /// Encoding failed (a value serde cannot write); a bug, not bad input.
    #[error("cannot encode batch")]
    Encode(#[source] rmp_serde::encode::Error),
}

/// Encodes a batch as the current envelope version.
pub fn encode(batch: &ChangeBatch) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec(&(ENVELOPE_VERSION, batch)).map_err(WireError::Encode)
}

/// Decodes an envelope; refuses versions newer than [`ENVELOPE_VERSION`] before reading them.
/// One pass: the version is read first, then the batch (reading the whole body once to find
/// the version and again for the batch took a third of apply's decoding).
pub fn decode(body: &[u8]) -> Result<ChangeBatch, WireError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    let read = de
        .deserialize_tuple(2, EnvelopeVisitor)
        .map_err(WireError::Malformed)?;
    read.map_err(|found| WireError::FutureEnvelope {
        found,
        supported: ENVELOPE_VERSION,
    })
}

/// Reads `[version, batch]`: the batch, or the version when this build cannot read it.
struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Result<ChangeBatch, u16>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a meshsync envelope [version, batch]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let version: u16 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let read = if version > ENVELOPE_VERSION || version == 0 {
            // Passed over, not interpreted.
            seq.next_element::<IgnoredAny>()?
                .ok_or_else(|| de::Error::invalid_length(1, &self))?;
            Err(version)
        } else {
            Ok(seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(1, &self))?)
        };
        // Exactly two elements: anything else is not an envelope (random bytes can start
        // like an array whose first element reads as a version).
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok(read)
    }
}
