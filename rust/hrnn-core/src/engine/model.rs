//! The immutable model: weights of docs/model.md in the layouts the kernels want, id maps, and
//! the stored training users. Built once by `model_dir::load_model`, then shared behind an `Arc`.

use std::fmt;
use std::str::FromStr;

use rustc_hash::FxHashMap;

use super::blocks::CellBlock;
use super::kernels::{f32_to_bf16, Bf16Lanes, Isa, Lanes, Row, PANEL};
use super::seen::StoredSeen;
use crate::huge_pages::HugePageArray;

/// How the item table's weights are stored, chosen at load time (the file always holds f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The weights as trained.
    #[default]
    F32,
    /// Weights rounded to bfloat16 (biases stay f32): half the memory traffic per query, logits
    /// within ~0.4% of the f32 ones.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" | "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!("expected \"fp32\" or \"bf16\", found {other:?}")),
        }
    }
}

/// The weights of an [`ItemTable`], `num_panels * hidden` rows, in either precision. Every query
/// streams all of them, so they live in huge pages where the OS has them ([`HugePageArray`]).
#[derive(Clone)]
pub enum TableWeights {
    /// f32 rows.
    F32(HugePageArray<Lanes>),
    /// bfloat16 rows.
    Bf16(HugePageArray<Bf16Lanes>),
}

/// The output layer `logit_j = O[j] · o + b_o[j]` as a panel-major table.
///
/// Items are grouped in panels of [`PANEL`] (16) consecutive items. Panel `p` stores `H` rows of
/// 16 lanes, row `d` holding coordinate `d` of the 16 items' output embeddings, contiguously
/// (`H × 64` bytes in f32, `H × 32` in bf16), and — separately, always f32 — one row of their
/// biases. A query streams the table once, front to back, with broadcast-multiply-adds into lane
/// accumulators that start at the biases: no horizontal sums, no gathers. Lanes past the last
/// item hold a very negative bias, so they never win and add nothing to the softmax denominator.
#[derive(Clone)]
pub struct ItemTable {
    /// `num_panels * hidden` rows.
    pub weights: TableWeights,
    /// One row of biases per panel.
    pub bias: Vec<Lanes>,
    /// `H`.
    pub hidden: usize,
    /// Number of real items.
    pub num_items: usize,
}

impl Default for ItemTable {
    fn default() -> Self {
        Self {
            weights: TableWeights::F32(HugePageArray::filled(0, Lanes::default())),
            bias: Vec::new(),
            hidden: 0,
            num_items: 0,
        }
    }
}

/// Bias of the padding lanes: far below any real logit, finite so no `inf − inf` can appear.
const PAD_BIAS: f32 = -1.0e30;

impl ItemTable {
    /// Builds the f32 table from `O` (`[N, H]`, row-major) and `b_o` (`[N]`).
    pub fn new(output_weight: &[f32], output_bias: &[f32], hidden: usize) -> Self {
        let num_items = output_bias.len();
        let num_panels = num_items.div_ceil(PANEL);
        let mut rows = HugePageArray::filled(num_panels * hidden, Lanes::default());
        let mut bias = vec![Lanes([PAD_BIAS; PANEL]); num_panels];
        for p in 0..num_panels {
            let panel = &mut rows[p * hidden..(p + 1) * hidden];
            for l in 0..PANEL {
                let j = p * PANEL + l;
                if j < num_items {
                    for (d, row) in panel.iter_mut().enumerate() {
                        row.0[l] = output_weight[j * hidden + d];
                    }
                    bias[p].0[l] = output_bias[j];
                }
            }
        }
        Self {
            weights: TableWeights::F32(rows),
            bias,
            hidden,
            num_items,
        }
    }

    /// This table with its weights stored in `precision` (rounding f32 to bf16 to nearest even;
    /// a bf16 table cannot be widened back, so asking for f32 from bf16 keeps bf16 values).
    pub fn with_precision(self, precision: Precision) -> Self {
        let weights = match (precision, self.weights) {
            (Precision::Bf16, TableWeights::F32(rows)) => {
                TableWeights::Bf16(HugePageArray::from_fn(rows.len(), |i| {
                    Bf16Lanes(rows[i].0.map(f32_to_bf16))
                }))
            }
            (Precision::F32, TableWeights::Bf16(rows)) => {
                TableWeights::F32(HugePageArray::from_fn(rows.len(), |i| {
                    Lanes(rows[i].to_f32())
                }))
            }
            (_, same) => same,
        };
        Self { weights, ..self }
    }

    /// The precision of the weights.
    pub fn precision(&self) -> Precision {
        match self.weights {
            TableWeights::F32(_) => Precision::F32,
            TableWeights::Bf16(_) => Precision::Bf16,
        }
    }

    /// Number of panels.
    pub fn num_panels(&self) -> usize {
        self.num_items.div_ceil(PANEL)
    }

    /// Bytes of one panel (weights and biases).
    pub fn panel_bytes(&self) -> usize {
        let row = match self.weights {
            TableWeights::F32(_) => std::mem::size_of::<Lanes>(),
            TableWeights::Bf16(_) => std::mem::size_of::<Bf16Lanes>(),
        };
        self.hidden * row + std::mem::size_of::<Lanes>()
    }

    /// The logit of item `j` for `query` (`query[..H]` is `o`): a gather from the panel layout,
    /// for small candidate sets. Summed in the kernels' order (bias first, then `d = 0, 1, …`),
    /// without fused multiply-adds (this code is not compiled for a particular CPU).
    pub fn logit(&self, query: &[f32], j: u32) -> f32 {
        fn sum<R: Row>(rows: &[R], bias: f32, query: &[f32], l: usize) -> f32 {
            rows.iter()
                .zip(query)
                .fold(bias, |acc, (row, &q)| acc + row.lane(l) * q)
        }
        let (p, l) = (j as usize / PANEL, j as usize % PANEL);
        let h = self.hidden;
        let bias = self.bias[p].0[l];
        match &self.weights {
            TableWeights::F32(rows) => sum(&rows[p * h..(p + 1) * h], bias, query, l),
            TableWeights::Bf16(rows) => sum(&rows[p * h..(p + 1) * h], bias, query, l),
        }
    }
}

/// Parameters of the gated recurrent cell and the readout gate (docs/model.md), row-major.
#[derive(Clone, Default)]
pub struct CellWeights {
    /// `H`.
    pub hidden: usize,
    /// `E`, `[N, H]`.
    pub item_embedding: Vec<f32>,
    /// `K`, `[K, H]`.
    pub event_type_embedding: Vec<f32>,
    /// The recurrent matrices `W_d`, `W_ih`, `W_hh` and their biases, as the cell's independent
    /// blocks ([`super::blocks::split`]): one block of width `H` for an ordinary cell, `M` for an
    /// `M`-member ensemble.
    pub blocks: Vec<CellBlock>,
    /// `W_q`, `[H, 2]`.
    pub readout_weight: Vec<f32>,
    /// `b_q`, `[H]`.
    pub readout_bias: Vec<f32>,
}

/// Training users stored in the model: final state, last timestamp, recent history (CSR) and
/// the items they interacted with.
#[derive(Clone, Default)]
pub struct StoredUsers {
    /// User id of each row.
    pub ids: Vec<String>,
    /// Row of each user id.
    pub index: FxHashMap<String, u32>,
    /// `[U, H]`.
    pub state: Vec<f32>,
    /// `[U]`, Unix seconds.
    pub last_timestamp: Vec<i64>,
    /// `[U + 1]`.
    pub history_offsets: Vec<usize>,
    /// `[R]`, item indices, oldest first.
    pub history_items: Vec<u32>,
    /// Every `(item, event type)` each user interacted with in training (`exclude_seen`).
    pub seen: StoredSeen,
}

impl StoredUsers {
    /// The row of `user_id`, if it is a training user.
    pub fn row(&self, user_id: &str) -> Option<usize> {
        self.index.get(user_id).map(|&r| r as usize)
    }

    /// The stored history of row `r`.
    pub fn history(&self, r: usize) -> &[u32] {
        &self.history_items[self.history_offsets[r]..self.history_offsets[r + 1]]
    }
}

/// A loaded, validated, immutable model.
pub struct Model {
    /// `H`.
    pub hidden: usize,
    /// Item id of each item index.
    pub item_ids: Vec<String>,
    /// Item index of each item id.
    pub item_index: FxHashMap<String, u32>,
    /// Event type of each event-type index.
    pub event_types: Vec<String>,
    /// Event-type index of each event type.
    pub event_type_index: FxHashMap<String, u32>,
    /// Seconds after which a gap starts a new session.
    pub session_timeout: i64,
    /// Most recent items kept per user.
    pub history_limit: usize,
    /// The recurrent cell's weights.
    pub cell: CellWeights,
    /// The output layer, panel-major with the bias folded in.
    pub table: ItemTable,
    /// Distinct training users per item.
    pub popularity: Vec<i64>,
    /// Item indices by decreasing popularity (ties: lower index first).
    pub popularity_order: Vec<u32>,
    /// Sum of `popularity` (0 when every count is 0: then scores are uniform).
    pub popularity_total: f64,
    /// The stored training users.
    pub users: StoredUsers,
    /// Instruction set of the kernels.
    pub isa: Isa,
}

impl Model {
    /// Number of items `N`.
    pub fn num_items(&self) -> usize {
        self.item_ids.len()
    }

    /// The popularity score of item `j` (its share of the popularity counts).
    pub fn popularity_score(&self, j: u32) -> f32 {
        if self.popularity_total > 0.0 {
            (self.popularity[j as usize] as f64 / self.popularity_total) as f32
        } else {
            1.0 / self.num_items() as f32
        }
    }
}
