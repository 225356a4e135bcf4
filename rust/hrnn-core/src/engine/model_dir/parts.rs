//! The tensors of a model directory: each one's presence, dtype and shape (`N`, `K`, `U` from the
//! id lists of `model.json`, `H` from `hyperparameters.hidden_dimension`), finite weights whose
//! every pre-activation and logit is bounded ([`weight_bounds`]), CSR offsets, item indices and
//! popularity counts.

use super::metadata::Metadata;
use super::tensors::Reader;
use super::weight_bounds;
use crate::engine::seen::StoredSeen;
use crate::error::Result;

/// Every tensor of docs/format.md, decoded and validated against the metadata.
pub(super) struct Parts {
    pub item_embedding: Vec<f32>,
    pub event_type_embedding: Vec<f32>,
    pub discount_weight: Vec<f32>,
    pub discount_bias: Vec<f32>,
    pub weight_ih: Vec<f32>,
    pub weight_hh: Vec<f32>,
    pub bias_ih: Vec<f32>,
    pub bias_hh: Vec<f32>,
    pub readout_weight: Vec<f32>,
    pub readout_bias: Vec<f32>,
    pub output_weight: Vec<f32>,
    pub output_bias: Vec<f32>,
    pub popularity: Vec<i64>,
    pub state: Vec<f32>,
    pub last_timestamp: Vec<i64>,
    pub history_offsets: Vec<usize>,
    pub history_items: Vec<u32>,
    pub seen: StoredSeen,
}

impl Parts {
    /// Reads and validates every tensor of `reader` against `meta`'s dimensions.
    pub(super) fn read(meta: &Metadata, reader: &Reader<'_, '_>) -> Result<Self> {
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
            reader.file(),
        )?;
        let last_timestamp = reader.i64("users.last_timestamp", &[u], "[U]")?;
        let offsets = reader.i64("users.history_offsets", &[u + 1], "[U+1]")?;
        let history_items_raw = reader.i32_vector("users.history_items", "R")?;
        let r = history_items_raw.len();
        let history_offsets = check_offsets(&offsets, r, meta.history_limit, reader)?;
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
            StoredSeen::new(&offsets, &items, &types, (u, n, k), reader.file())?
        } else {
            StoredSeen::from_history(&history_offsets, &history_items)
        };
        Ok(Self {
            item_embedding,
            event_type_embedding,
            discount_weight,
            discount_bias,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            readout_weight,
            readout_bias,
            output_weight,
            output_bias,
            popularity,
            state,
            last_timestamp,
            history_offsets,
            history_items,
            seen,
        })
    }
}

/// The history CSR offsets as indices: `0`, non-decreasing, ending at `r`, no run past `limit`.
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
