//! The versioned MessagePack envelope.
//!
//! Body = MessagePack array `[version, batch]`. The version is read first, on its own, so a
//! reader can refuse an envelope from the future before it tries to interpret the rest
//! (rmp-serde's compact form is not forward-compatible: a newer batch would misread).

use meshsync_core::ChangeBatch;
use serde::de::IgnoredAny;

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
pub fn decode(body: &[u8]) -> Result<ChangeBatch, WireError> {
    let (found, IgnoredAny): (u16, IgnoredAny) =
        rmp_serde::from_slice(body).map_err(WireError::Malformed)?;
    if found > ENVELOPE_VERSION || found == 0 {
        return Err(WireError::FutureEnvelope {
            found,
            supported: ENVELOPE_VERSION,
        });
    }
    let (_, batch): (u16, ChangeBatch) =
        rmp_serde::from_slice(body).map_err(WireError::Malformed)?;
    Ok(batch)
}
