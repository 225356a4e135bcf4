//! Independent blocks of the recurrent cell: an ensemble of `M` members is exported as one
//! block-diagonal cell (docs/model.md, "Ensembles are one block-diagonal model"), whose dense step
//! would spend `M` times the necessary work on zero blocks. At load the engine finds the finest
//! equal-width block structure the weights actually have (every weight between two blocks exactly
//! 0) and keeps each block's matrices packed, so a step costs `M` small steps: `O(H²/M)`.
//!
//! Nothing is assumed from model.json: the structure is read off the weights, so a dense cell
//! (every ordinary model) is its own single block.

/// The recurrent matrices of one block of width `w`, packed (row-major): the block's rows of
/// `W_d` / `W_ih` restricted to its own `w` columns plus the two time columns (`[w, w+2]`,
/// `[3w, w+2]` in gate order r, z, n), its diagonal block of `W_hh` per gate (`[3w, w]`), and
/// the matching biases. The whole cell, as loaded, is the block of width `H` (exactly the
/// docs/format.md tensors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellBlock {
    /// `w`.
    pub width: usize,
    /// `[w, w+2]`.
    pub discount_weight: Vec<f32>,
    /// `[w]`.
    pub discount_bias: Vec<f32>,
    /// `[3w, w+2]`.
    pub weight_ih: Vec<f32>,
    /// `[3w]`.
    pub bias_ih: Vec<f32>,
    /// `[3w, w]`.
    pub weight_hh: Vec<f32>,
    /// `[3w]`.
    pub bias_hh: Vec<f32>,
}

/// True when every weight of `matrix` (`rows` rows of `stride` floats, the first `h` of which
/// are the state columns) connecting row `i` (block `i mod h / w`) to a state column of another
/// block is exactly 0.
fn is_block_diagonal(matrix: &[f32], rows: usize, stride: usize, h: usize, w: usize) -> bool {
    (0..rows).all(|r| {
        let own = (r % h) / w * w;
        let row = &matrix[r * stride..r * stride + h];
        row[..own].iter().all(|&x| x == 0.0) && row[own + w..].iter().all(|&x| x == 0.0)
    })
}

/// The width of the finest equal blocks the (whole) cell `cell` splits into (`cell.width` when it
/// does not split).
pub fn block_width(cell: &CellBlock) -> usize {
    let h = cell.width;
    // Narrowest width first: the first that holds is the finest structure.
    (1..h)
        .filter(|w| h.is_multiple_of(*w))
        .find(|&w| {
            is_block_diagonal(&cell.discount_weight, h, h + 2, h, w)
                && is_block_diagonal(&cell.weight_ih, 3 * h, h + 2, h, w)
                && is_block_diagonal(&cell.weight_hh, 3 * h, h, h, w)
        })
        .unwrap_or(h)
}

/// Rows `rows` of a `[_, stride]` matrix, restricted to columns `cols` plus the trailing `extra`
/// columns `stride - extra ..`, appended to `out`.
fn pack_rows(
    out: &mut Vec<f32>,
    matrix: &[f32],
    stride: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    extra: usize,
) {
    for r in rows {
        let row = &matrix[r * stride..(r + 1) * stride];
        out.extend_from_slice(&row[cols.clone()]);
        out.extend_from_slice(&row[stride - extra..]);
    }
}

/// The whole cell `cell` split into its finest blocks, packed for [`super::cell::step`]; a cell
/// that does not split comes back as its one block, unchanged.
pub fn split(cell: CellBlock) -> Vec<CellBlock> {
    let h = cell.width;
    let w = block_width(&cell);
    if w == h {
        return vec![cell];
    }
    (0..h / w)
        .map(|k| {
            let own = k * w..(k + 1) * w;
            let mut block = CellBlock {
                width: w,
                discount_bias: cell.discount_bias[own.clone()].to_vec(),
                ..CellBlock::default()
            };
            pack_rows(
                &mut block.discount_weight,
                &cell.discount_weight,
                h + 2,
                own.clone(),
                own.clone(),
                2,
            );
            for gate in 0..3 {
                let rows = gate * h + k * w..gate * h + (k + 1) * w;
                pack_rows(
                    &mut block.weight_ih,
                    &cell.weight_ih,
                    h + 2,
                    rows.clone(),
                    own.clone(),
                    2,
                );
                pack_rows(
                    &mut block.weight_hh,
                    &cell.weight_hh,
                    h,
                    rows.clone(),
                    own.clone(),
                    0,
                );
                block.bias_ih.extend_from_slice(&cell.bias_ih[rows.clone()]);
                block.bias_hh.extend_from_slice(&cell.bias_hh[rows]);
            }
            block
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell of `m` random blocks of width `w` (zeros between blocks, unless `leak`).
    fn block_cell(m: usize, w: usize, leak: bool) -> CellBlock {
        let h = m * w;
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut matrix = |rows: usize, stride: usize| -> Vec<f32> {
            (0..rows * stride)
                .map(|i| {
                    let (r, c) = (i / stride, i % stride);
                    if c >= h || (r % h) / w == c / w {
                        next()
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mut cell = CellBlock {
            width: h,
            discount_weight: matrix(h, h + 2),
            weight_ih: matrix(3 * h, h + 2),
            weight_hh: matrix(3 * h, h),
            discount_bias: (0..h).map(|i| i as f32).collect(),
            bias_ih: (0..3 * h).map(|i| i as f32).collect(),
            bias_hh: (0..3 * h).map(|i| -(i as f32)).collect(),
        };
        if leak {
            cell.weight_hh[(2 * h + h - 1) * h] = 1e-30; // gate n, last row, first column
        }
        cell
    }

    #[test]
    fn finds_the_finest_blocks_and_packs_them() {
        let cell = block_cell(4, 3, false);
        assert_eq!(block_width(&cell), 3);
        let blocks = split(cell.clone());
        assert_eq!(blocks.len(), 4);
        let h = 12;
        let b = &blocks[2];
        assert_eq!(
            (
                b.weight_ih.len(),
                b.weight_hh.len(),
                b.discount_weight.len()
            ),
            (45, 27, 15)
        );
        // gate z (1), the block's second row (7), against the dense rows and columns
        let r = h + 7;
        assert_eq!(
            &b.weight_ih[4 * 5..4 * 5 + 3],
            &cell.weight_ih[r * (h + 2) + 6..r * (h + 2) + 9]
        );
        assert_eq!(
            &b.weight_ih[4 * 5 + 3..5 * 5],
            &cell.weight_ih[r * (h + 2) + h..(r + 1) * (h + 2)]
        );
        assert_eq!(
            &b.weight_hh[4 * 3..5 * 3],
            &cell.weight_hh[r * h + 6..r * h + 9]
        );
        assert_eq!(b.bias_ih[4], cell.bias_ih[r]);
        assert_eq!(b.bias_hh[4], cell.bias_hh[r]);
        assert_eq!(b.discount_bias, cell.discount_bias[6..9].to_vec());
    }

    #[test]
    fn one_nonzero_weight_between_blocks_keeps_the_cell_dense_there() {
        // The leak joins the last block with the first: 4 × 3 no longer holds, nor does 2 × 6;
        // only the whole cell does.
        assert_eq!(block_width(&block_cell(4, 3, true)), 12);
        let leaky = block_cell(4, 3, true);
        assert_eq!(split(leaky.clone()), vec![leaky]);
        // Dense blocks are found at their own width.
        assert_eq!(block_width(&block_cell(2, 6, false)), 6);
        assert_eq!(block_width(&block_cell(1, 5, false)), 5);
    }
}
