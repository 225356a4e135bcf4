//! AVX2 + FMA versions of the scoring kernels (x86-64 only), written with `std::arch` intrinsics.
//!
//! LLVM does not vectorize the portable panel loop well (it keeps the accumulators in memory), so
//! the hot loop — a register tile of `U` users × `V` panels of 16 logits, their running
//! log-sum-exp and the top-K threshold test — is spelled out here, for f32 and bf16 tables (a bf16
//! row is widened with one zero-extend and one shift per 8 lanes). Callers must have checked
//! `Isa::Avx2Fma`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::kernels::{Lanes, EXP_POLY, PANEL};
use super::model::{ItemTable, TableWeights};
use super::topk::{ScanState, BLOCK_PANELS, NEGLIGIBLE};

/// One query's logits for one block of panels.
type BlockLogits = [MaybeUninit<Lanes>; BLOCK_PANELS];

/// Rows of a block buffer the tiles have written.
///
/// # Safety
/// Every row of `rows` was written.
unsafe fn written(rows: &[MaybeUninit<Lanes>]) -> &[Lanes] {
    // SAFETY: `MaybeUninit<Lanes>` has `Lanes`' layout; the rows are initialized (the caller's
    // contract).
    unsafe { &*(rows as *const [MaybeUninit<Lanes>] as *const [Lanes]) }
}

/// `exp(x)` for `x ≤ 0` on `N` vectors at once: `x = n ln2 + r` and [`EXP_POLY`] for `e^r`, as
/// `kernels::exp_lanes`, with two changes for speed — the softmax pass is bound by these
/// multiply-adds, 7 per vector here against 8:
///
/// - `r = x − n·ln2` in one FMA with `ln2` rounded to f32 (no Cody–Waite split): the product is
///   exact inside the FMA, so the error is `n · 1.9e−9`, ≤ 6e−8 relative for `x ≥ −20` (the
///   terms a sum notices) and ≤ 2.2e−7 at the clamp. Worst relative error measured over
///   [−20, 0]: 2.3e−7 (the split gave 2.0e−7); over [−80, −20]: 4.0e−7. One pass over a block
///   took 3.7 ns per panel against 4.3 ns with the split (`fma_probe::softmax_pass_per_panel`).
/// - `2^n` added straight into the exponent bits (one shift and one integer add instead of
///   building the factor and multiplying: exact either way).
///
/// Inputs are clamped at −80 (e^−80 ≈ 2e−35 instead of 0, which no sum can notice), so the result
/// stays a normal number. Each step is applied to all `N` vectors before the next, so `N`
/// independent chains are in flight; lane by lane the result is that of one vector at a time.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8<const N: usize>(x: [__m256; N]) -> [__m256; N] {
    let x = x.map(|x| _mm256_max_ps(x, _mm256_set1_ps(-80.0)));
    // 1.5 × 2^23: adding it rounds x·log2(e) to the integer n, held in the low mantissa bits.
    let magic = _mm256_set1_ps(12_582_912.0);
    let log2e = _mm256_set1_ps(std::f32::consts::LOG2_E);
    let t = x.map(|x| _mm256_fmadd_ps(x, log2e, magic));
    let n = t.map(|t| _mm256_sub_ps(t, magic));
    let ln2 = _mm256_set1_ps(std::f32::consts::LN_2);
    let r: [__m256; N] = std::array::from_fn(|i| _mm256_fnmadd_ps(n[i], ln2, x[i]));
    let mut p = [_mm256_set1_ps(EXP_POLY[5]); N];
    for &c in EXP_POLY[..5].iter().rev() {
        let c = _mm256_set1_ps(c);
        for (p, &r) in p.iter_mut().zip(&r) {
            *p = _mm256_fmadd_ps(*p, r, c);
        }
    }
    // t's bits are 0x4B40_0000 + n; shifted left by 23 only n << 23 remains (the constant's low
    // 9 bits are 0), which adds n to p's exponent: p ∈ [0.7, 1.5] and n ≥ −116 keep it normal.
    std::array::from_fn(|i| {
        let n_exponent = _mm256_slli_epi32::<23>(_mm256_castps_si256(t[i]));
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p[i]), n_exponent))
    })
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_f64(v: [__m256; 4]) -> f64 {
    let mut total = _mm256_setzero_pd();
    for x in v {
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: `lanes` holds 4 f64, exactly one 256-bit store.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), total) };
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The 16 lanes of the row at `row` as two f32 vectors.
///
/// # Safety
/// `row` points to a row of the table's precision: 16 f32 (64-byte aligned) or 16 bf16 (32-byte
/// aligned).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_row<const BF16: bool>(row: *const u8) -> [__m256; 2] {
    // SAFETY: per the contract above.
    unsafe {
        if BF16 {
            let lo = _mm256_cvtepu16_epi32(_mm_load_si128(row.cast()));
            let hi = _mm256_cvtepu16_epi32(_mm_load_si128(row.add(16).cast()));
            [
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(lo)),
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(hi)),
            ]
        } else {
            [
                _mm256_load_ps(row.cast()),
                _mm256_load_ps(row.add(32).cast()),
            ]
        }
    }
}

/// Folds one block of logits (panels `first..first + logits.len()`, whose largest lane is
/// `block_max`, found by the tiles from their registers) into a query's scan: the exponentials
/// against the running maximum, summed in 2 registers, and — only in a block whose maximum beats
/// the K-th best — a vectorized comparison with it whose movemask marks the candidates. Every
/// block costs the same exponentials whatever the score distribution (flat, peaked, tied,
/// sorted); a block holding a candidate adds one compare and movemask per 8 lanes, and only its
/// candidates take a branch.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn absorb_block(
    state: &mut ScanState,
    first: usize,
    logits: &[Lanes],
    block_max: f32,
    num_items: usize,
) {
    if let Some(mut absorption) = Absorption::begin(state, first, logits.len(), block_max) {
        absorption.finish(state, logits, num_items);
    }
}

/// A block's absorption into a query's scan, which a single query spreads over the next block's
/// tiles (see [`scan_one`]): [`Absorption::begin`] takes the block's maximum (the running
/// maximum is raised, and the total rescaled, at most once per block), [`Absorption::step`] sums
/// the exponentials of a few more of its rows, [`Absorption::finish`] the rest, then adds the sum
/// and offers the candidates. The rows are summed in the same pairs, into the same two registers,
/// however the steps cut them, so the result is bit for bit that of one pass.
struct Absorption {
    first: usize,
    len: usize,
    /// Rows summed so far (even, until the last step).
    done: usize,
    max: __m256,
    sums: [__m256; 2],
    /// The K-th best logit when the block began.
    threshold: f32,
    /// Whether the block's maximum beat it (so its items are compared and offered).
    candidates: bool,
}

impl Absorption {
    /// Starts absorbing the block of `len` panels from `first` whose maximum is `block_max`, or
    /// `None` when nothing is left to do: every exponential is negligible and no item can enter.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn begin(state: &mut ScanState, first: usize, len: usize, block_max: f32) -> Option<Self> {
        // at most one rescale of the sum per block
        state.raise_max(block_max);
        let threshold = state.top.threshold();
        let candidates = block_max > threshold;
        if block_max <= state.max - NEGLIGIBLE && !candidates {
            return None;
        }
        Some(Self {
            first,
            len,
            done: 0,
            max: _mm256_set1_ps(state.max),
            sums: [_mm256_setzero_ps(); 2],
            threshold,
            candidates,
        })
    }

    /// Sums the exponentials of the next `rows` rows (even) of the block's `logits`, or of as many
    /// as are left.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn step(&mut self, logits: &[Lanes], rows: usize) {
        debug_assert!(rows.is_multiple_of(2) && logits.len() == self.len);
        let upto = (self.done + rows).min(self.len);
        add_exp(&logits[self.done..upto], self.max, &mut self.sums);
        self.done = upto;
    }

    /// Sums the rest of the block's exponentials into the scan's total and offers its candidates.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn finish(&mut self, state: &mut ScanState, logits: &[Lanes], num_items: usize) {
        self.step(logits, self.len.next_multiple_of(2));
        let zero = _mm256_setzero_ps();
        state.total += hsum_f64([self.sums[0], self.sums[1], zero, zero]);
        if self.candidates {
            let above = match floor_of_a_first_block(state, self.first, logits, num_items) {
                Some(floor) => marks::<_CMP_GE_OQ>(logits, floor),
                None => marks::<_CMP_GT_OQ>(logits, self.threshold),
            };
            state
                .top
                .offer_block(self.first, logits, &above[..logits.len()], num_items);
        }
    }
}

/// The lanes of one row.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn halves(row: &Lanes) -> [__m256; 2] {
    // SAFETY: a `Lanes` is 16 f32, 64-byte aligned.
    unsafe {
        [
            _mm256_load_ps(row.0.as_ptr()),
            _mm256_load_ps(row.0.as_ptr().add(8)),
        ]
    }
}

/// Adds `exp(logit − max)` over `logits` to `sums` (one register per half-row), two panels per
/// step: four exponential chains in flight, the constants and both sums in registers. Each lane
/// of each sum adds at most 32 values ≤ 1 per block, so f32 is exact enough.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn add_exp(logits: &[Lanes], m: __m256, sums: &mut [__m256; 2]) {
    let mut pairs = logits.chunks_exact(2);
    for pair in &mut pairs {
        let ([a0, b0], [a1, b1]) = (halves(&pair[0]), halves(&pair[1]));
        let [a0, b0, a1, b1] = exp8([a0, b0, a1, b1].map(|v| _mm256_sub_ps(v, m)));
        *sums = [_mm256_add_ps(sums[0], a0), _mm256_add_ps(sums[1], b0)];
        *sums = [_mm256_add_ps(sums[0], a1), _mm256_add_ps(sums[1], b1)];
    }
    for row in pairs.remainder() {
        let [a, b] = exp8(halves(row).map(|v| _mm256_sub_ps(v, m)));
        *sums = [_mm256_add_ps(sums[0], a), _mm256_add_ps(sums[1], b)];
    }
}

/// While a query's top-K is not yet full, every item of a block is a candidate (the first block
/// of a scan offers all its 512). The `(K + E)`-th largest of the block's panel maxima, `E` being
/// the block's excluded items, is then a floor: `K + E` items of distinct panels reach it and at
/// most `E` of them are excluded, so no item below it can be among the best `K`, and only the
/// items at or above it (some 9% of a block of random scores at `K` = 25) need be offered — the
/// selection, its order and its ties are unchanged. `None` when the top-K is full, when `K + E`
/// exceeds the block's full panels, or when a maximum is NaN.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn floor_of_a_first_block(
    state: &ScanState,
    first: usize,
    logits: &[Lanes],
    num_items: usize,
) -> Option<f32> {
    // Panels of the block with no padding lane.
    let full = logits.len().min((num_items / PANEL).saturating_sub(first));
    if state.top.threshold() != f32::NEG_INFINITY || state.top.k() == 0 {
        return None;
    }
    let rank = state.top.k() + state.top.excluded_in(first * PANEL..(first + full) * PANEL);
    if rank > full {
        return None;
    }
    let mut maxima = [0.0f32; BLOCK_PANELS];
    for (m, row) in maxima.iter_mut().zip(&logits[..full]) {
        let [a, b] = halves(row);
        *m = hmax(_mm256_max_ps(a, b));
    }
    let maxima = &mut maxima[..full];
    if maxima.iter().any(|m| m.is_nan()) {
        return None;
    }
    let (_, floor, _) = maxima.select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a));
    Some(*floor)
}

/// Bit `l` of entry `i`: lane `l` of panel `i` of the block compares `CMP` (an `_mm256_cmp_ps`
/// predicate) to `bound` — `_CMP_GT_OQ` against the threshold, `_CMP_GE_OQ` against a floor.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn marks<const CMP: i32>(logits: &[Lanes], bound: f32) -> [u16; BLOCK_PANELS] {
    let bound = _mm256_set1_ps(bound);
    let mut marks = [0u16; BLOCK_PANELS];
    for (row, marks) in logits.iter().zip(&mut marks) {
        let [a, b] = halves(row);
        let lo = _mm256_movemask_ps(_mm256_cmp_ps::<CMP>(a, bound));
        let hi = _mm256_movemask_ps(_mm256_cmp_ps::<CMP>(b, bound));
        *marks = (lo | hi << 8) as u16;
    }
    marks
}

/// Where the kernels read the table: the weight rows (as bytes), their size, and the biases.
struct Rows<'a> {
    base: *const u8,
    row_bytes: usize,
    bias: &'a [Lanes],
    hidden: usize,
    num_items: usize,
}

/// One register tile: panels `p..p + V` for the `U` queries, `U × V × 2` accumulators that start
/// at the biases; each loaded row feeds all `U` queries, each broadcast query value all `V` panels.
/// The logits go to rows `slot..slot + V` of each query's block buffer.
///
/// # Safety
/// `p + V` ≤ the table's panels; `slot + V` ≤ [`BLOCK_PANELS`]; each query holds ≥ `hidden`
/// values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const U: usize, const V: usize, const BF16: bool>(
    t: &Rows<'_>,
    q: &[*const f32; U],
    p: usize,
    out: &mut [BlockLogits; U],
    slot: usize,
    block_max: &mut [__m256; U],
) {
    let panel_bytes = t.hidden * t.row_bytes;
    let mut acc = [[[_mm256_setzero_ps(); 2]; V]; U];
    for v in 0..V {
        let b = t.bias[p + v].0.as_ptr();
        // SAFETY: a bias row holds 16 f32, 64-byte aligned.
        let b = unsafe { [_mm256_load_ps(b), _mm256_load_ps(b.add(8))] };
        for acc in acc.iter_mut() {
            acc[v] = b;
        }
    }
    // SAFETY: panels p..p + V lie inside the table.
    let base = unsafe { t.base.add(p * panel_bytes) };
    for d in 0..t.hidden {
        #[allow(clippy::needless_range_loop)]
        for v in 0..V {
            // SAFETY: row d of panel p + v; query values d < hidden.
            unsafe {
                let row = base.add(v * panel_bytes + d * t.row_bytes);
                // Ask for the next tile's panels now (V × 2.8 KB ahead), front to back: step
                // (d, v) prefetches its row-sized slice `d·V + v` of them, so the V panels are
                // requested as one ascending stream (the hardware prefetchers alone leave a
                // single query at ~half the memory bandwidth, and a batch waiting on L2). Past
                // the table's end a prefetch is harmless.
                let ahead = base.wrapping_add(V * panel_bytes + (d * V + v) * t.row_bytes);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                let w = load_row::<BF16>(row);
                for u in 0..U {
                    let x = _mm256_broadcast_ss(&*q[u].add(d));
                    acc[u][v][0] = _mm256_fmadd_ps(w[0], x, acc[u][v][0]);
                    acc[u][v][1] = _mm256_fmadd_ps(w[1], x, acc[u][v][1]);
                }
            }
        }
    }
    for ((out, acc), vmax) in out.iter_mut().zip(acc).zip(block_max) {
        for (v, [lo, hi]) in acc.into_iter().enumerate() {
            *vmax = _mm256_max_ps(*vmax, _mm256_max_ps(lo, hi));
            let row = out[slot + v].as_mut_ptr().cast::<f32>();
            // SAFETY: slot + V ≤ BLOCK_PANELS (the caller's contract); a row holds 2 × 8 lanes.
            unsafe {
                _mm256_store_ps(row, lo);
                _mm256_store_ps(row.add(8), hi);
            }
        }
    }
}

/// Scans `panels` for `U` queries, block by block ([`BLOCK_PANELS`], aligned to multiples of it):
/// `V` panels per tile into the block buffers (then one at a time for the rest), then each query
/// absorbs its block.
///
/// # Safety
/// `panels` lie inside the table; each query holds ≥ `hidden` values.
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_tiles<const U: usize, const V: usize, const BF16: bool>(
    t: &Rows<'_>,
    queries: &[&[f32]],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    const { assert!(BLOCK_PANELS.is_multiple_of(V)) };
    let q: [*const f32; U] = std::array::from_fn(|u| queries[u].as_ptr());
    let states: &mut [ScanState; U] = states.try_into().expect("one state per query");
    // Not zeroed (12 KB per call, ~2% of a batch): a tile writes rows `slot..slot + V` of each
    // buffer, and a block's absorption reads only the rows its tiles wrote.
    let mut out = [[MaybeUninit::<Lanes>::uninit(); BLOCK_PANELS]; U];
    let mut p = panels.start;
    while p < panels.end {
        let first = p;
        let end = panels.end.min((p / BLOCK_PANELS + 1) * BLOCK_PANELS);
        let mut block_max = [_mm256_set1_ps(f32::NEG_INFINITY); U];
        while p < end {
            // SAFETY: p + V (or p + 1) ≤ end, so inside the table and the block buffer; the
            // caller's contract for the rest.
            if end - p >= V {
                unsafe { tile::<U, V, BF16>(t, &q, p, &mut out, p - first, &mut block_max) };
                p += V;
            } else {
                unsafe { tile::<U, 1, BF16>(t, &q, p, &mut out, p - first, &mut block_max) };
                p += 1;
            }
        }
        for ((state, out), vmax) in states.iter_mut().zip(&out).zip(block_max) {
            // SAFETY: the tiles above wrote rows 0..end - first of every buffer.
            let logits = unsafe { written(&out[..end - first]) };
            absorb_block(state, first, logits, hmax(vmax), t.num_items);
        }
    }
}

/// Panels one tile of [`scan_one`] covers.
const ONE_QUERY_TILE: usize = 4;

/// [`scan_tiles`] for a single query, with each block's absorption spread over the next block's
/// tiles (a few rows of exponentials after each tile, in a second block buffer). A single query
/// over a large table waits on memory, and only the tiles' loads and prefetches keep requests in
/// flight; absorbed in one go between two blocks, the exponentials issued none for their
/// duration: in a throwaway probe, a 100k-item scan took ~1.20× the time of its tiles alone, and
/// ~1.10× with the absorption left out. Spreading it took `examples/scan_spread` from 1.34–1.41× the read
/// floor to 1.32–1.36× (4 interleaved runs on a loaded machine). The blocks are absorbed in the
/// same order and the same way (see [`Absorption`]), so the result is bit for bit
/// [`scan_tiles`]'.
///
/// # Safety
/// As [`scan_tiles`], for one query.
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_one<const BF16: bool>(
    t: &Rows<'_>,
    query: &[f32],
    panels: Range<usize>,
    state: &mut ScanState,
) {
    const V: usize = ONE_QUERY_TILE;
    const { assert!(BLOCK_PANELS.is_multiple_of(V) && V.is_multiple_of(2)) };
    let q = [query.as_ptr()];
    // Not zeroed: as in `scan_tiles`.
    let mut buffers = [[MaybeUninit::<Lanes>::uninit(); BLOCK_PANELS]; 2];
    // The previous block's absorption, its buffer the one the tiles are not writing.
    let mut pending: Option<Absorption> = None;
    let mut current = 0;
    let mut p = panels.start;
    while p < panels.end {
        let first = p;
        let end = panels.end.min((p / BLOCK_PANELS + 1) * BLOCK_PANELS);
        let [a, b] = &mut buffers;
        let (out, previous) = if current == 0 { (a, &*b) } else { (b, &*a) };
        let out = std::array::from_mut(out);
        let mut block_max = [_mm256_set1_ps(f32::NEG_INFINITY)];
        while p < end {
            // SAFETY: as in `scan_tiles`.
            if end - p >= V {
                unsafe { tile::<1, V, BF16>(t, &q, p, out, p - first, &mut block_max) };
                p += V;
            } else {
                unsafe { tile::<1, 1, BF16>(t, &q, p, out, p - first, &mut block_max) };
                p += 1;
            }
            if let Some(absorption) = &mut pending {
                // SAFETY: the previous block's tiles wrote its rows.
                absorption.step(unsafe { written(&previous[..absorption.len]) }, V);
            }
        }
        if let Some(mut absorption) = pending.take() {
            // SAFETY: as above.
            let logits = unsafe { written(&previous[..absorption.len]) };
            absorption.finish(state, logits, t.num_items);
        }
        pending = Absorption::begin(state, first, end - first, hmax(block_max[0]));
        current = 1 - current;
    }
    if let Some(mut absorption) = pending {
        let last = &buffers[1 - current];
        // SAFETY: the last block's tiles wrote its rows.
        absorption.finish(
            state,
            unsafe { written(&last[..absorption.len]) },
            t.num_items,
        );
    }
}

#[target_feature(enable = "avx2,fma")]
fn scan_rows<const BF16: bool>(
    t: &Rows<'_>,
    queries: &[&[f32]],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    // SAFETY: `topk::scan` checked the panel range, the query lengths and one state per query.
    unsafe {
        match queries.len() {
            0 => {}
            1 => scan_one::<BF16>(t, queries[0], panels, &mut states[0]),
            2 => scan_tiles::<2, 2, BF16>(t, queries, panels, states),
            3 => scan_tiles::<3, 1, BF16>(t, queries, panels, states),
            4 => scan_tiles::<4, 1, BF16>(t, queries, panels, states),
            5 => scan_tiles::<5, 1, BF16>(t, queries, panels, states),
            6 => scan_tiles::<6, 1, BF16>(t, queries, panels, states),
            n => unreachable!("at most 6 queries per scan, found {n}"),
        }
    }
}

/// Scans `panels` for up to 6 queries (each at least `table.hidden` long), updating `states`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `panels` lie inside the table; one state per query.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scan(
    table: &ItemTable,
    queries: &[&[f32]],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    assert!(panels.end <= table.num_panels() && queries.len() == states.len());
    assert!(queries.iter().all(|q| q.len() >= table.hidden));
    let (base, row_bytes, bf16) = match &table.weights {
        TableWeights::F32(rows) => {
            assert!(rows.len() >= table.num_panels() * table.hidden);
            (
                rows.as_ptr().cast::<u8>(),
                std::mem::size_of::<Lanes>(),
                false,
            )
        }
        TableWeights::Bf16(rows) => {
            assert!(rows.len() >= table.num_panels() * table.hidden);
            (
                rows.as_ptr().cast::<u8>(),
                std::mem::size_of_val(&rows[0]),
                true,
            )
        }
    };
    let t = Rows {
        base,
        row_bytes,
        bias: &table.bias,
        hidden: table.hidden,
        num_items: table.num_items,
    };
    if bf16 {
        scan_rows::<true>(&t, queries, panels, states);
    } else {
        scan_rows::<false>(&t, queries, panels, states);
    }
}

/// The sum of every weight row (as raw f32 lanes, or bf16 pairs reinterpreted — the value is
/// meaningless), read with the scan's aligned 256-bit loads into 8 independent accumulators: the
/// time of one pass over the table's memory, the floor a single query's scan can reach.
#[target_feature(enable = "avx2,fma")]
pub(super) fn read_floor(table: &ItemTable) -> f32 {
    let (base, bytes) = match &table.weights {
        TableWeights::F32(rows) => (rows.as_ptr().cast::<u8>(), std::mem::size_of_val(&rows[..])),
        TableWeights::Bf16(rows) => (rows.as_ptr().cast::<u8>(), std::mem::size_of_val(&rows[..])),
    };
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut offset = 0;
    while offset + 256 <= bytes {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: offset + 32 i + 32 ≤ bytes; rows are 32-byte aligned (and sized).
            *a = _mm256_add_ps(*a, unsafe {
                _mm256_load_ps(base.add(offset + 32 * i).cast())
            });
        }
        offset += 256;
    }
    while offset + 32 <= bytes {
        // SAFETY: as above.
        acc[0] = _mm256_add_ps(acc[0], unsafe { _mm256_load_ps(base.add(offset).cast()) });
        offset += 32;
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |a, &b| _mm256_add_ps(a, b));
    hsum_f64([
        s,
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
    ]) as f32
}

/// `out[i] = bias[i] + W[i, ..] · v` for a row-major `W` with `v.len()` columns (the cell's gate
/// pre-activations): 8-lane FMAs along each row, a scalar tail, one horizontal sum per row.
#[target_feature(enable = "avx2,fma")]
pub(super) fn gemv(w: &[f32], bias: &[f32], v: &[f32], out: &mut [f32]) {
    let cols = v.len();
    let full = cols / 8 * 8;
    assert!(w.len() >= out.len() * cols && bias.len() >= out.len());
    for (i, o) in out.iter_mut().enumerate() {
        let row = &w[i * cols..(i + 1) * cols];
        let mut acc = _mm256_setzero_ps();
        for c in (0..full).step_by(8) {
            // SAFETY: c + 8 ≤ full ≤ cols = row.len() = v.len().
            acc = unsafe {
                _mm256_fmadd_ps(
                    _mm256_loadu_ps(row.as_ptr().add(c)),
                    _mm256_loadu_ps(v.as_ptr().add(c)),
                    acc,
                )
            };
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps::<0b01>(half, half)));
        for (x, y) in row[full..].iter().zip(&v[full..]) {
            sum = x.mul_add(*y, sum);
        }
        *o = bias[i] + sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::topk::TopK;

    fn avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// A block of 4 panels whose panel maxima are 4, 7, 5 and 6 (every other lane below 0).
    fn block() -> Vec<Lanes> {
        [4.0, 7.0, 5.0, 6.0]
            .iter()
            .map(|&m| {
                Lanes(std::array::from_fn(
                    |l| if l == 3 { m } else { -(l as f32) },
                ))
            })
            .collect()
    }

    #[test]
    fn a_fresh_top_k_offers_only_what_reaches_the_kth_panel_maximum() {
        if !avx2() {
            return;
        }
        let fresh = |k, exclude| ScanState::new(TopK::new(k, exclude));
        let b = block();
        // SAFETY (every call): AVX2 and FMA are present (checked above).
        let floor =
            |s: &ScanState, items: usize| unsafe { floor_of_a_first_block(s, 0, &b, items) };
        assert_eq!(floor(&fresh(1, vec![]), 64), Some(7.0));
        assert_eq!(floor(&fresh(3, vec![]), 64), Some(5.0));
        // K beyond the full panels (the last one padded), K = 0: no floor.
        assert_eq!(floor(&fresh(4, vec![]), 64), Some(4.0));
        assert_eq!(floor(&fresh(4, vec![]), 63), None);
        assert_eq!(floor(&fresh(0, vec![]), 64), None);
        // Each excluded item of the block lowers the floor by one panel maximum (it may be one of
        // them: item 19 holds the 7, and the best allowed item is then the 6); one outside the
        // block does not; K + E beyond the full panels: no floor.
        assert_eq!(floor(&fresh(3, vec![40]), 64), Some(4.0));
        assert_eq!(floor(&fresh(1, vec![19]), 64), Some(6.0));
        assert_eq!(floor(&fresh(3, vec![64]), 64), Some(5.0));
        assert_eq!(floor(&fresh(3, vec![19, 40]), 64), None);
        // A full selection already has a threshold.
        let mut full = fresh(1, vec![]);
        full.top.offer_panel(9, &[1.0; PANEL], 1000);
        assert_eq!(floor(&full, 64), None);
        // At the floor counts: a tie with the K-th maximum is offered.
        // SAFETY: as above.
        let at_floor = unsafe { marks::<_CMP_GE_OQ>(&b, 5.0) };
        assert_eq!(&at_floor[..4], &[0, 1 << 3, 1 << 3, 1 << 3]);
    }

    #[test]
    fn exp8_matches_std_exp_and_stays_normal_below_the_clamp() {
        if !avx2() {
            return;
        }
        let mut x = -100.0f32;
        while x <= 0.0 {
            let lanes: [f32; 8] = std::array::from_fn(|l| x - l as f32 * 0.013);
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2 and FMA are present (checked above); 8 f32 in and out.
            unsafe {
                _mm256_storeu_ps(got.as_mut_ptr(), exp8([_mm256_loadu_ps(lanes.as_ptr())])[0])
            };
            for (&v, &g) in lanes.iter().zip(&got) {
                let exact = f64::from(v.max(-80.0)).exp();
                assert!(g.is_normal(), "exp8({v}) = {g}");
                let rel = ((f64::from(g) - exact) / exact).abs();
                // Near the maximum (the terms a softmax sum notices) the reduction's rounded ln2
                // costs little; at the clamp it costs up to 2.2e-7 more.
                let bound = if v >= -20.0 { 3e-7 } else { 5e-7 };
                assert!(rel < bound, "exp8({v}) = {g}, exp = {exact} (rel {rel})");
            }
            x += 0.37;
        }
    }
}
