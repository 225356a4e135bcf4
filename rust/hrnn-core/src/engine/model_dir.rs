//! Reads a model directory (docs/format.md, format version 1) into a [`Model`].
//!
//! Everything read from disk is validated before use — a hostile or damaged file yields
//! `Error::ModelFormat` naming the file and the tensor or field, never a panic: JSON types and
//! ranges, id lists (distinct strings), every tensor's presence, dtype and shape (`N`, `K`, `U`
//! come from the id lists of `model.json`, `H` from `hyperparameters.hidden_dimension`), finite
//! weights whose every pre-activation and logit is bounded ([`weight_bounds`]), CSR offsets, item indices and popularity counts. The files are opened by
//! [`model_files`] (regular files only, sizes checked before reading); the safetensors header
//! itself (offsets, sizes, overlap) is checked by the `safetensors` crate.

use std::path::Path;

use rustc_hash::FxHashMap;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};

use super::blocks::CellBlock;
use super::kernels::Isa;
use super::model::{CellWeights, ItemTable, Model, StoredUsers};
use super::model_files;
use super::seen::StoredSeen;
use super::weight_bounds;
use crate::error::{Error, Result};

/// The `format` field of every model directory.
pub const FORMAT_NAME: &str = "hrnn-model";
/// The newest format version this loader reads (version 1 lacks the `users.seen_*` tensors).
pub const FORMAT_VERSION: i64 = 2;
/// Metadata file name.
pub const METADATA_FILE: &str = "model.json";
/// Tensor file name.
pub const TENSORS_FILE: &str = "model.safetensors";

/// Largest hidden dimension accepted (keeps every size computation far from overflow).
const MAX_HIDDEN: i64 = 1 << 16;

/// Loads and validates the model directory at `dir`.
pub fn load_model(dir: &Path) -> Result<Model> {
    let meta_path = dir.join(METADATA_FILE);
    let tensors_path = dir.join(TENSORS_FILE);
    let meta_bytes = model_files::read_metadata(&meta_path)?;
    let meta = Metadata::parse(&meta_bytes, &meta_path.display().to_string())?;
    let bytes = model_files::read_tensors(&tensors_path)?;
    build(meta, &bytes, &tensors_path.display().to_string())
}

/// The fields of `model.json` the engine uses.
struct Metadata {
    version: i64,
    hidden: usize,
    session_timeout: i64,
    history_limit: usize,
    item_ids: Vec<String>,
    event_types: Vec<String>,
    user_ids: Vec<String>,
}

impl Metadata {
    fn parse(bytes: &[u8], file: &str) -> Result<Self> {
        let err = |field: &str, message: String| Error::model_format(file, field, message);
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| err("<json>", format!("not valid JSON: {e}")))?;
        let Value::Object(root) = value else {
            return Err(err(
                "<json>",
                format!("expected a JSON object, found {}", kind(&value)),
            ));
        };
        let format = string_field(&root, "format", file)?;
        if format != FORMAT_NAME {
            return Err(err(
                "format",
                format!("expected {FORMAT_NAME:?}, found {format:?}"),
            ));
        }
        let version = int_field(&root, "format_version", file)?;
        if version > FORMAT_VERSION {
            return Err(err(
                "format_version",
                format!("version {version} is newer than this hrnn reads (≤ {FORMAT_VERSION}); upgrade hrnn"),
            ));
        }
        if version < 1 {
            return Err(err(
                "format_version",
                format!("expected ≥ 1, found {version}"),
            ));
        }
        let hyper = object_field(&root, "hyperparameters", file)?;
        let hidden = int_field(hyper, "hidden_dimension", file)
            .map_err(|e| rename(e, "hyperparameters.hidden_dimension"))?;
        if !(1..=MAX_HIDDEN).contains(&hidden) {
            return Err(err(
                "hyperparameters.hidden_dimension",
                format!("expected an integer in [1, {MAX_HIDDEN}], found {hidden}"),
            ));
        }
        object_field(&root, "training", file)?;
        object_field(&root, "data_summary", file)?;
        string_field(&root, "hrnn_version", file)?;
        let session_timeout = int_field(&root, "session_timeout", file)?;
        if session_timeout < 0 {
            return Err(err(
                "session_timeout",
                format!("expected ≥ 0 seconds, found {session_timeout}"),
            ));
        }
        let history_limit = int_field(&root, "history_limit", file)?;
        let history_limit = usize::try_from(history_limit).map_err(|_| {
            err(
                "history_limit",
                format!("expected ≥ 0, found {history_limit}"),
            )
        })?;
        let item_ids = id_list(&root, "item_ids", file)?;
        if item_ids.is_empty() {
            return Err(err(
                "item_ids",
                "expected at least one item, found an empty list".into(),
            ));
        }
        if item_ids.len() > u32::MAX as usize / 2 {
            return Err(err(
                "item_ids",
                format!("too many items ({})", item_ids.len()),
            ));
        }
        let event_types = id_list(&root, "event_types", file)?;
        if event_types.is_empty() {
            return Err(err(
                "event_types",
                "expected at least one entry (`[\"\"]` without EVENT_TYPE)".into(),
            ));
        }
        let user_ids = id_list(&root, "user_ids", file)?;
        Ok(Self {
            version,
            hidden: hidden as usize,
            session_timeout,
            history_limit,
            item_ids,
            event_types,
            user_ids,
        })
    }
}

fn rename(error: Error, field: &str) -> Error {
    match error {
        Error::ModelFormat { file, message, .. } => Error::ModelFormat {
            file,
            field: field.to_owned(),
            message,
        },
        other => other,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str, file: &str) -> Result<&'a Value> {
    obj.get(name)
        .ok_or_else(|| Error::model_format(file, name, "missing required field"))
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str, file: &str) -> Result<&'a str> {
    match field(obj, name, file)? {
        Value::String(s) => Ok(s),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn int_field(obj: &Map<String, Value>, name: &str, file: &str) -> Result<i64> {
    match field(obj, name, file)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Error::model_format(file, name, format!("expected an integer, found {n}"))
        }),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected an integer, found {}", kind(other)),
        )),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    file: &str,
) -> Result<&'a Map<String, Value>> {
    match field(obj, name, file)? {
        Value::Object(o) => Ok(o),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

/// A list of distinct strings.
fn id_list(obj: &Map<String, Value>, name: &str, file: &str) -> Result<Vec<String>> {
    let Value::Array(values) = field(obj, name, file)? else {
        return Err(Error::model_format(
            file,
            name,
            "expected a list of strings",
        ));
    };
    let mut ids = Vec::with_capacity(values.len());
    let mut seen = FxHashMap::default();
    seen.reserve(values.len());
    for (i, v) in values.iter().enumerate() {
        let Value::String(s) = v else {
            return Err(Error::model_format(
                file,
                name,
                format!("entry {i}: expected a string, found {}", kind(v)),
            ));
        };
        if let Some(first) = seen.insert(s.as_str(), i) {
            return Err(Error::model_format(
                file,
                name,
                format!("ids must be distinct: {s:?} at entries {first} and {i}"),
            ));
        }
        ids.push(s.clone());
    }
    Ok(ids)
}

/// Reads the tensors of `bytes` against the metadata's dimensions.
fn build(meta: Metadata, bytes: &[u8], file: &str) -> Result<Model> {
    // The crate validates the header; catch_unwind is a last line of defence so that no input
    // can bring the process down (a panic must never cross into Python).
    let tensors = std::panic::catch_unwind(|| SafeTensors::deserialize(bytes))
        .map_err(|_| Error::model_format(file, "<header>", "unreadable safetensors header"))?
        .map_err(|e| {
            Error::model_format(
                file,
                "<header>",
                format!("not a valid safetensors file: {e}"),
            )
        })?;
    let reader = Reader {
        tensors: &tensors,
        file,
    };
    let h = meta.hidden;
    let n = meta.item_ids.len();
    let k = meta.event_types.len();
    let u = meta.user_ids.len();

    let item_embedding = reader.f32("item_embedding", &[n, h], "[N, H]")?;
    let event_type_embedding = reader.f32("event_type_embedding", &[k, h], "[K, H]")?;
    let discount_weight = reader.f32("discount.weight", &[h, h + 2], "[H, H+2]")?;
    let discount_bias = reader.f32("discount.bias", &[h], "[H]")?;
    let weight_ih = reader.f32("gru.weight_ih", &[3 * h, h + 2], "[3H, H+2]")?;
    let weight_hh = reader.f32("gru.weight_hh", &[3 * h, h], "[3H, H]")?;
    let bias_ih = reader.f32("gru.bias_ih", &[3 * h], "[3H]")?;
    let bias_hh = reader.f32("gru.bias_hh", &[3 * h], "[3H]")?;
    let readout_weight = reader.f32("readout.weight", &[h, 2], "[H, 2]")?;
    let readout_bias = reader.f32("readout.bias", &[h], "[H]")?;
    let output_weight = reader.f32("output.weight", &[n, h], "[N, H]")?;
    let output_bias = reader.f32("output.bias", &[n], "[N]")?;
    let popularity = reader.i64("items.popularity", &[n], "[N]")?;
    if let Some((j, &c)) = popularity.iter().enumerate().find(|(_, &c)| c < 0) {
        return Err(reader.error(
            "items.popularity",
            format!("counts must be ≥ 0, found {c} at index {j}"),
        ));
    }
    let state = reader.f32("users.state", &[u, h], "[U, H]")?;
    weight_bounds::check(
        &weight_bounds::Weights {
            hidden: h,
            item_embedding: &item_embedding,
            event_type_embedding: &event_type_embedding,
            state: &state,
            discount: (&discount_weight, &discount_bias),
            input: (&weight_ih, &bias_ih),
            recurrent: (&weight_hh, &bias_hh),
            readout: (&readout_weight, &readout_bias),
            output: (&output_weight, &output_bias),
        },
        file,
    )?;
    let last_timestamp = reader.i64("users.last_timestamp", &[u], "[U]")?;
    let offsets = reader.i64("users.history_offsets", &[u + 1], "[U+1]")?;
    let history_items_raw = reader.i32_vector("users.history_items", "R")?;
    let r = history_items_raw.len();
    let history_offsets = check_offsets(&offsets, r, meta.history_limit, &reader)?;
    let mut history_items = Vec::with_capacity(r);
    for (pos, &item) in history_items_raw.iter().enumerate() {
        if item < 0 || item as usize >= n {
            return Err(reader.error(
                "users.history_items",
                format!("item indices must lie in [0, {n}), found {item} at position {pos}"),
            ));
        }
        history_items.push(item as u32);
    }
    let seen = if meta.version >= 2 {
        let offsets = reader.i64("users.seen_offsets", &[u + 1], "[U+1]")?;
        let items = reader.i32_vector("users.seen_items", "S")?;
        let types = reader.i32_vector("users.seen_event_types", "S")?;
        StoredSeen::new(&offsets, &items, &types, (u, n, k), file)?
    } else {
        StoredSeen::from_history(&history_offsets, &history_items)
    };

    let item_index = index_of(&meta.item_ids);
    let event_type_index = index_of(&meta.event_types);
    let user_index = index_of(&meta.user_ids);
    let mut popularity_order: Vec<u32> = (0..n as u32).collect();
    popularity_order.sort_by_key(|&j| (std::cmp::Reverse(popularity[j as usize]), j));
    let popularity_total = popularity.iter().map(|&c| c as f64).sum();
    let table = ItemTable::new(&output_weight, &output_bias, h);
    let cell = CellWeights {
        hidden: h,
        item_embedding,
        event_type_embedding,
        blocks: super::blocks::split(CellBlock {
            width: h,
            discount_weight,
            discount_bias,
            weight_ih,
            bias_ih,
            weight_hh,
            bias_hh,
        }),
        readout_weight,
        readout_bias,
    };
    Ok(Model {
        hidden: h,
        item_ids: meta.item_ids,
        item_index,
        event_types: meta.event_types,
        event_type_index,
        session_timeout: meta.session_timeout,
        history_limit: meta.history_limit,
        cell,
        table,
        popularity,
        popularity_order,
        popularity_total,
        users: StoredUsers {
            ids: meta.user_ids,
            index: user_index,
            state,
            last_timestamp,
            history_offsets,
            history_items,
            seen,
        },
        isa: Isa::detect(),
    })
}

fn index_of(ids: &[String]) -> FxHashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect()
}

fn check_offsets(
    offsets: &[i64],
    r: usize,
    limit: usize,
    reader: &Reader<'_, '_>,
) -> Result<Vec<usize>> {
    let name = "users.history_offsets";
    if offsets.first() != Some(&0) {
        return Err(reader.error(
            name,
            format!(
                "expected the first offset to be 0, found {:?}",
                offsets.first()
            ),
        ));
    }
    if offsets.last().copied() != Some(r as i64) {
        return Err(reader.error(
            name,
            format!("expected the last offset to be R = {r} (length of users.history_items), found {:?}", offsets.last()),
        ));
    }
    let mut out = Vec::with_capacity(offsets.len());
    for (i, w) in offsets.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(reader.error(
                name,
                format!(
                    "offsets must be non-decreasing: {} then {} at user {i}",
                    w[0], w[1]
                ),
            ));
        }
        if (w[1] - w[0]) as u64 > limit as u64 {
            return Err(reader.error(
                name,
                format!(
                    "user {i} has {} history items, more than history_limit = {limit}",
                    w[1] - w[0]
                ),
            ));
        }
    }
    out.extend(offsets.iter().map(|&o| o as usize));
    Ok(out)
}

fn decode<T, const B: usize>(bytes: &[u8], from_le: fn([u8; B]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(B)
        .map(|c| from_le(c.try_into().expect("chunks_exact yields B bytes")))
        .collect()
}

struct Reader<'a, 'data> {
    tensors: &'a SafeTensors<'data>,
    file: &'a str,
}

impl<'data> Reader<'_, 'data> {
    fn error(&self, tensor: &str, message: String) -> Error {
        Error::model_format(self.file, tensor, message)
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<safetensors::tensor::TensorView<'data>> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| self.error(name, "missing tensor".into()))?;
        if view.dtype() != dtype {
            return Err(self.error(
                name,
                format!("expected dtype {dtype:?}, found {:?}", view.dtype()),
            ));
        }
        Ok(view)
    }

    fn shaped(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        symbols: &str,
    ) -> Result<&'data [u8]> {
        let view = self.view(name, dtype)?;
        if view.shape() != shape {
            return Err(self.error(
                name,
                format!(
                    "expected shape {shape:?} = {symbols} (N, K, U from the id lists of model.json, H from \
                     hyperparameters.hidden_dimension), found {:?}",
                    view.shape()
                ),
            ));
        }
        Ok(view.data())
    }

    fn f32(&self, name: &str, shape: &[usize], symbols: &str) -> Result<Vec<f32>> {
        let values = decode(
            self.shaped(name, Dtype::F32, shape, symbols)?,
            f32::from_le_bytes,
        );
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(self.error(
                name,
                format!("every value must be finite, found {v} at flat index {i}"),
            ));
        }
        Ok(values)
    }

    /// A one-dimensional I32 tensor of any length (`symbol` names it in errors).
    fn i32_vector(&self, name: &str, symbol: &str) -> Result<Vec<i32>> {
        let view = self.view(name, Dtype::I32)?;
        if view.shape().len() != 1 {
            return Err(self.error(
                name,
                format!("expected shape [{symbol}], found {:?}", view.shape()),
            ));
        }
        Ok(decode(view.data(), i32::from_le_bytes))
    }

    fn i64(&self, name: &str, shape: &[usize], symbols: &str) -> Result<Vec<i64>> {
        Ok(decode(
            self.shaped(name, Dtype::I64, shape, symbols)?,
            i64::from_le_bytes,
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
