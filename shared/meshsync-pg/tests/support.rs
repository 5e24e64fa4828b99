//! Fixture loading.

use meshsync_pg::source::pgoutput::{PgMessage, decode};

/// Hex to bytes.
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The decoded messages of `tests/fixtures/<name>.hex`, in order.
pub fn fixture(name: &str) -> Vec<PgMessage> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode(&unhex(l.trim())).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The raw bytes of every fixture message.
pub fn fixture_bytes() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hex") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| unhex(l.trim())),
            );
        }
    }
    out
}
