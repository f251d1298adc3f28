//! Batching: permutations, seeding, epochs, drop-last and binarisation.

use candle_core::{Device, Tensor};
use vae_data::{Batcher, Binarize};
use vae_model::VaeRng;

fn data(n: usize) -> (Tensor, Tensor) {
    let images = Tensor::arange(0f32, (n * 3) as f32, &Device::Cpu)
        .unwrap()
        .reshape((n, 3))
        .unwrap();
    let labels = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
    (images, labels)
}

fn epoch_labels(b: &Batcher, rng: &mut VaeRng) -> Vec<u32> {
    b.epoch(rng)
        .flat_map(|r| r.tensors().unwrap().1.to_vec1::<u32>().unwrap())
        .collect()
}

#[test]
fn every_index_once_per_epoch_seeded_and_different_each_epoch() {
    let (x, y) = data(1000);
    let b = Batcher::new(&x, &y, 64, &Device::Cpu).unwrap();
    assert_eq!(b.num_batches(), 16);
    let mut rng = VaeRng::seed_from(42);
    let e1 = epoch_labels(&b, &mut rng);
    let e2 = epoch_labels(&b, &mut rng);
    for e in [&e1, &e2] {
        let mut sorted = e.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    }
    assert_ne!(e1, e2, "epochs differ");
    assert_ne!(e1, (0..1000).collect::<Vec<u32>>(), "shuffled");

    let mut again = VaeRng::seed_from(42);
    assert_eq!(epoch_labels(&b, &mut again), e1);
    assert_eq!(epoch_labels(&b, &mut again), e2);
    assert_ne!(epoch_labels(&b, &mut VaeRng::seed_from(43)), e1);
}

#[test]
fn images_stay_with_their_labels_and_the_last_batch_is_partial_or_dropped() {
    let (x, y) = data(10);
    let b = Batcher::new(&x, &y, 4, &Device::Cpu).unwrap();
    let mut rng = VaeRng::seed_from(1);
    let sizes: Vec<usize> = b
        .epoch(&mut rng)
        .map(|r| r.tensors().unwrap().0.dim(0).unwrap())
        .collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    for r in b.epoch(&mut rng) {
        let (img, lab) = r.tensors().unwrap();
        for (row, l) in img
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .zip(lab.to_vec1::<u32>().unwrap())
        {
            assert_eq!(
                row,
                &[(l * 3) as f32, (l * 3 + 1) as f32, (l * 3 + 2) as f32]
            );
        }
    }
    let b = b.drop_last(true);
    assert_eq!(b.num_batches(), 2);
    assert_eq!(b.epoch(&mut rng).count(), 2);
    let ordered: Vec<u32> = b
        .in_order(&mut rng)
        .flat_map(|r| r.tensors().unwrap().1.to_vec1::<u32>().unwrap())
        .collect();
    assert_eq!(ordered, (0..8).collect::<Vec<u32>>());
}

#[test]
fn static_binarisation_thresholds_at_one_half() {
    let x = Tensor::new(&[[0.2f32, 0.5, 0.51, 1.0]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32], &Device::Cpu).unwrap();
    let b = Batcher::new(&x, &y, 1, &Device::Cpu)
        .unwrap()
        .binarize(Binarize::Static);
    let (img, _) = b
        .epoch(&mut VaeRng::seed_from(0))
        .next()
        .unwrap()
        .tensors()
        .unwrap();
    assert_eq!(
        img.to_vec2::<f32>().unwrap(),
        vec![vec![0.0, 0.0, 1.0, 1.0]]
    );
}

#[test]
fn dynamic_binarisation_is_seeded_fresh_each_epoch_and_unbiased() {
    let x = Tensor::full(0.3f32, (2000, 50), &Device::Cpu).unwrap();
    let y = Tensor::zeros(2000, candle_core::DType::U32, &Device::Cpu).unwrap();
    let b = Batcher::new(&x, &y, 2000, &Device::Cpu)
        .unwrap()
        .binarize(Binarize::Dynamic);
    let draw = |rng: &mut VaeRng| {
        b.in_order(rng)
            .next()
            .unwrap()
            .tensors()
            .unwrap()
            .0
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let mut rng = VaeRng::seed_from(5);
    let (a1, a2) = (draw(&mut rng), draw(&mut rng));
    assert!(a1.iter().all(|&v| v == 0.0 || v == 1.0));
    assert_ne!(a1, a2, "a fresh draw each epoch");
    assert_eq!(draw(&mut VaeRng::seed_from(5)), a1, "seeded");
    let mean = a1.iter().sum::<f32>() / a1.len() as f32;
    // 100000 Bernoulli(0.3) draws: sd of the mean is 0.0014.
    assert!((mean - 0.3).abs() < 0.01, "{mean}");
}

#[test]
fn bad_shapes_are_errors() {
    let (x, _) = data(5);
    let y = Tensor::arange(0u32, 4, &Device::Cpu).unwrap();
    assert!(Batcher::new(&x, &y, 2, &Device::Cpu)
        .unwrap_err()
        .to_string()
        .contains("4 labels for 5 images"));
    let (x, y) = data(5);
    assert!(Batcher::new(&x, &y, 0, &Device::Cpu).is_err());
}

#[test]
fn a_frozen_dynamic_binarisation_is_drawn_once_and_the_same_on_every_pass() {
    let n = 50;
    let grey = VaeRng::seed_from(5)
        .uniform((n, 3), 0.0, 1.0, &Device::Cpu)
        .unwrap();
    let labels = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
    let frozen = Batcher::new(&grey, &labels, 16, &Device::Cpu)
        .unwrap()
        .binarize(Binarize::Dynamic)
        .frozen(&mut VaeRng::seed_from(2016));
    let pass = |seed: u64| -> Vec<f32> {
        frozen
            .in_order(&mut VaeRng::seed_from(seed))
            .flat_map(|b| b.images)
            .collect()
    };
    let first = pass(1);
    assert_eq!(first, pass(2), "later passes draw nothing new");
    // One Bernoulli(pixel) draw per pixel, in order, from the given generator.
    let mut rng = VaeRng::seed_from(2016);
    let want: Vec<f32> = grey
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&p| {
            if rand::Rng::random::<f32>(&mut rng) < p {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    assert_eq!(first, want);
    assert!(first.contains(&1.0) && first.contains(&0.0));
}

#[test]
fn byte_images_batch_to_the_same_bits_as_their_f32_conversion() {
    // Every grey level, several times over, as a loaded dataset stores them.
    let n = 64;
    let bytes: Vec<u8> = (0..n * 12).map(|i| (i * 37 % 256) as u8).collect();
    let images = Tensor::from_vec(bytes, (n, 12), &Device::Cpu).unwrap();
    let floats = vae_data::unit_pixels(&images).unwrap();
    let labels = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap();
    for binarize in [Binarize::None, Binarize::Static, Binarize::Dynamic] {
        let batches = |x: &Tensor, frozen: bool| -> Vec<f32> {
            let mut b = Batcher::new(x, &labels, 10, &Device::Cpu)
                .unwrap()
                .binarize(binarize);
            if frozen {
                b = b.frozen(&mut VaeRng::seed_from(2016));
            }
            let mut rng = VaeRng::seed_from(3);
            b.epoch(&mut rng).flat_map(|b| b.images).collect()
        };
        for frozen in [false, true] {
            let (a, b) = (batches(&images, frozen), batches(&floats, frozen));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{binarize:?}, frozen {frozen}");
        }
    }
    // The conversion itself: byte / 255 for all 256 levels, 255 exactly 1.
    for b in 0..=255u8 {
        assert!((vae_data::unit_grey(b) as f64 - b as f64 / 255.0).abs() < 1e-7);
    }
    assert_eq!(vae_data::unit_grey(255), 1.0);
}
