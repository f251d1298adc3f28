//! The first layer's two products on the images' nonzeros: `x · Wᵀ` and `∂W = ∂aᵀ x` skip the pixels that are 0
//! (81% of MNIST's, 87% after binarisation); PyTorch and BLAS multiply by all 784.
//!
//! The weight is kept as `Wᵀ [fan_in, fan_out]`, so that both products are sums of contiguous rows scaled by one
//! value. A nonzero at a time, though, each row of `Wᵀ` would be read from cache for one multiply-add per value: the
//! products would be bound by the cache's bandwidth and gain little. So with AVX-512 they work on groups of
//! [`WIDE_GROUP`]: for the forward product, 4 images and the pixels where any of them is nonzero (39% of MNIST's
//! pixels); for the weight gradient, 4 adjacent pixels and the images where any of them is nonzero (28%). Each row
//! read then feeds 4 sums held in registers, as in a dense product's kernel. With AVX2 only, whose 16 registers hold
//! four rows of just 24 sums, the multiplies by a group's zeros (half its entries) cost more than the reads saved, so
//! there a group is one image or pixel.
//!
//! Every output is summed in a fixed order (the pixels, or the images, in order; a 0 in a group adds nothing) by one
//! thread, and Rust never fuses a multiply and an add on its own, so the results are the same whatever the thread
//! count or instruction set.

use rayon::prelude::*;

/// Images (forward) or pixels (weight gradient) handled together where AVX-512 (or no vector unit) runs the sums;
/// one at a time with AVX2 ([`group`]).
pub const WIDE_GROUP: usize = 4;

/// The group size of this CPU's kernels.
fn group() -> usize {
    #[cfg(target_arch = "x86_64")]
    if !crate::cpu::has_avx512() && crate::cpu::has_avx2() {
        return 1;
    }
    WIDE_GROUP
}

/// Above this share of a group of [`WIDE_GROUP`] images' pixels a batch takes the dense products (MNIST: 39%;
/// Fashion-MNIST: 79%), whatever the CPU's group size.
pub const MAX_DENSITY: f64 = 0.6;

/// One side of a sparse batch: for each group, the positions (pixels, or images) where any of its `group` members
/// is nonzero, and the members' values there (`group` per position).
#[derive(Debug, Clone, Default)]
struct Packed {
    group: usize,
    start: Vec<usize>,
    index: Vec<u32>,
    values: Vec<f32>,
}

impl Packed {
    fn groups(&self) -> usize {
        self.start.len() - 1
    }
}

/// A batch's nonzeros, packed for both products.
#[derive(Debug, Clone, Default)]
pub struct Nonzeros {
    rows: usize,
    cols: usize,
    /// Each row's nonzero pixels as bits, `words` u64 per row.
    masks: Vec<u64>,
    words: usize,
    /// Groups of images, for the forward product.
    by_rows: Packed,
    /// Groups of pixels, for the weight gradient.
    by_cols: Packed,
}

impl Nonzeros {
    /// Packs the nonzeros of `x [rows, cols]` in this CPU's groups; false when its groups of [`WIDE_GROUP`] images
    /// are more than [`MAX_DENSITY`] nonzero (then the dense products are faster, and what is kept must not be used).
    pub fn gather(&mut self, x: &[f32], rows: usize, cols: usize) -> bool {
        self.gather_in_groups(x, rows, cols, group())
    }

    /// [`Nonzeros::gather`] in groups of `group` (1 or [`WIDE_GROUP`]); the choice of the dense products does not
    /// depend on it.
    fn gather_in_groups(&mut self, x: &[f32], rows: usize, cols: usize, group: usize) -> bool {
        let x = &x[..rows * cols];
        (self.rows, self.cols, self.words) = (rows, cols, cols.div_ceil(64));
        self.masks.resize(rows * self.words, 0);
        for (row, masks) in x
            .chunks_exact(cols)
            .zip(self.masks.chunks_exact_mut(self.words))
        {
            nonzero_bits(row, masks);
        }
        let wide = rows.div_ceil(WIDE_GROUP);
        let union: usize = (0..wide)
            .map(|g| {
                self.row_union(g, WIDE_GROUP)
                    .map(u64::count_ones)
                    .sum::<u32>() as usize
            })
            .sum();
        if union as f64 > MAX_DENSITY * (wide * cols) as f64 {
            return false;
        }
        match group {
            1 => {
                self.pack_rows::<1>(x);
                self.pack_cols::<1>(x);
            }
            WIDE_GROUP => {
                self.pack_rows::<WIDE_GROUP>(x);
                self.pack_cols::<WIDE_GROUP>(x);
            }
            g => unreachable!("sparse groups of {g}"),
        }
        true
    }

    /// The words of the union of the masks of group `g` of `group` images.
    fn row_union(&self, g: usize, group: usize) -> impl Iterator<Item = u64> + '_ {
        let rows = g * group..((g + 1) * group).min(self.rows);
        (0..self.words).map(move |w| {
            rows.clone()
                .fold(0, |m, r| m | self.masks[r * self.words + w])
        })
    }

    /// Groups of `G` images: the pixels where any is nonzero, in order.
    fn pack_rows<const G: usize>(&mut self, x: &[f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let groups = rows.div_ceil(G);
        let mut p = std::mem::take(&mut self.by_rows);
        p.group = G;
        p.start.clear();
        p.start.push(0);
        for g in 0..groups {
            let n: u32 = self.row_union(g, G).map(u64::count_ones).sum();
            p.start.push(p.start[g] + n as usize);
        }
        p.index.resize(p.start[groups], 0);
        p.values.resize(p.start[groups] * G, 0.0);
        let value = |r: usize, c: usize| if r < rows { x[r * cols + c] } else { 0.0 };
        for g in 0..groups {
            let mut at = p.start[g];
            for (w, mut any) in self.row_union(g, G).enumerate() {
                while any != 0 {
                    let c = w * 64 + any.trailing_zeros() as usize;
                    any &= any - 1;
                    p.index[at] = c as u32;
                    for (m, v) in p.values[at * G..(at + 1) * G].iter_mut().enumerate() {
                        *v = value(g * G + m, c);
                    }
                    at += 1;
                }
            }
        }
        self.by_rows = p;
    }

    /// Groups of `G` adjacent pixels (`G` divides 64): the images where any is nonzero, in order. A counting sort
    /// over the rows, which are read in order.
    fn pack_cols<const G: usize>(&mut self, x: &[f32]) {
        let (rows, cols, words) = (self.rows, self.cols, self.words);
        let groups = cols.div_ceil(G);
        let masks = |r: usize| &self.masks[r * words..(r + 1) * words];
        let p = &mut self.by_cols;
        p.group = G;
        p.start.clear();
        p.start.resize(groups + 1, 0);
        for r in 0..rows {
            each_col_group::<G>(masks(r), |g| p.start[g + 1] += 1);
        }
        for g in 0..groups {
            p.start[g + 1] += p.start[g];
        }
        p.index.resize(p.start[groups], 0);
        p.values.resize(p.start[groups] * G, 0.0);
        let mut next = p.start[..groups].to_vec();
        for (r, row) in x.chunks_exact(cols).enumerate() {
            each_col_group::<G>(masks(r), |g| {
                let at = &mut next[g];
                p.index[*at] = r as u32;
                for (m, v) in p.values[*at * G..(*at + 1) * G].iter_mut().enumerate() {
                    *v = row.get(g * G + m).copied().unwrap_or(0.0);
                }
                *at += 1;
            });
        }
    }

    /// The number of nonzeros.
    pub fn len(&self) -> usize {
        self.masks.iter().map(|m| m.count_ones() as usize).sum()
    }
}

/// Calls `f` with each group of `G` adjacent pixels (`G` divides 64) where a row's `masks` have a nonzero, in order.
#[inline(always)]
fn each_col_group<const G: usize>(masks: &[u64], mut f: impl FnMut(usize)) {
    for (w, &m) in masks.iter().enumerate() {
        // Bit `G·k` of word `w` stands for group `w·64/G + k`: set where any of its pixels is.
        let mut any = (1..G).fold(m, |a, s| a | m >> s) & (u64::MAX / ((1 << G) - 1));
        while any != 0 {
            f((w * 64 + any.trailing_zeros() as usize) / G);
            any &= any - 1;
        }
    }
}

/// Sets bit `c % 64` of `masks[c / 64]` where `row[c]` is nonzero (NaN included, −0 not, as `v != 0.0`).
fn nonzero_bits(row: &[f32], masks: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { nonzero_bits_avx512(row, masks) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { nonzero_bits_avx2(row, masks) };
    }
    nonzero_bits_scalar(row, masks)
}

fn nonzero_bits_scalar(row: &[f32], masks: &mut [u64]) {
    for (chunk, m) in row.chunks(64).zip(masks.iter_mut()) {
        *m = chunk
            .iter()
            .enumerate()
            .fold(0, |m, (i, &v)| m | ((v != 0.0) as u64) << i);
    }
}

/// 16 pixels a compare.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nonzero_bits_avx512(row: &[f32], masks: &mut [u64]) {
    use std::arch::x86_64::*;
    for (chunk, m) in row.chunks(64).zip(masks.iter_mut()) {
        let mut bits = 0u64;
        let mut vectors = chunk.chunks_exact(16);
        for (q, v) in (&mut vectors).enumerate() {
            // SAFETY: `v` holds 16 floats.
            let v = unsafe { _mm512_loadu_ps(v.as_ptr()) };
            let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps());
            bits |= (nonzero as u64) << (16 * q);
        }
        let done = chunk.len() - vectors.remainder().len();
        for (i, &v) in vectors.remainder().iter().enumerate() {
            bits |= ((v != 0.0) as u64) << (done + i);
        }
        *m = bits;
    }
}

/// 8 pixels a compare.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nonzero_bits_avx2(row: &[f32], masks: &mut [u64]) {
    use std::arch::x86_64::*;
    for (chunk, m) in row.chunks(64).zip(masks.iter_mut()) {
        let mut bits = 0u64;
        let mut vectors = chunk.chunks_exact(8);
        for (q, v) in (&mut vectors).enumerate() {
            // SAFETY: `v` holds 8 floats.
            let v = unsafe { _mm256_loadu_ps(v.as_ptr()) };
            let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps());
            bits |= (_mm256_movemask_ps(nonzero) as u8 as u64) << (8 * q);
        }
        let done = chunk.len() - vectors.remainder().len();
        for (i, &v) in vectors.remainder().iter().enumerate() {
            bits |= ((v != 0.0) as u64) << (done + i);
        }
        *m = bits;
    }
}

/// `out [rows, n] = b + x · Wᵀ`, with `wt` holding `Wᵀ [cols, n]`.
pub fn forward(nz: &Nonzeros, wt: &[f32], bias: &[f32], n: usize, out: &mut [f32]) {
    assert!(wt.len() >= nz.cols * n && bias.len() == n && out.len() >= nz.rows * n);
    sums(&nz.by_rows, wt, Some(bias), n, &mut out[..nz.rows * n]);
}

/// `gwt [cols, n] = xᵀ · da`, the gradient of `Wᵀ` from `da [rows, n]`.
pub fn weight_grad(nz: &Nonzeros, da: &[f32], n: usize, gwt: &mut [f32]) {
    assert!(da.len() >= nz.rows * n && gwt.len() >= nz.cols * n);
    sums(&nz.by_cols, da, None, n, &mut gwt[..nz.cols * n]);
}

/// `out[g·group + m] = init + Σ_i values[i][m] · src[index[i]]` over each group `g`'s entries `i`, for every row of
/// `out [_, n]` (`init` the bias, or 0); the groups are split across the threads.
fn sums(packed: &Packed, src: &[f32], init: Option<&[f32]>, n: usize, out: &mut [f32]) {
    let groups = packed.groups();
    // Below about four million multiply-adds, waking a second thread costs more than it saves (a small batch's
    // steps run faster on one thread).
    let work = packed.values.len() * n;
    let tasks = if work < 1 << 22 {
        1
    } else {
        2 * rayon::current_num_threads()
    };
    let per_task = groups.div_ceil(tasks).max(1);
    let task = |t: usize| Task {
        packed,
        src,
        init,
        n,
        first: t * per_task,
    };
    if tasks == 1 {
        return task(0).run(out);
    }
    out.par_chunks_mut(per_task * packed.group * n)
        .enumerate()
        .for_each(|(t, block)| task(t).run(block));
}

/// Consecutive groups from `first`, writing the rows of `out` (those groups' rows, the last group's perhaps fewer
/// than `group`).
#[derive(Clone, Copy)]
struct Task<'a> {
    packed: &'a Packed,
    src: &'a [f32],
    init: Option<&'a [f32]>,
    n: usize,
    first: usize,
}

impl Task<'_> {
    fn run(self, out: &mut [f32]) {
        match self.packed.group {
            1 => self.run_in::<1>(out),
            WIDE_GROUP => self.run_in::<WIDE_GROUP>(out),
            g => unreachable!("sparse groups of {g}"),
        }
    }

    /// The kernel for groups of `G` on this CPU.
    fn run_in<const G: usize>(self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::has_avx512() {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { self.avx512::<G>(out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { self.avx2::<G>(out) };
        }
        self.body::<G, 16>(out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512<const G: usize>(self, out: &mut [f32]) {
        // 4 × 96 sums: 24 of the 32 vector registers, 6 for the row read, 1 for the value.
        self.body::<G, 96>(out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const G: usize>(self, out: &mut [f32]) {
        // 12 of the 16 vector registers hold sums: 4 × 24, or 1 × 96.
        match G {
            1 => self.body::<G, 96>(out),
            _ => self.body::<G, 24>(out),
        }
    }

    /// A chunk of at most `MAX` columns at a time across all the task's groups, so that the chunk of `src` they
    /// read stays in cache.
    #[inline(always)]
    fn body<const G: usize, const MAX: usize>(self, out: &mut [f32]) {
        let mut j = 0;
        while j < self.n {
            let w = (self.n - j).min(MAX);
            j += match w / 8 {
                0 => self.chunk_any::<G>(j, w, out),
                1 => self.chunk::<G, 8>(j, out),
                2 => self.chunk::<G, 16>(j, out),
                3 => self.chunk::<G, 24>(j, out),
                4 => self.chunk::<G, 32>(j, out),
                5 => self.chunk::<G, 40>(j, out),
                6 => self.chunk::<G, 48>(j, out),
                7 => self.chunk::<G, 56>(j, out),
                8 => self.chunk::<G, 64>(j, out),
                9 => self.chunk::<G, 72>(j, out),
                10 => self.chunk::<G, 80>(j, out),
                11 => self.chunk::<G, 88>(j, out),
                _ => self.chunk::<G, 96>(j, out),
            };
        }
    }

    /// The entries of the task's `g`-th group: positions, and `G` values for each.
    fn entries<const G: usize>(&self, g: usize) -> impl Iterator<Item = (usize, &[f32; G])> {
        let p = self.packed;
        let list = p.start[self.first + g]..p.start[self.first + g + 1];
        let values = p.values[list.start * G..list.end * G].chunks_exact(G);
        (p.index[list].iter().map(|&at| at as usize)).zip(values.map(|v| v.try_into().unwrap()))
    }

    /// Columns `j..j + W` of every group, the sums held in a fixed-size array the compiler keeps in registers.
    /// Returns `W`.
    #[inline(always)]
    fn chunk<const G: usize, const W: usize>(&self, j: usize, out: &mut [f32]) -> usize {
        let n = self.n;
        for (g, rows) in out.chunks_mut(G * n).enumerate() {
            let mut acc = [[0f32; W]; G];
            if let Some(b) = self.init {
                acc.iter_mut().for_each(|a| a.copy_from_slice(&b[j..j + W]));
            }
            for (at, v) in self.entries::<G>(g) {
                let at = at * n + j;
                let s: &[f32; W] = self.src[at..at + W].try_into().unwrap();
                for m in 0..G {
                    let v = v[m];
                    for k in 0..W {
                        acc[m][k] += v * s[k];
                    }
                }
            }
            for (row, a) in rows.chunks_exact_mut(n).zip(&acc) {
                row[j..j + W].copy_from_slice(a);
            }
        }
        W
    }

    /// Columns `j..j + w` for the last few (`w < 8`) columns. Returns `w`.
    #[inline(always)]
    fn chunk_any<const G: usize>(&self, j: usize, w: usize, out: &mut [f32]) -> usize {
        for (g, rows) in out.chunks_mut(G * self.n).enumerate() {
            for (m, row) in rows.chunks_exact_mut(self.n).enumerate() {
                let acc = &mut row[j..j + w];
                match self.init {
                    Some(b) => acc.copy_from_slice(&b[j..j + w]),
                    None => acc.fill(0.0),
                }
                for (at, v) in self.entries::<G>(g) {
                    let at = at * self.n + j;
                    for (a, s) in acc.iter_mut().zip(&self.src[at..at + w]) {
                        *a += v[m] * s;
                    }
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[rows, cols]` matrix with about `density` of its entries nonzero, values in (0, 1].
    fn sparse_matrix(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        let mut rng = vae_model::VaeRng::seed_from(seed);
        let u = rng.uniform_vec(rows * cols, 0.0, 1.0);
        u.iter()
            .map(|&p| if p < density { 1.0 - p as f32 } else { 0.0 })
            .collect()
    }

    fn dense_reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for l in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + l] as f64 * b[l * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn both_products_equal_the_dense_ones_at_every_chunk_width() {
        // Widths that exercise every chunk size and the tail: 400 = 3·128 + 16, 200 = 128 + 64 + 8, 7 < 16.
        // Both group sizes, whichever this CPU's kernels use.
        let shapes = [(37, 50, 400), (5, 784, 200), (64, 33, 7), (1, 1, 1)];
        for ((rows, cols, n), group) in shapes.into_iter().flat_map(|s| [(s, 1), (s, WIDE_GROUP)]) {
            let x = sparse_matrix(rows, cols, 0.1, n as u64);
            let mut nz = Nonzeros::default();
            assert!(nz.gather_in_groups(&x, rows, cols, group), "{rows}x{cols}");
            assert_eq!(nz.len(), x.iter().filter(|&&v| v != 0.0).count());
            let wt: Vec<f32> = (0..cols * n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / n as f32).collect();
            let mut out = vec![f32::NAN; rows * n];
            forward(&nz, &wt, &bias, n, &mut out);
            let want = dense_reference(&x, &wt, rows, cols, n);
            for (i, (&got, want)) in out.iter().zip(&want).enumerate() {
                let want = want + bias[i % n] as f64;
                assert!(
                    (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{i}: {got} vs {want}"
                );
            }

            let da: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
                .collect();
            let mut gwt = vec![f32::NAN; cols * n];
            weight_grad(&nz, &da, n, &mut gwt);
            let xt: Vec<f32> = (0..cols * rows)
                .map(|i| x[(i % rows) * cols + i / rows])
                .collect();
            let want = dense_reference(&xt, &da, cols, rows, n);
            for (i, (&got, want)) in gwt.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn every_nonzero_bits_path_marks_what_is_not_zero() {
        // NaN counts as nonzero, −0 does not; lengths that leave a tail after 64-, 16- and 8-wide blocks.
        let mut rng = vae_model::VaeRng::seed_from(3);
        for len in [784, 100, 71, 7] {
            let u = rng.uniform_vec(len, 0.0, 1.0);
            let row: Vec<f32> = (u.iter().enumerate())
                .map(|(i, &p)| match i % 5 {
                    0 => f32::NAN,
                    1 => -0.0,
                    _ if p < 0.5 => 0.0,
                    _ => p as f32 - 0.75,
                })
                .collect();
            let want: Vec<u64> = (0..len.div_ceil(64))
                .map(|w| {
                    (0..64)
                        .filter(|b| row.get(w * 64 + b).is_some_and(|&v| !(v == 0.0)))
                        .fold(0, |m, b| m | 1 << b)
                })
                .collect();
            let mut got = vec![!0u64; want.len()];
            nonzero_bits_scalar(&row, &mut got);
            assert_eq!(got, want, "scalar, {len}");
            #[cfg(target_arch = "x86_64")]
            {
                use crate::cpu::{has_avx2, has_avx512};
                if has_avx2() {
                    got.fill(!0);
                    // SAFETY: the CPU supports AVX2 (checked above).
                    unsafe { nonzero_bits_avx2(&row, &mut got) };
                    assert_eq!(got, want, "avx2, {len}");
                }
                if has_avx512() {
                    got.fill(!0);
                    // SAFETY: the CPU supports AVX-512F (checked above).
                    unsafe { nonzero_bits_avx512(&row, &mut got) };
                    assert_eq!(got, want, "avx512, {len}");
                }
            }
        }
    }

    #[test]
    fn a_dense_batch_is_refused_whatever_the_group_size() {
        let x = sparse_matrix(12, 100, 0.3, 1);
        for group in [1, WIDE_GROUP] {
            let mut nz = Nonzeros::default();
            assert!(!nz.gather_in_groups(&x, 10, 100, group));
            assert!(nz.gather_in_groups(&vec![0.0; 1000], 10, 100, group));
        }
    }

    #[test]
    fn both_group_sizes_give_the_same_bits() {
        // Each output sums the same nonzero terms in the same order; a group's zeros add +0 to sums never −0.
        let (rows, cols, n) = (29, 784, 100);
        let x = sparse_matrix(rows, cols, 0.2, 7);
        let wt: Vec<f32> = (0..cols * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 30.0)
            .collect();
        let da: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 3.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 7.0 - 3.0).collect();
        let run = |group| {
            let mut nz = Nonzeros::default();
            assert!(nz.gather_in_groups(&x, rows, cols, group));
            let (mut out, mut gwt) = (vec![f32::NAN; rows * n], vec![f32::NAN; cols * n]);
            forward(&nz, &wt, &bias, n, &mut out);
            weight_grad(&nz, &da, n, &mut gwt);
            (
                out.iter()
                    .chain(&gwt)
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                out,
            )
        };
        let (one, out) = run(1);
        assert!(
            out.iter().any(|&v| v != bias[0]),
            "the products did something"
        );
        assert!(one == run(WIDE_GROUP).0);
    }
}
