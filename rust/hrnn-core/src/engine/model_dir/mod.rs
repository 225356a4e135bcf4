//! Reads a model directory (docs/format.md, format versions 1 and 2) into a [`Model`].
//!
//! Everything read from disk is validated before use — a hostile or damaged file yields
//! `Error::ModelFormat` naming the file and the tensor or field, never a panic. One step per file:
//! - `files`: opens `model.json` and `model.safetensors` without trusting them (regular files
//!   only, sizes checked before reading);
//! - `metadata`: the JSON fields of `model.json` — types, ranges, id lists of distinct strings;
//! - `tensors`: typed, shape-checked reads of `model.safetensors` (the header itself — offsets,
//!   sizes, overlap — is checked by the `safetensors` crate);
//! - `parts`: every tensor of the format, decoded and validated against the metadata;
//! - `weight_bounds`: the load-time proof that no logit or pre-activation can overflow f32;
//! - `assemble`: the [`Model`] from validated parts (id indices, popularity order, kernel layouts).

mod assemble;
pub mod files;
mod metadata;
mod parts;
mod tensors;
pub mod weight_bounds;

use std::path::Path;

use self::metadata::Metadata;
use self::parts::Parts;
use self::tensors::Reader;
use super::model::Model;
use crate::error::Result;

/// The `format` field of every model directory.
pub const FORMAT_NAME: &str = "hrnn-model";
/// The newest format version this loader reads (version 1 lacks the `users.seen_*` tensors).
pub const FORMAT_VERSION: i64 = 2;
/// Metadata file name.
pub const METADATA_FILE: &str = "model.json";
/// Tensor file name.
pub const TENSORS_FILE: &str = "model.safetensors";

/// Loads and validates the model directory at `dir`.
pub fn load_model(dir: &Path) -> Result<Model> {
    let meta_path = dir.join(METADATA_FILE);
    let tensors_path = dir.join(TENSORS_FILE);
    let meta_bytes = files::read_metadata(&meta_path)?;
    let meta = Metadata::parse(&meta_bytes, &meta_path.display().to_string())?;
    let bytes = files::read_tensors(&tensors_path)?;
    let file = tensors_path.display().to_string();
    let parts = Parts::read(&meta, &Reader::open(&bytes, &file)?)?;
    Ok(assemble::assemble(meta, parts))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Error;
    use safetensors::Dtype;
    use serde_json::Value;
    use std::collections::HashMap;

    // Other modules' tests (`recommender`, `event_log`) import the fixtures from here.
    pub(crate) use crate::engine::test_fixtures::{lcg, temp_dir, write_model, write_model_with};

    fn load_error(
        tag: &str,
        tamper: impl FnOnce(&mut Value, &mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
    ) -> String {
        let dir = temp_dir(tag);
        write_model_with(&dir, 4, 10, 3, 1, tamper);
        let err = load_model(&dir).err().expect("expected a load error");
        assert!(matches!(err, Error::ModelFormat { .. }), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
        err.to_string()
    }

    #[test]
    fn loads_a_valid_directory() {
        let dir = temp_dir("valid");
        write_model(&dir, 5, 70, 4, 3);
        let m = load_model(&dir).unwrap();
        assert_eq!((m.hidden, m.num_items(), m.users.ids.len()), (5, 70, 4));
        assert_eq!(m.table.num_panels(), 5);
        assert_eq!(m.users.history(0), &[0, 1]);
        assert_eq!(m.users.history(3), &[] as &[u32]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_one_model_sees_its_recent_histories() {
        let dir = temp_dir("v1");
        write_model_with(&dir, 4, 10, 3, 1, |m, t| {
            m["format_version"] = 1.into();
            for name in [
                "users.seen_offsets",
                "users.seen_items",
                "users.seen_event_types",
            ] {
                t.remove(name);
            }
        });
        let m = load_model(&dir).unwrap();
        assert_eq!(m.users.seen.row(1).0, &[1, 2]);
        assert!(m.users.seen.contains(1, 2, 7));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejects_each_kind_of_mismatch() {
        let e = load_error("missing", |_, t| {
            t.remove("gru.weight_hh");
        });
        assert!(
            e.contains("model.safetensors: gru.weight_hh: missing tensor"),
            "{e}"
        );
        let e = load_error("shape", |_, t| {
            let (_, shape, data) = t.get_mut("output.weight").unwrap();
            *shape = vec![9, 4];
            data.truncate(9 * 4 * 4);
        });
        assert!(e.contains("output.weight: expected shape [10, 4]"), "{e}");
        let e = load_error("dtype", |_, t| {
            let (dtype, shape, _) = t.get_mut("items.popularity").unwrap();
            *dtype = Dtype::F64;
            assert_eq!(shape, &vec![10]);
        });
        assert!(
            e.contains("items.popularity: expected dtype I64, found F64"),
            "{e}"
        );
        let e = load_error("nan", |_, t| {
            t.get_mut("gru.bias_ih").unwrap().2[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        assert!(
            e.contains("gru.bias_ih: every value must be finite, found NaN at flat index 1"),
            "{e}"
        );
        let e = load_error("future", |m, _| m["format_version"] = 3.into());
        assert!(
            e.contains("model.json: format_version: version 3 is newer"),
            "{e}"
        );
        let e = load_error("ids", |m, _| {
            m["item_ids"]
                .as_array_mut()
                .unwrap()
                .pop()
                .map(|_| ())
                .unwrap()
        });
        assert!(e.contains("item_embedding: expected shape [9, 4]"), "{e}");
        let e = load_error("dup", |m, _| m["user_ids"][1] = "u0".into());
        assert!(e.contains("user_ids: ids must be distinct"), "{e}");
        let e = load_error("range", |_, t| {
            t.get_mut("users.history_items").unwrap().2[0..4].copy_from_slice(&10i32.to_le_bytes())
        });
        assert!(
            e.contains("users.history_items: item indices must lie in [0, 10), found 10"),
            "{e}"
        );
        let e = load_error("offsets", |_, t| {
            t.get_mut("users.history_offsets").unwrap().2[8..16]
                .copy_from_slice(&5i64.to_le_bytes())
        });
        assert!(
            e.contains("users.history_offsets: offsets must be non-decreasing: 5 then 4"),
            "{e}"
        );
        let e = load_error("seen", |_, t| {
            t.get_mut("users.seen_event_types").unwrap().2[0..4]
                .copy_from_slice(&2i32.to_le_bytes())
        });
        assert!(
            e.contains("users.seen_event_types: event-type indices must lie in [0, 2), found 2"),
            "{e}"
        );
        let e = load_error("seen-missing", |_, t| {
            t.remove("users.seen_items");
        });
        assert!(e.contains("users.seen_items: missing tensor"), "{e}");
        let e = load_error("hidden", |m, _| {
            m["hyperparameters"]["hidden_dimension"] = "4".into()
        });
        assert!(
            e.contains("hyperparameters.hidden_dimension: expected an integer, found a string"),
            "{e}"
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let dir = temp_dir("hostile");
        write_model(&dir, 3, 5, 2, 9);
        let good = std::fs::read(dir.join(TENSORS_FILE)).unwrap();
        let mut state = 17u64;
        for trial in 0..300 {
            let mut bytes = good.clone();
            match trial % 3 {
                0 => {
                    bytes.truncate((lcg(&mut state) + 0.5).mul_add(good.len() as f32, 0.0) as usize)
                }
                1 => {
                    for _ in 0..4 {
                        let at = ((lcg(&mut state) + 0.5) * (bytes.len() - 1) as f32) as usize;
                        bytes[at] = (lcg(&mut state) * 512.0) as i32 as u8;
                    }
                }
                _ => {
                    // Corrupt the header length or header text.
                    let at = ((lcg(&mut state) + 0.5) * 64.0) as usize;
                    let last = bytes.len() - 1;
                    bytes[at.min(last)] ^= 0x5A;
                }
            }
            std::fs::write(dir.join(TENSORS_FILE), &bytes).unwrap();
            if let Err(e) = load_model(&dir) {
                assert!(matches!(e, Error::ModelFormat { .. }), "{e:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
