//! The strict-HTTP vector corpus (`tests/data/http-vectors`, see its
//! README): each request file and the verdict its `INDEX.tsv` gives it.

use std::path::PathBuf;

/// The corpus's folder.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/http-vectors")
}

/// One vector of the corpus.
pub struct Vector {
    /// Its file name.
    pub file: String,
    /// `accept` or `reject`.
    pub expected: String,
    /// Why (the INDEX's last column; may be empty).
    pub note: String,
    /// The request's bytes.
    pub bytes: Vec<u8>,
}

/// Every vector, in the INDEX's order.
pub fn corpus() -> Vec<Vector> {
    let dir = corpus_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("read INDEX.tsv");
    index
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            Vector {
                file: fields[0].to_owned(),
                expected: fields.get(2).copied().unwrap_or_default().to_owned(),
                note: fields.get(3).copied().unwrap_or_default().to_owned(),
                bytes: std::fs::read(dir.join(fields[0])).unwrap_or_else(|e| panic!("{}: {e}", fields[0])),
            }
        })
        .collect()
}
