//! Character sets of text columns: UTF-8 (utf8mb4, utf8mb3, ascii) as is, and MariaDB's
//! `latin1`, which is Windows-1252 (with the five unassigned bytes mapped to U+0081, U+008D,
//! U+008F, U+0090, U+009D as MariaDB does).

/// How a text column's bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Charset {
    /// utf8mb4, utf8mb3 (`utf8`), ascii.
    Utf8,
    /// latin1 (cp1252).
    Latin1,
}

/// Unicode of the cp1252 bytes 0x80..=0x9F.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

impl Charset {
    /// The charset of a `CHARACTER_SET_NAME`; `None` when meshsync does not support it.
    pub fn from_name(name: &str) -> Option<Charset> {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Some(Charset::Utf8),
            "latin1" => Some(Charset::Latin1),
            _ => None,
        }
    }

    /// Decodes column bytes; `None` when they are not valid in the charset.
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
            Charset::Latin1 => Some(
                bytes
                    .iter()
                    .map(|b| match b {
                        0x80..=0x9f => CP1252_HIGH[usize::from(b - 0x80)],
                        _ => char::from(*b),
                    })
                    .collect(),
            ),
        }
    }

    /// Whether every character of `s` has a code in the charset (else MariaDB would store `?`).
    pub fn can_encode(self, s: &str) -> bool {
        match self {
            Charset::Utf8 => true,
            Charset::Latin1 => s.chars().all(|c| {
                (c as u32) < 0x80 || (0xa0..=0xff).contains(&(c as u32)) || CP1252_HIGH.contains(&c)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        assert_eq!(Charset::Latin1.decode(&[0x63, 0xe9, 0x80]).unwrap(), "cé€");
        assert!(Charset::Latin1.can_encode("café €"));
        assert!(!Charset::Latin1.can_encode("☃"));
        assert!(Charset::Utf8.decode(&[0xff]).is_none());
    }
}
