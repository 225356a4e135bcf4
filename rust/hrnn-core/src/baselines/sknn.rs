//! Session-based k-nearest-neighbours (the V-SKNN / STAN family of Ludewig & Jannach and Garg et
//! al.), the baseline that independent benchmarks found hard to beat for session-aware RNNs.
//!
//! The "current session" of a query is the last `context_length` known items of its history.
//! 1. Each distinct context item gets a weight `exp(-d / position_decay)`, `d` = how many distinct
//!    items came after it (the newest has d = 0), times its idf `ln(S / S_i)` when `idf` is on.
//! 2. Candidate neighbours are, per context item, the `sample_size` most recent training sessions
//!    that contain it. A candidate's similarity is the sum of the weights of the context items it
//!    shares, divided by `sqrt(|context| · |session|)` (cosine of binary vectors), times
//!    `0.5^(|t_query − t_session| / recency_half_life)` (`t_session` = its last event).
//! 3. The `neighbours` most similar candidates vote: item `i` of neighbour `n` receives
//!    `sim(n) · exp(-|pos_n(i) − pos_n(shared)| / neighbour_position_decay)`, `shared` being the
//!    newest context item that `n` contains (an item counts once per neighbour, at its nearest
//!    position).
//! 4. `popularity_backfill · popularity(i)` (distinct sessions, scaled to max 1) is added so
//!    that items nobody voted for are ordered by popularity; with `exclude_seen`, every item of the
//!    query's history is removed.
//!
//! Decays set to `f64::INFINITY` switch the corresponding weighting off.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{Error, Result};
use crate::top_k::top_k;

/// Hyper-parameters of [`SessionKnn::recommend`] (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SknnParams {
    /// Number of neighbour sessions that vote (k).
    pub neighbours: usize,
    /// Most recent sessions considered per context item.
    pub sample_size: usize,
    /// Number of the history's newest known items that form the current session.
    pub context_length: usize,
    /// Decay (in items) of a context item's weight with its distance from the newest item.
    pub position_decay: f64,
    /// Half-life (seconds) of a neighbour's weight with its distance in time from the query.
    pub recency_half_life: f64,
    /// Decay (in positions) of a vote with its distance from the shared item in the neighbour.
    pub neighbour_position_decay: f64,
    /// Whether shared items are weighted by their inverse session frequency.
    pub idf: bool,
    /// Weight of the popularity backfill.
    pub popularity_backfill: f64,
}

impl Default for SknnParams {
    fn default() -> Self {
        Self {
            neighbours: 100,
            sample_size: 1000,
            context_length: 10,
            position_decay: 2.0,
            recency_half_life: f64::INFINITY,
            neighbour_position_decay: f64::INFINITY,
            idf: false,
            popularity_backfill: 1e-9,
        }
    }
}

impl SknnParams {
    fn validate(&self) -> Result<()> {
        let positive = |name: &str, value: f64| {
            if value > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid_argument(
                    name,
                    format!("expected a positive number, found {value}"),
                ))
            }
        };
        if self.neighbours == 0 {
            return Err(Error::invalid_argument(
                "neighbours",
                "expected at least 1, found 0",
            ));
        }
        if self.sample_size == 0 {
            return Err(Error::invalid_argument(
                "sample_size",
                "expected at least 1, found 0",
            ));
        }
        if self.context_length == 0 {
            return Err(Error::invalid_argument(
                "context_length",
                "expected at least 1, found 0",
            ));
        }
        positive("position_decay", self.position_decay)?;
        positive("recency_half_life", self.recency_half_life)?;
        positive("neighbour_position_decay", self.neighbour_position_decay)?;
        if !(self.popularity_backfill >= 0.0 && self.popularity_backfill.is_finite()) {
            return Err(Error::invalid_argument(
                "popularity_backfill",
                format!(
                    "expected a finite number >= 0, found {}",
                    self.popularity_backfill
                ),
            ));
        }
        Ok(())
    }
}

/// An index of training sessions for session-kNN recommendations (immutable once built).
#[derive(Debug, Clone)]
pub struct SessionKnn {
    num_items: usize,
    session_offsets: Vec<usize>,
    items: Vec<u32>,
    session_time: Vec<i64>,
    /// Sessions containing each item (CSR by item), most recent first.
    item_offsets: Vec<usize>,
    item_sessions: Vec<u32>,
    idf: Vec<f64>,
    popularity: Vec<f64>,
}

/// Checks CSR offsets: starts at 0, non-decreasing, ends at `len`.
fn check_offsets(name: &str, offsets: &[i64], len: usize) -> Result<Vec<usize>> {
    if offsets.first() != Some(&0) || offsets.last().map(|&o| o as usize) != Some(len) {
        return Err(Error::invalid_argument(
            name,
            format!(
                "expected CSR offsets from 0 to {len}, found {:?} … {:?}",
                offsets.first(),
                offsets.last()
            ),
        ));
    }
    if let Some(w) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::invalid_argument(
            name,
            format!(
                "expected non-decreasing offsets, found {} then {} at {w}",
                offsets[w],
                offsets[w + 1]
            ),
        ));
    }
    Ok(offsets.iter().map(|&o| o as usize).collect())
}

impl SessionKnn {
    /// Indexes training sessions given in CSR form.
    ///
    /// `session_offsets` (`num_sessions + 1`) delimit each session's events in `items` (item
    /// indices `< num_items`, time-ordered) and `timestamps` (Unix seconds).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for malformed offsets, mismatched lengths or an item index out
    /// of range.
    pub fn new(
        session_offsets: &[i64],
        items: &[u32],
        timestamps: &[i64],
        num_items: usize,
    ) -> Result<Self> {
        if items.len() != timestamps.len() {
            return Err(Error::invalid_argument(
                "timestamps",
                format!(
                    "expected one per item ({}), found {}",
                    items.len(),
                    timestamps.len()
                ),
            ));
        }
        let session_offsets = check_offsets("session_offsets", session_offsets, items.len())?;
        if let Some(&bad) = items.iter().find(|&&i| i as usize >= num_items) {
            return Err(Error::invalid_argument(
                "items",
                format!("expected item indices below num_items = {num_items}, found {bad}"),
            ));
        }
        let num_sessions = session_offsets.len() - 1;
        let session_time: Vec<i64> = (0..num_sessions)
            .map(|s| {
                let (a, b) = (session_offsets[s], session_offsets[s + 1]);
                timestamps[a..b].iter().copied().max().unwrap_or(i64::MIN)
            })
            .collect();

        // sessions containing each item, deduplicated, most recent first
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(items.len());
        for s in 0..num_sessions {
            for &item in &items[session_offsets[s]..session_offsets[s + 1]] {
                pairs.push((item, s as u32));
            }
        }
        pairs.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then(session_time[b.1 as usize].cmp(&session_time[a.1 as usize]))
                .then(b.1.cmp(&a.1))
        });
        pairs.dedup();
        let mut item_offsets = vec![0usize; num_items + 1];
        for &(item, _) in &pairs {
            item_offsets[item as usize + 1] += 1;
        }
        for i in 0..num_items {
            item_offsets[i + 1] += item_offsets[i];
        }
        let item_sessions: Vec<u32> = pairs.iter().map(|&(_, s)| s).collect();
        let counts: Vec<f64> = (0..num_items)
            .map(|i| (item_offsets[i + 1] - item_offsets[i]) as f64)
            .collect();
        let max_count = counts.iter().copied().fold(0.0, f64::max).max(1.0);
        let idf = counts
            .iter()
            .map(|&c| {
                if c > 0.0 {
                    (num_sessions as f64 / c).ln()
                } else {
                    0.0
                }
            })
            .collect();
        let popularity = counts.iter().map(|&c| c / max_count).collect();
        Ok(Self {
            num_items,
            session_offsets,
            items: items.to_vec(),
            session_time,
            item_offsets,
            item_sessions,
            idf,
            popularity,
        })
    }

    /// Number of items of the catalogue.
    pub fn num_items(&self) -> usize {
        self.num_items
    }

    /// Number of indexed sessions.
    pub fn num_sessions(&self) -> usize {
        self.session_offsets.len() - 1
    }

    fn session(&self, s: u32) -> &[u32] {
        &self.items[self.session_offsets[s as usize]..self.session_offsets[s as usize + 1]]
    }

    /// Scores every item for one history into `scores` (length `num_items`).
    fn score_into(
        &self,
        params: &SknnParams,
        history: &[i64],
        query_time: i64,
        scratch: &mut Scratch,
    ) {
        let scores = &mut scratch.scores;
        for (score, pop) in scores.iter_mut().zip(&self.popularity) {
            *score = params.popularity_backfill * pop;
        }
        // the current session: the newest distinct known items, newest first
        let mut context: Vec<u32> = Vec::with_capacity(params.context_length);
        let mut in_context = FxHashSet::default();
        for &item in history.iter().rev() {
            if context.len() == params.context_length {
                break;
            }
            if item >= 0 && (item as usize) < self.num_items && in_context.insert(item as u32) {
                context.push(item as u32);
            }
        }
        if context.is_empty() {
            return;
        }

        // candidate neighbours: (similarity, newest shared item)
        let mut candidates: FxHashMap<u32, (f64, u32)> = FxHashMap::default();
        for (distance, &item) in context.iter().enumerate() {
            let mut weight = (-(distance as f64) / params.position_decay).exp();
            if params.idf {
                weight *= self.idf[item as usize];
            }
            let sessions = &self.item_sessions
                [self.item_offsets[item as usize]..self.item_offsets[item as usize + 1]];
            for &s in sessions.iter().take(params.sample_size) {
                candidates.entry(s).or_insert((0.0, item)).0 += weight;
            }
        }
        let norm = (context.len() as f64).sqrt();
        let mut neighbours: Vec<(u32, f64, u32)> = candidates
            .into_iter()
            .map(|(s, (weight, shared))| {
                let gap = (query_time - self.session_time[s as usize]).unsigned_abs() as f64;
                let recency = 0.5f64.powf(gap / params.recency_half_life);
                let sim = weight / (norm * (self.session(s).len() as f64).sqrt()) * recency;
                (s, sim, shared)
            })
            .filter(|n| n.1 > 0.0)
            .collect();
        let by_similarity =
            |a: &(u32, f64, u32), b: &(u32, f64, u32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if neighbours.len() > params.neighbours {
            neighbours.select_nth_unstable_by(params.neighbours - 1, by_similarity);
            neighbours.truncate(params.neighbours);
        }

        // votes
        let decay_votes = params.neighbour_position_decay.is_finite();
        for (tag, &(s, sim, shared)) in neighbours.iter().enumerate() {
            let session = self.session(s);
            let anchor = if decay_votes {
                session.iter().rposition(|&i| i == shared).unwrap_or(0) as f64
            } else {
                0.0
            };
            scratch.touched.clear();
            for (position, &item) in session.iter().enumerate() {
                let weight = if decay_votes {
                    (-(position as f64 - anchor).abs() / params.neighbour_position_decay).exp()
                } else {
                    1.0
                };
                let i = item as usize;
                if scratch.stamp[i] != tag {
                    scratch.stamp[i] = tag;
                    scratch.best[i] = weight;
                    scratch.touched.push(item);
                } else if weight > scratch.best[i] {
                    scratch.best[i] = weight;
                }
            }
            for &item in &scratch.touched {
                scores[item as usize] += sim * scratch.best[item as usize];
            }
        }
        // reset stamps so that the next query's tags (from 0) are unambiguous
        for &(s, _, _) in &neighbours {
            for &item in self.session(s) {
                scratch.stamp[item as usize] = usize::MAX;
            }
        }
    }

    /// Recommends the `num_results` best items for each query history.
    ///
    /// Query `q`'s history is `history_items[history_offsets[q]..history_offsets[q + 1]]`,
    /// oldest first; negative or out-of-range entries are items unknown to the index (ignored).
    /// Runs the queries in parallel (rayon).
    ///
    /// # Returns
    /// Row-major `[queries × num_results]` item indices (best first, ties in item order, `-1`
    /// where fewer items remain) and their scores (`-inf` for padding).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for invalid parameters, malformed offsets or mismatched lengths.
    pub fn recommend(
        &self,
        params: &SknnParams,
        history_offsets: &[i64],
        history_items: &[i64],
        query_time: &[i64],
        num_results: usize,
        exclude_seen: bool,
    ) -> Result<(Vec<i64>, Vec<f64>)> {
        params.validate()?;
        let offsets = check_offsets("history_offsets", history_offsets, history_items.len())?;
        let num_queries = offsets.len() - 1;
        if query_time.len() != num_queries {
            return Err(Error::invalid_argument(
                "query_time",
                format!(
                    "expected one per query ({num_queries}), found {}",
                    query_time.len()
                ),
            ));
        }
        let rows: Vec<Vec<(u32, f64)>> = (0..num_queries)
            .into_par_iter()
            .map_init(
                || Scratch::new(self.num_items),
                |scratch, q| {
                    let history = &history_items[offsets[q]..offsets[q + 1]];
                    self.score_into(params, history, query_time[q], scratch);
                    if exclude_seen {
                        for &item in history {
                            if item >= 0 && (item as usize) < self.num_items {
                                scratch.scores[item as usize] = f64::NEG_INFINITY;
                            }
                        }
                    }
                    top_k(&scratch.scores, num_results)
                },
            )
            .collect();
        let mut indices = vec![-1i64; num_queries * num_results];
        let mut scores = vec![f64::NEG_INFINITY; num_queries * num_results];
        for (q, row) in rows.iter().enumerate() {
            for (j, &(item, score)) in row.iter().enumerate() {
                indices[q * num_results + j] = i64::from(item);
                scores[q * num_results + j] = score;
            }
        }
        Ok((indices, scores))
    }
}

/// Per-thread buffers of [`SessionKnn::score_into`].
struct Scratch {
    scores: Vec<f64>,
    stamp: Vec<usize>,
    best: Vec<f64>,
    touched: Vec<u32>,
}

impl Scratch {
    fn new(num_items: usize) -> Self {
        Self {
            scores: vec![0.0; num_items],
            stamp: vec![usize::MAX; num_items],
            best: vec![0.0; num_items],
            touched: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions: 0 = [0, 1, 2], 1 = [0, 3], 2 = [4, 5]; times 10, 20, 30.
    fn index() -> SessionKnn {
        SessionKnn::new(
            &[0, 3, 5, 7],
            &[0, 1, 2, 0, 3, 4, 5],
            &[1, 5, 10, 15, 20, 25, 30],
            6,
        )
        .unwrap()
    }

    fn plain() -> SknnParams {
        SknnParams {
            popularity_backfill: 0.0,
            ..SknnParams::default()
        }
    }

    #[test]
    fn neighbours_vote_with_cosine_similarity() {
        let (items, scores) = index()
            .recommend(&plain(), &[0, 1], &[0], &[100], 6, false)
            .unwrap();
        // context [0]: session 0 has sim 1/sqrt(3), session 1 has 1/sqrt(2)
        let s0 = 1.0 / 3f64.sqrt();
        let s1 = 1.0 / 2f64.sqrt();
        assert_eq!(&items[..4], &[0, 3, 1, 2]);
        assert!((scores[0] - (s0 + s1)).abs() < 1e-12);
        assert!((scores[1] - s1).abs() < 1e-12);
        assert!((scores[2] - s0).abs() < 1e-12);
        // items nobody voted for score 0, in item order
        assert_eq!(&items[4..], &[4, 5]);
        assert_eq!(&scores[4..], &[0.0, 0.0]);
    }

    #[test]
    fn exclusion_unknown_items_and_backfill() {
        let params = SknnParams {
            popularity_backfill: 1e-3,
            ..SknnParams::default()
        };
        let (items, scores) = index()
            .recommend(&params, &[0, 2, 2], &[-1, 0], &[0, 0], 3, true)
            .unwrap();
        assert!(!items[..3].contains(&0));
        assert_eq!(items[0], 3);
        // empty history: popularity only, item 0 is in two sessions
        assert_eq!(items[3], 0);
        assert!((scores[3] - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn neighbour_limit_and_recency() {
        let params = SknnParams {
            neighbours: 1,
            ..plain()
        };
        let (items, _) = index()
            .recommend(&params, &[0, 1], &[0], &[0], 2, false)
            .unwrap();
        // only session 1 (the more similar) votes
        assert_eq!(&items[..2], &[0, 3]);
        let params = SknnParams {
            neighbours: 1,
            recency_half_life: 1.0,
            ..plain()
        };
        // query at time 10: session 0 (last event at 10) is 0 s away, session 1 (at 20) ten half-lives
        let (items, _) = index()
            .recommend(&params, &[0, 1], &[0], &[10], 2, false)
            .unwrap();
        assert_eq!(&items[..2], &[0, 1]);
    }

    #[test]
    fn invalid_input_is_rejected() {
        assert!(SessionKnn::new(&[0, 2], &[0, 9], &[0, 0], 3).is_err());
        assert!(SessionKnn::new(&[0, 3], &[0, 1], &[0, 0], 3).is_err());
        let bad = SknnParams {
            neighbours: 0,
            ..SknnParams::default()
        };
        let message = index()
            .recommend(&bad, &[0, 1], &[0], &[0], 2, false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("neighbours"), "{message}");
        assert!(index()
            .recommend(&plain(), &[0, 1], &[0], &[0, 1], 2, false)
            .is_err());
    }
}
