//! Test fixtures shared by the engine's unit tests: a scratch directory and a small, deterministic
//! model directory written in the format `model_dir` reads (docs/format.md).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::Value;

use super::model_dir::{METADATA_FILE, TENSORS_FILE};

/// Writes a small random model directory (deterministic) at `dir`.
pub(crate) fn write_model(dir: &Path, h: usize, n: usize, users: usize, seed: u64) {
    write_model_with(dir, h, n, users, seed, |_, _| {});
}

/// One step of the tests' 64-bit linear congruential generator; returns the new state.
pub(crate) fn lcg_step(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state
}

/// A uniform value in [-0.5, 0.5) from the tests' generator.
pub(crate) fn lcg(state: &mut u64) -> f32 {
    ((lcg_step(state) >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// A uniform integer in [-r, r] from the tests' generator.
pub(crate) fn lcg_int(state: &mut u64, r: i64) -> i64 {
    ((lcg_step(state) >> 33) as i64 % (2 * r + 1)) - r
}

/// Like `write_model`, with a hook to tamper with the JSON and tensors before writing.
pub(crate) fn write_model_with(
    dir: &Path,
    h: usize,
    n: usize,
    users: usize,
    seed: u64,
    tamper: impl FnOnce(&mut Value, &mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) {
    let mut s = seed;
    let mut f32s = |len: usize, scale: f32| -> Vec<u8> {
        (0..len)
            .flat_map(|_| (lcg(&mut s) * scale).to_le_bytes())
            .collect()
    };
    let k = 2;
    let mut t: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = HashMap::new();
    let mut add = |name: &str, dtype, shape: Vec<usize>, data: Vec<u8>| {
        t.insert(name.to_owned(), (dtype, shape, data));
    };
    add("item_embedding", Dtype::F32, vec![n, h], f32s(n * h, 1.0));
    add(
        "event_type_embedding",
        Dtype::F32,
        vec![k, h],
        f32s(k * h, 1.0),
    );
    add(
        "discount.weight",
        Dtype::F32,
        vec![h, h + 2],
        f32s(h * (h + 2), 0.5),
    );
    add("discount.bias", Dtype::F32, vec![h], f32s(h, 0.5));
    add(
        "gru.weight_ih",
        Dtype::F32,
        vec![3 * h, h + 2],
        f32s(3 * h * (h + 2), 0.5),
    );
    add(
        "gru.weight_hh",
        Dtype::F32,
        vec![3 * h, h],
        f32s(3 * h * h, 0.5),
    );
    add("gru.bias_ih", Dtype::F32, vec![3 * h], f32s(3 * h, 0.5));
    add("gru.bias_hh", Dtype::F32, vec![3 * h], f32s(3 * h, 0.5));
    add("readout.weight", Dtype::F32, vec![h, 2], f32s(2 * h, 0.5));
    add("readout.bias", Dtype::F32, vec![h], f32s(h, 0.5));
    add("output.weight", Dtype::F32, vec![n, h], f32s(n * h, 2.0));
    add("output.bias", Dtype::F32, vec![n], f32s(n, 1.0));
    add(
        "users.state",
        Dtype::F32,
        vec![users, h],
        f32s(users * h, 1.0),
    );
    let pop: Vec<u8> = (0..n as i64)
        .flat_map(|j| ((j * 7919) % 13).to_le_bytes())
        .collect();
    add("items.popularity", Dtype::I64, vec![n], pop);
    let last: Vec<u8> = (0..users as i64)
        .flat_map(|u| (1_700_000_000 + u * 100).to_le_bytes())
        .collect();
    add("users.last_timestamp", Dtype::I64, vec![users], last);
    // user u has history [u % n, (u + 1) % n] (length 2, but 0 for the last user).
    let mut offsets = vec![0i64];
    let mut items = Vec::new();
    for u in 0..users {
        if u + 1 < users {
            items.push((u % n) as i32);
            items.push(((u + 1) % n) as i32);
        }
        offsets.push(items.len() as i64);
    }
    let r = items.len();
    add(
        "users.history_offsets",
        Dtype::I64,
        vec![users + 1],
        offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
    );
    add(
        "users.history_items",
        Dtype::I32,
        vec![r],
        items.iter().flat_map(|o| o.to_le_bytes()).collect(),
    );
    // seen entries: each user's history items as "click" (type 0); user 1 also bought item 3
    let mut seen_offsets = vec![0i64];
    let (mut seen_items, mut seen_types) = (Vec::new(), Vec::new());
    for u in 0..users {
        let mut own: Vec<(i32, i32)> = items[offsets[u] as usize..offsets[u + 1] as usize]
            .iter()
            .map(|&j| (j, 0))
            .collect();
        if u == 1 {
            own.push((3 % n as i32, 1));
        }
        own.sort_unstable();
        own.dedup();
        seen_items.extend(own.iter().map(|e| e.0));
        seen_types.extend(own.iter().map(|e| e.1));
        seen_offsets.push(seen_items.len() as i64);
    }
    let s = seen_items.len();
    let le = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|o| o.to_le_bytes()).collect() };
    add(
        "users.seen_offsets",
        Dtype::I64,
        vec![users + 1],
        seen_offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
    );
    add("users.seen_items", Dtype::I32, vec![s], le(&seen_items));
    add(
        "users.seen_event_types",
        Dtype::I32,
        vec![s],
        le(&seen_types),
    );
    let mut meta = serde_json::json!({
        "format": "hrnn-model",
        "format_version": 2,
        "hyperparameters": {"hidden_dimension": h, "bptt": 32, "recency_mask": true,
            "min_user_history_length_percentile": 0.0, "max_user_history_length_percentile": 0.99},
        "training": {},
        "session_timeout": 1800,
        "history_limit": 100,
        "item_ids": (0..n).map(|j| format!("i{j}")).collect::<Vec<_>>(),
        "event_types": ["click", "buy"],
        "user_ids": (0..users).map(|u| format!("u{u}")).collect::<Vec<_>>(),
        "data_summary": {},
        "hrnn_version": "test",
    });
    tamper(&mut meta, &mut t);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(METADATA_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
    let views: Vec<(String, TensorView<'_>)> = t
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join(TENSORS_FILE), bytes).unwrap();
}

pub(crate) fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hrnn-engine-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
