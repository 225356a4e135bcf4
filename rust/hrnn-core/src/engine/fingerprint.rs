//! A model's fingerprint: which model an event log's events were applied to.
//!
//! CRC-32 of `model.json` and of `model.safetensors`, as 16 hex digits. It identifies a model
//! directory's content (not its path), so a copied model has the same fingerprint and a retrained
//! one a different one. Not a security measure: it catches mix-ups, not forgeries.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

fn crc_of(path: &Path) -> Result<u32> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..n]);
    }
}

/// The fingerprint of the model directory `model_dir` (already validated by the loader).
pub fn model_fingerprint(model_dir: &Path) -> Result<String> {
    let json = crc_of(&model_dir.join("model.json"))?;
    let tensors = crc_of(&model_dir.join("model.safetensors"))?;
    Ok(format!("{json:08x}{tensors:08x}"))
}
