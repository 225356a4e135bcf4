//! Reads the two files of a model directory without trusting them (docs/format.md, "Durability").
//!
//! A path inside a model directory can name anything: a FIFO (an `open` that blocks forever), a
//! symlink to `/dev/zero` (a read that never ends), a sparse file of terabytes. So each file is
//! opened without blocking, must be a regular file after following symlinks, and its size is
//! checked before anything is read: `model.json` against [`MAX_METADATA_BYTES`], the tensor file
//! against the size its own safetensors header declares (read first, itself capped at
//! [`MAX_HEADER_BYTES`]). What is read is then at most what was checked, even if the file grows.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Largest `model.json` read (a catalogue of 10⁶ ids is ~20 MB of JSON).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Largest safetensors header read (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The whole of `model.json` at `path`.
pub fn read_metadata(path: &Path) -> Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    if size > MAX_METADATA_BYTES {
        return Err(file_error(
            path,
            format!(
                "expected at most {MAX_METADATA_BYTES} bytes of JSON, found a file of {size} bytes"
            ),
        ));
    }
    read_up_to(file, size, path)
}

/// The whole of `model.safetensors` at `path`, once its size matches what its header declares.
pub fn read_tensors(path: &Path) -> Result<Vec<u8>> {
    let header_error = |message: String| {
        Error::model_format(
            &path.display().to_string(),
            "<header>",
            format!("not a valid safetensors file: {message}"),
        )
    };
    let (mut file, size) = open_regular(path)?;
    if size < 8 {
        return Err(header_error(format!(
            "expected at least the 8-byte header length, found a file of {size} bytes"
        )));
    }
    let mut bytes = vec![0u8; 8];
    file.read_exact(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_BYTES || header_len > size - 8 {
        return Err(header_error(format!(
            "the header length is {header_len} bytes, the file has {size} bytes (header limit \
             {MAX_HEADER_BYTES})"
        )));
    }
    bytes.resize(8 + header_len as usize, 0);
    file.read_exact(&mut bytes[8..])
        .map_err(|e| Error::io(path, e))?;
    let declared = 8 + header_len + data_end(&bytes[8..]).map_err(header_error)?;
    if declared != size {
        return Err(header_error(format!(
            "the header declares {declared} bytes in all, the file has {size} bytes"
        )));
    }
    let mut rest = read_up_to(file, size - bytes.len() as u64, path)?;
    bytes.append(&mut rest);
    Ok(bytes)
}

/// The largest data offset any tensor of a safetensors header claims (the data section's size).
fn data_end(header: &[u8]) -> std::result::Result<u64, String> {
    let value: Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err("header is not a JSON object".into());
    };
    let mut end = 0u64;
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)));
        let Some((_, stop)) = offsets else {
            return Err(format!(
                "tensor {name:?}: expected data_offsets [begin, end]"
            ));
        };
        end = end.max(stop);
    }
    Ok(end)
}

/// Opens `path` for reading without blocking, following symlinks, and returns it with its size
/// when it is a regular file.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    // Refuse a FIFO before opening it (the open itself would block); where O_NONBLOCK exists
    // the open cannot block either, so a FIFO swapped in after this check is caught below.
    let before = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !before.is_file() {
        return Err(not_regular(path, &before));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    Ok((file, meta.len()))
}

/// Reads exactly `size` bytes of `file` (a file that shrank is an error, one that grew is cut).
fn read_up_to(file: File, size: u64, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 != size {
        return Err(file_error(
            path,
            format!(
                "expected {size} bytes, read {} (the file changed while being read)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn file_error(path: &Path, message: String) -> Error {
    Error::model_format(&path.display().to_string(), "<file>", message)
}

fn not_regular(path: &Path, meta: &std::fs::Metadata) -> Error {
    let kind = meta.file_type();
    let found = if kind.is_dir() {
        "a directory"
    } else {
        describe_special(&kind)
    };
    file_error(
        path,
        format!("expected a regular file (or a symlink to one), found {found}"),
    )
}

#[cfg(unix)]
fn describe_special(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn describe_special(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model_dir::{load_model, METADATA_FILE, TENSORS_FILE};
    use crate::engine::test_fixtures::{temp_dir, write_model};

    fn load_message(dir: &Path) -> String {
        let err = load_model(dir).err().expect("expected a load error");
        assert!(matches!(err, Error::ModelFormat { .. }), "{err:?}");
        err.to_string()
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_reading_them() {
        let dir = temp_dir("special");
        write_model(&dir, 3, 5, 2, 9);
        let meta = dir.join(METADATA_FILE);
        std::fs::remove_file(&meta).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &meta).unwrap();
        let e = load_message(&dir);
        assert!(
            e.contains("model.json: <file>: expected a regular file (or a symlink to one), found a character device"),
            "{e}"
        );
        std::fs::remove_file(&meta).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&meta)
            .status()
            .unwrap();
        assert!(status.success());
        let e = load_message(&dir);
        assert!(e.contains("found a named pipe (FIFO)"), "{e}");
        std::fs::remove_file(&meta).unwrap();
        std::fs::create_dir(&meta).unwrap();
        assert!(load_message(&dir).contains("found a directory"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_regular_file_loads() {
        let dir = temp_dir("symlinked");
        write_model(&dir, 3, 5, 2, 9);
        let real = dir.join("real.safetensors");
        std::fs::rename(dir.join(TENSORS_FILE), &real).unwrap();
        std::os::unix::fs::symlink(&real, dir.join(TENSORS_FILE)).unwrap();
        assert!(load_model(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_are_checked_before_reading() {
        let dir = temp_dir("sizes");
        write_model(&dir, 3, 5, 2, 9);
        let tensors = dir.join(TENSORS_FILE);
        let good = std::fs::read(&tensors).unwrap();
        // A file longer than its header declares (as a huge sparse file would be).
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&tensors)
            .unwrap();
        file.set_len(good.len() as u64 + (1 << 34)).unwrap();
        let e = load_message(&dir);
        assert!(
            e.contains(&format!("the header declares {} bytes in all", good.len())),
            "{e}"
        );
        // A header length beyond the cap.
        let mut bytes = good.clone();
        bytes[..8].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
        std::fs::write(&tensors, &bytes).unwrap();
        assert!(load_message(&dir).contains("header length"));
        std::fs::write(&tensors, &good).unwrap();
        let meta = dir.join(METADATA_FILE);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&meta)
            .unwrap();
        file.set_len(MAX_METADATA_BYTES + 1).unwrap();
        let e = load_message(&dir);
        assert!(
            e.contains("model.json: <file>: expected at most 67108864 bytes of JSON"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
