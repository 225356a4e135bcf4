//! The immutable model: weights of docs/model.md in the layouts the kernels want, id maps, and
//! the stored training users. Built once by `model_dir::load_model`, then shared behind an `Arc`.

use rustc_hash::FxHashMap;

use super::kernels::{Isa, Lanes, PANEL};

/// The output layer `logit_j = O[j] · o + b_o[j]` as a panel-major table.
///
/// Items are grouped in panels of [`PANEL`] (32) consecutive items. Panel `p` stores `D = H + 1`
/// rows of 32 lanes: row `d < H` holds coordinate `d` of the 32 items' output embeddings, row `H`
/// holds their biases (the bias is folded in as a coordinate that multiplies a constant 1). A
/// query then streams the table once, front to back, with broadcast-multiply-adds into 32 lane
/// accumulators — no horizontal sums, no gathers. Lanes past the last item hold a very negative
/// bias, so they never win and add nothing to the softmax denominator.
#[derive(Clone, Default)]
pub struct ItemTable {
    /// `num_panels * dim` rows.
    pub rows: Vec<Lanes>,
    /// `H + 1`.
    pub dim: usize,
    /// Number of real items.
    pub num_items: usize,
}

/// Bias of the padding lanes: far below any real logit, finite so no `inf − inf` can appear.
const PAD_BIAS: f32 = -1.0e30;

impl ItemTable {
    /// Builds the table from `O` (`[N, H]`, row-major) and `b_o` (`[N]`).
    pub fn new(output_weight: &[f32], output_bias: &[f32], hidden: usize) -> Self {
        let num_items = output_bias.len();
        let dim = hidden + 1;
        let num_panels = num_items.div_ceil(PANEL);
        let mut rows = vec![Lanes::default(); num_panels * dim];
        for p in 0..num_panels {
            let panel = &mut rows[p * dim..(p + 1) * dim];
            for l in 0..PANEL {
                let j = p * PANEL + l;
                if j < num_items {
                    for (d, row) in panel[..hidden].iter_mut().enumerate() {
                        row.0[l] = output_weight[j * hidden + d];
                    }
                    panel[hidden].0[l] = output_bias[j];
                } else {
                    panel[hidden].0[l] = PAD_BIAS;
                }
            }
        }
        Self {
            rows,
            dim,
            num_items,
        }
    }

    /// Number of panels.
    pub fn num_panels(&self) -> usize {
        self.num_items.div_ceil(PANEL)
    }

    /// The `dim` rows of panel `p`.
    #[inline(always)]
    pub fn panel(&self, p: usize) -> &[Lanes] {
        &self.rows[p * self.dim..(p + 1) * self.dim]
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
    /// `W_d`, `[H, H+2]`.
    pub discount_weight: Vec<f32>,
    /// `b_d`, `[H]`.
    pub discount_bias: Vec<f32>,
    /// `W_ih`, `[3H, H+2]`, gate order r, z, n.
    pub weight_ih: Vec<f32>,
    /// `W_hh`, `[3H, H]`.
    pub weight_hh: Vec<f32>,
    /// `b_ih`, `[3H]`.
    pub bias_ih: Vec<f32>,
    /// `b_hh`, `[3H]`.
    pub bias_hh: Vec<f32>,
    /// `W_q`, `[H, 2]`.
    pub readout_weight: Vec<f32>,
    /// `b_q`, `[H]`.
    pub readout_bias: Vec<f32>,
}

/// Training users stored in the model: final state, last timestamp and recent history (CSR).
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
