//! Queries (Personalize's GetRecommendations and friends) on a [`Snapshot`]: one generation of a
//! recommender — its model and user states — held for as long as the caller needs it, so item
//! indices in a result always refer to the model that produced them, even across a `swap`.

use std::sync::Arc;

use super::generation::{Generation, UserView};
use super::model::Model;
use super::seen::SeenFilter;
use super::topk::{log_normalizer, logit, top_k, top_k_batch};
use crate::error::{Error, Result};

/// Most results one query may ask for (Personalize's limit).
pub const MAX_RESULTS: usize = 500;

/// The options of a recommendation query.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// How many items, 1–500.
    pub num_results: usize,
    /// Drop the items the user interacted with (training data and real-time events).
    pub exclude_seen: bool,
    /// With `exclude_seen`, only items the user interacted with through these event types
    /// (Personalize's `EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (…)`); `None`: every type.
    pub seen_event_types: Option<Vec<String>>,
    /// Items never to return (unknown ids are ignored).
    pub exclude_items: Vec<String>,
    /// When given, return only these items (unknown ids are ignored).
    pub include_items: Option<Vec<String>>,
    /// Unix seconds of the query; `None` = no extra elapsed time since the user's last event.
    pub at: Option<f64>,
}

/// A recommender's current generation, for queries.
#[derive(Clone)]
pub struct Snapshot {
    pub(super) generation: Arc<Generation>,
}

impl Snapshot {
    /// The model this snapshot answers with.
    pub fn model(&self) -> &Arc<Model> {
        &self.generation.model
    }

    pub(super) fn check_query(q: &Query) -> Result<()> {
        if !(1..=MAX_RESULTS).contains(&q.num_results) {
            return Err(Error::invalid_argument(
                "num_results",
                format!("expected 1–{MAX_RESULTS}, found {}", q.num_results),
            ));
        }
        if let Some(at) = q.at {
            if !at.is_finite() {
                return Err(Error::invalid_argument(
                    "at",
                    format!("expected finite Unix seconds, found {at}"),
                ));
            }
        }
        Ok(())
    }

    /// The best `num_results` items for `user` as `(item index, softmax score)`, best first. Users
    /// without a state (unknown, or anonymous without events) get the popularity list.
    pub fn recommend(&self, user: &str, q: &Query) -> Result<Vec<(u32, f32)>> {
        self.recommend_explained(user, q).map(|(items, _)| items)
    }

    /// [`Recommender::recommend`], and whether the list is personal (`false`: the user has no
    /// state, so it is the popularity list).
    pub fn recommend_explained(&self, user: &str, q: &Query) -> Result<(Vec<(u32, f32)>, bool)> {
        Self::check_query(q)?;
        let g = &*self.generation;
        let m = &g.model;
        let k = q.num_results.min(m.num_items());
        let view = g.view(user, false, &g.seen_filter(q));
        let exclude = g.exclusions(q, view.as_ref());
        let include = q.include_items.as_ref().map(|ids| {
            let mut inc = g.indices(ids);
            inc.sort_unstable();
            inc.dedup();
            inc
        });
        let Some(view) = view else {
            return Ok((g.popular(k, &exclude, include.as_deref()), false));
        };
        let query = g.query_vector(&view, q.at);
        let items = match include {
            None => top_k(m.isa, &m.table, &query, k, exclude),
            Some(include) => {
                let log_z = log_normalizer(m.isa, &m.table, &query);
                let mut scored: Vec<(u32, f32)> = include
                    .into_iter()
                    .filter(|j| exclude.binary_search(j).is_err())
                    .map(|j| (j, logit(&m.table, &query, j)))
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                scored.truncate(k);
                scored
                    .into_iter()
                    .map(|(j, l)| (j, (f64::from(l) - log_z).exp() as f32))
                    .collect()
            }
        };
        Ok((items, true))
    }

    /// [`Recommender::recommend`] for many users at once (blocked over items, parallel over
    /// users); `include_items` is not supported here.
    pub fn recommend_batch(&self, users: &[String], q: &Query) -> Result<Vec<Vec<(u32, f32)>>> {
        Self::check_query(q)?;
        if q.include_items.is_some() {
            return Err(Error::invalid_argument(
                "include_items",
                "not supported by recommend_batch",
            ));
        }
        let g = &*self.generation;
        let m = &g.model;
        let k = q.num_results.min(m.num_items());
        let filter = g.seen_filter(q);
        let views: Vec<Option<UserView>> =
            users.iter().map(|u| g.view(u, false, &filter)).collect();
        let mut queries = Vec::new();
        let mut excludes = Vec::new();
        let mut slots = Vec::with_capacity(users.len());
        for view in &views {
            let exclude = g.exclusions(q, view.as_ref());
            match view {
                Some(v) => {
                    slots.push(Ok(queries.len()));
                    queries.push(g.query_vector(v, q.at));
                    excludes.push(exclude);
                }
                None => slots.push(Err(exclude)),
            }
        }
        let mut scored = top_k_batch(m.isa, &m.table, &queries, k, excludes)
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => scored[i].take().expect("each slot is taken once"),
                Err(exclude) => g.popular(k, &exclude, None),
            })
            .collect())
    }

    /// The item indices held for `user` (most recent last): stored history plus events.
    pub fn history(&self, user: &str) -> Vec<u32> {
        self.generation
            .view(user, true, &SeenFilter::Off)
            .map(|v| v.history)
            .unwrap_or_default()
    }

    /// The user's hidden state and the time of their last event, if the engine has a state.
    pub fn state(&self, user: &str) -> Option<(Vec<f32>, Option<f64>)> {
        self.generation
            .view(user, false, &SeenFilter::Off)
            .map(|v| (v.hidden, v.last_timestamp))
    }

    /// Every item's softmax score for `user` at `at` (`None` for users without a state).
    pub fn scores(&self, user: &str, at: Option<f64>) -> Option<Vec<f32>> {
        let g = &*self.generation;
        let m = &g.model;
        g.view(user, false, &SeenFilter::Off).map(|v| {
            let query = g.query_vector(&v, at);
            super::topk::full_scores(m.isa, &m.table, &query)
        })
    }
}
