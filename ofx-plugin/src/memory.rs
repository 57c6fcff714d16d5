//! The plugin's own buffers, allocated fallibly: a failed allocation would abort the whole
//! host process. Whether a generation fits at all is checked before it starts by the core's
//! estimate (`soragen_core::memory`) against its budget (`soragen_core::limits`).

use std::fmt;

/// An allocation the plugin could not make.
#[derive(Debug, PartialEq)]
pub struct OutOfMemory {
    pub bytes: usize,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough memory for a frame buffer of {} bytes",
            self.bytes
        )
    }
}

/// `len` zero bytes, or an error instead of aborting when the allocation fails.
pub fn zeroed(len: usize) -> Result<Vec<u8>, OutOfMemory> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| OutOfMemory { bytes: len })?;
    buffer.resize(len, 0);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_allocations_are_errors() {
        assert_eq!(zeroed(16).unwrap(), vec![0; 16]);
        assert_eq!(zeroed(usize::MAX), Err(OutOfMemory { bytes: usize::MAX }));
    }
}
