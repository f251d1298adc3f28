//! Shuffled, seeded mini-batches.

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::{unit_grey, DataError, Result};

/// How pixel intensities in [0, 1] are turned into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Binarize {
    /// Keep grey levels (the pytorch/examples setting; BCE accepts them as targets).
    #[default]
    None,
    /// Threshold at 0.5, the same every epoch.
    Static,
    /// A fresh Bernoulli(pixel) draw every time a batch is made (Salakhutdinov & Murray's dynamic binarisation),
    /// from the caller's seeded generator.
    Dynamic,
}

impl std::str::FromStr for Binarize {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Binarize::None),
            "static" => Ok(Binarize::Static),
            "dynamic" => Ok(Binarize::Dynamic),
            _ => Err(DataError::UnknownBinarize(s.to_string())),
        }
    }
}

impl Binarize {
    /// The name a config or a model file uses: `none`, `static` or `dynamic`.
    pub fn name(self) -> &'static str {
        match self {
            Binarize::None => "none",
            Binarize::Static => "static",
            Binarize::Dynamic => "dynamic",
        }
    }
}

impl TryFrom<String> for Binarize {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// Yields the mini-batches of a dataset: host pixels for the fused CPU engine, tensors on a device for everything
/// else ([`Batch::tensors`]). Training and evaluation both go through [`Batcher::epoch`] or [`Batcher::in_order`].
///
/// The pixels stay in one host buffer (bytes when the images are u8, as a loaded dataset's are: a quarter of the
/// memory); each batch is gathered from it, so shuffling never moves the whole dataset.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use vae_data::Batcher;
/// use vae_model::VaeRng;
/// let images = Tensor::arange(0f32, 20.0, &Device::Cpu)?.reshape((10, 2))?;
/// let labels = Tensor::arange(0u32, 10, &Device::Cpu)?;
/// let batcher = Batcher::new(&images, &labels, 4, &Device::Cpu)?.drop_last(true);
/// let mut rng = VaeRng::seed_from(0);
/// let batches: Vec<_> = batcher.epoch(&mut rng).collect();
/// assert_eq!(batches.len(), 2); // 10 images, batches of 4, the partial one dropped
/// let (images, labels) = batches[0].tensors()?;
/// assert_eq!(images.dims(), &[4, 2]);
/// assert_eq!(labels.dims(), &[4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Batcher {
    pixels: Pixels,
    labels: Vec<u32>,
    dim: usize,
    batch_size: usize,
    drop_last: bool,
    binarize: Binarize,
    device: Device,
}

impl Batcher {
    /// A batcher over `images [N, D]` (u8 grey levels, or f32 in [0, 1]) and `labels [N]`, batches of `batch_size` on `device`.
    pub fn new(
        images: &Tensor,
        labels: &Tensor,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let (n, dim) = images.dims2()?;
        let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if labels.len() != n {
            return Err(
                candle_core::Error::Msg(format!("{} labels for {n} images", labels.len())).into(),
            );
        }
        if batch_size == 0 {
            return Err(candle_core::Error::Msg("batch size must be at least 1".into()).into());
        }
        let flat = images.flatten_all()?;
        let pixels = match images.dtype() {
            DType::U8 => Pixels::Bytes(flat.to_vec1::<u8>()?),
            _ => Pixels::Floats(flat.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        };
        Ok(Self {
            pixels,
            labels,
            dim,
            batch_size,
            drop_last: false,
            binarize: Binarize::None,
            device: device.clone(),
        })
    }

    /// Drop the last batch when it is smaller than the batch size.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Set the binarisation of the targets.
    pub fn binarize(mut self, b: Binarize) -> Self {
        self.binarize = b;
        self
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.len() / self.batch_size
        } else {
            self.len().div_ceil(self.batch_size)
        }
    }

    /// One epoch in a fresh random order drawn from `rng`; dynamic binarisation draws from `rng` too, after the
    /// shuffle.
    pub fn epoch<'a, R: Rng>(&'a self, rng: &'a mut R) -> Batches<'a, R> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        Batches {
            batcher: self,
            order,
            pos: 0,
            rng,
        }
    }

    /// One pass in the stored order (for evaluation). Dynamic binarisation still draws from `rng`.
    pub fn in_order<'a, R: Rng>(&'a self, rng: &'a mut R) -> Batches<'a, R> {
        Batches {
            batcher: self,
            order: (0..self.len()).collect(),
            pos: 0,
            rng,
        }
    }

    /// The (binarised) pixels and labels of examples `idx`.
    fn gather(&self, idx: &[usize], rng: &mut impl Rng) -> Batch {
        let d = self.dim;
        let mut images = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            let row = i * d..(i + 1) * d;
            match &self.pixels {
                Pixels::Bytes(b) => images.extend(b[row].iter().map(|&b| unit_grey(b))),
                Pixels::Floats(f) => images.extend_from_slice(&f[row]),
            }
        }
        match self.binarize {
            Binarize::None => {}
            Binarize::Static => images
                .iter_mut()
                .for_each(|p| *p = if *p > 0.5 { 1.0 } else { 0.0 }),
            Binarize::Dynamic => bernoulli_each(&mut images, rng),
        }
        Batch {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            dim: d,
            device: self.device.clone(),
        }
    }

    /// The same binarisation on every pass: a dynamic batcher's pixels are drawn once, now, from `rng` (Burda et
    /// al.'s fixed binarised test set), and kept; other batchers are returned as they are.
    pub fn frozen(mut self, rng: &mut impl Rng) -> Self {
        if self.binarize == Binarize::Dynamic {
            match &mut self.pixels {
                Pixels::Bytes(b) => b.iter_mut().for_each(|p| {
                    *p = if bernoulli(unit_grey(*p), rng) > 0.0 {
                        255
                    } else {
                        0
                    }
                }),
                Pixels::Floats(f) => f.iter_mut().for_each(|p| *p = bernoulli(*p, rng)),
            }
            self.binarize = Binarize::None;
        }
        self
    }

    /// Pixels per example.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Examples per full batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// A batcher's stored pixels: the dataset's bytes (read through [`unit_grey`]) or given floats.
#[derive(Debug, Clone)]
enum Pixels {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

/// 1 with probability `p`, else 0.
fn bernoulli(p: f32, rng: &mut impl Rng) -> f32 {
    if rng.random::<f32>() < p {
        1.0
    } else {
        0.0
    }
}

/// Each `p` replaced by 1 with probability `p`, else 0: [`bernoulli`] pixel by pixel, the same numbers (for a
/// block RNG such as ours, whose `fill` hands out the words `next_u32` would), drawn as one block: a dynamically
/// binarised epoch of MNIST is 47 million draws, and one call per draw was a tenth of a training epoch.
fn bernoulli_each(ps: &mut [f32], rng: &mut impl Rng) {
    let mut words = vec![0u32; ps.len()];
    rng.fill(&mut words[..]);
    for (p, &w) in ps.iter_mut().zip(&words) {
        // `random::<f32>()`: the word's top 24 bits over 2²⁴.
        let u = (w >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
        *p = if u < *p { 1.0 } else { 0.0 };
    }
}

/// One mini-batch, on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Pixels `[rows, dim]`, row-major, binarised as the batcher says.
    pub images: Vec<f32>,
    /// Labels `[rows]`.
    pub labels: Vec<u32>,
    dim: usize,
    device: Device,
}

impl Batch {
    /// Examples in the batch.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// # Shapes
    /// `(images [rows, dim] f32, labels [rows] u32)` on the batcher's device.
    pub fn tensors(&self) -> Result<(Tensor, Tensor)> {
        let images = Tensor::from_slice(&self.images, (self.rows(), self.dim), &self.device)?;
        let labels = Tensor::from_slice(&self.labels, self.rows(), &self.device)?;
        Ok((images, labels))
    }
}

/// The batches of one pass; see [`Batcher::epoch`].
pub struct Batches<'a, R> {
    batcher: &'a Batcher,
    order: Vec<usize>,
    pos: usize,
    rng: &'a mut R,
}

impl<R: Rng> Iterator for Batches<'_, R> {
    type Item = Batch;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.batcher.batch_size;
        let remaining = self.order.len() - self.pos;
        if remaining == 0 || (self.batcher.drop_last && remaining < b) {
            return None;
        }
        let end = self.pos + remaining.min(b);
        let item = self.batcher.gather(&self.order[self.pos..end], self.rng);
        self.pos = end;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_drawn_binarisation_equals_one_draw_per_pixel() {
        // Probabilities across [0, 1], including the ends, and a length that is not a multiple of any block.
        let ps: Vec<f32> = (0..1001).map(|i| (i % 256) as f32 / 255.0).collect();
        use rand::RngCore;
        let (mut a, mut b) = (
            vae_model::VaeRng::seed_from(7),
            vae_model::VaeRng::seed_from(7),
        );
        let one_by_one: Vec<f32> = ps.iter().map(|&p| bernoulli(p, &mut a)).collect();
        let mut blocked = ps.clone();
        bernoulli_each(&mut blocked, &mut b);
        assert_eq!(blocked, one_by_one);
        assert!(blocked.contains(&1.0) && blocked.contains(&0.0));
        // And both streams are left at the same place.
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
