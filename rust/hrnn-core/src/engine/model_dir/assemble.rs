//! Builds the [`Model`] from validated parts: id indices, the popularity order, the item table in
//! its panel layout and the recurrent cell's blocks.

use rustc_hash::FxHashMap;

use super::metadata::Metadata;
use super::parts::Parts;
use crate::engine::blocks::{self, CellBlock};
use crate::engine::kernels::Isa;
use crate::engine::model::{CellWeights, ItemTable, Model, StoredUsers};

/// The model of `meta` and `parts` (both already validated: this step cannot fail).
pub(super) fn assemble(meta: Metadata, parts: Parts) -> Model {
    let Parts {
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
    } = parts;
    let h = meta.hidden;
    let n = meta.item_ids.len();
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
        blocks: blocks::split(CellBlock {
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
    Model {
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
    }
}

fn index_of(ids: &[String]) -> FxHashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect()
}
