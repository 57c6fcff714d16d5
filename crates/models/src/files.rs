//! Files as the model loaders and frame readers open them: regular files only (a FIFO or a
//! device in place of a weights file or a frame would block or never end), read with a bound.

use std::fs::File;
use std::io::{Error, ErrorKind, Read, Result};
use std::path::Path;

/// Opens `path` for reading if it is a regular file (links followed; a link loop is an error).
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe, device or socket)"
        };
        return Err(Error::new(ErrorKind::InvalidInput, format!("is {kind}")));
    }
    File::open(path)
}

/// The whole of a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

/// Bound on JSON configs, indexes and tokenizer files (a real tokenizer.json is ~20 MB).
pub const TEXT_LIMIT: u64 = 256 << 20;
