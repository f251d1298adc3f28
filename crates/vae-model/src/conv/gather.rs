//! Channel-last columns for the fused layer: an image `[c, h, w]` is first turned into `[h, w, c]`, whose kernel
//! row at one position is then `k c` consecutive numbers, copied as one run into its columns `[ho wo, k k c]`.
//! In the `[c k k]` order of [`Geometry::im2col_image`] a run is at most `k` numbers, read with the stride; at 32
//! channels or more the runs of the channel-last order are many times longer, and copying them dominates no more.

use std::ops::AddAssign;

use super::Geometry;

/// `dst [cols, rows] = srcᵀ` for `src [rows, cols]`, both row-major.
pub(super) fn transpose<T: Copy>(src: &[T], shape: (usize, usize), dst: &mut [T]) {
    transpose_with(src, shape, dst, |d, v| *d = v);
}

/// `f(dst[c, r], src[r, c])` for every element of `src [rows, cols]`, `dst` being `[cols, rows]`, both row-major:
/// read in order, written with a stride.
pub(super) fn transpose_with<T: Copy>(
    src: &[T],
    (rows, cols): (usize, usize),
    dst: &mut [T],
    f: impl Fn(&mut T, T),
) {
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    for (r, row) in src.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            // SAFETY: c < cols and r < rows, so c·rows + r < rows·cols = dst.len() (the bounds checks of this
            // scattered write had doubled the time of the copy).
            f(unsafe { dst.get_unchecked_mut(c * rows + r) }, v);
        }
    }
}

/// A weight matrix `[a, c k k]` (either PyTorch layout, flattened) to `[a, k k c]` (`to_channel_last`), or back.
pub(super) fn permute_weight<T: Copy>(
    w: &[T],
    (c, kk): (usize, usize),
    to_channel_last: bool,
) -> Vec<T> {
    let mut out = w.to_vec();
    let shape = match to_channel_last {
        true => (c, kk),
        false => (kk, c),
    };
    if c > 1 && kk > 1 {
        for (src, dst) in w.chunks(c * kk).zip(out.chunks_mut(c * kk)) {
            transpose(src, shape, dst);
        }
    }
    out
}

impl Geometry {
    /// Calls `f(column, pixel, len)` for each run of the channel-last columns `[ho wo, k k c]` that reads `len`
    /// consecutive numbers of the image `[h, w, c]` from `pixel` on: a kernel row's overlap with an image row, all
    /// channels. The entries no call names are padding.
    fn for_each_hwc_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (k, c, r) = (self.k, self.c, self.rows());
        for oy in 0..self.ho {
            let (ky_lo, ky_hi) = self.taps(oy, self.h);
            for ox in 0..self.wo {
                let (kx_lo, kx_hi) = self.taps(ox, self.w);
                let len = (kx_hi - kx_lo) * c;
                if len == 0 {
                    continue;
                }
                let column = (oy * self.wo + ox) * r;
                for ky in ky_lo..ky_hi {
                    let iy = oy * self.s + ky - self.p;
                    let ix = ox * self.s + kx_lo - self.p;
                    f(column + (ky * k + kx_lo) * c, (iy * self.w + ix) * c, len);
                }
            }
        }
    }

    /// A channel-last image `[h, w, c]` to its columns `[ho wo, k k c]` (zeroed by the caller, for the padding).
    pub(super) fn im2col_hwc<T: Copy>(&self, hwc: &[T], cols: &mut [T]) {
        self.for_each_hwc_run(|col, pixel, len| {
            let src = &hwc[pixel..pixel + len];
            cols[col..col + len]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = *s);
        });
    }

    /// The adjoint of [`Geometry::im2col_hwc`]: adds each column entry into the number it was read from.
    pub(super) fn col2im_hwc<T: Copy + AddAssign>(&self, cols: &[T], hwc: &mut [T]) {
        self.for_each_hwc_run(|col, pixel, len| {
            let dst = &mut hwc[pixel..pixel + len];
            dst.iter_mut()
                .zip(&cols[col..col + len])
                .for_each(|(d, s)| *d += *s);
        });
    }
}
