use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};

use super::*;

fn grey(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn colour(path: &Path, w: u32, h: u32, px: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb(px)).save(path).unwrap();
}

fn options(size: Option<usize>, channels: Option<usize>) -> FolderOptions {
    FolderOptions {
        image_size: size,
        channels,
        ..FolderOptions::default()
    }
}

fn load(root: &Path, o: &FolderOptions) -> Result<FolderData> {
    load_folder(root, o, &root.with_extension("cache"), false)
}

fn err(root: &Path, o: &FolderOptions, strict: bool) -> String {
    let e = load_folder(root, o, &root.with_extension("cache"), strict)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

/// Ten pictures in each of two classes, grey 4×4, pixel value = class·100 + index.
fn two_classes(root: &Path) {
    for (c, name) in ["cat", "dog"].iter().enumerate() {
        for i in 0..10u32 {
            grey(
                &root.join(name).join(format!("{i:02}.png")),
                4,
                4,
                |_, _| (c as u32 * 100 + i) as u8,
            );
        }
    }
}

#[test]
fn class_folders_are_labels_and_a_seeded_tenth_is_held_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    two_classes(&root);
    let read = load(&root, &FolderOptions::default()).unwrap();
    let d = &read.data;
    assert_eq!(d.class_names, ["cat", "dog"]);
    assert_eq!(d.shape, [1, 4, 4]);
    assert_eq!(
        (d.train_images.dims(), d.test_images.dims()),
        (&[18, 16][..], &[2, 16][..])
    );
    assert_eq!(
        (read.options.image_size, read.options.channels),
        (Some(4), Some(1))
    );
    // Every picture is in exactly one split, with its class's label.
    let mut seen: Vec<u8> = Vec::new();
    for (images, labels) in [
        (&d.train_images, &d.train_labels),
        (&d.test_images, &d.test_labels),
    ] {
        let px = images.to_vec2::<u8>().unwrap();
        for (row, label) in px.iter().zip(labels.to_vec1::<u32>().unwrap()) {
            assert!(row.iter().all(|&v| v == row[0]));
            assert_eq!(label, row[0] as u32 / 100);
            seen.push(row[0]);
        }
    }
    seen.sort();
    let all: Vec<u8> = (0..10).chain(100..110).collect();
    assert_eq!(seen, all);
    // The same seed holds out the same pictures; another seed others.
    let again = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(
        again.test_images.to_vec2::<u8>().unwrap(),
        d.test_images.to_vec2::<u8>().unwrap()
    );
    let other = FolderOptions {
        seed: 7,
        ..FolderOptions::default()
    };
    let other = load(&root, &other).unwrap().data;
    assert_ne!(
        other.test_images.to_vec2::<u8>().unwrap(),
        d.test_images.to_vec2::<u8>().unwrap()
    );
}

#[test]
fn train_and_test_folders_give_the_split_and_a_flat_folder_is_unlabelled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("split");
    two_classes(&root.join("train"));
    grey(&root.join("test/dog/a.png"), 4, 4, |_, _| 7);
    let d = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(
        (
            d.train_images.dim(0).unwrap(),
            d.test_images.dim(0).unwrap()
        ),
        (20, 1)
    );
    assert_eq!(d.test_labels.to_vec1::<u32>().unwrap(), [1]);
    let flat = tmp.path().join("flat");
    for i in 0..5 {
        grey(&flat.join(format!("{i}.png")), 3, 3, |_, _| i);
    }
    let d = load(&flat, &options(None, None)).unwrap().data;
    assert!(d.class_names.is_empty());
    assert_eq!(
        d.train_images.dim(0).unwrap() + d.test_images.dim(0).unwrap(),
        5
    );
    assert_eq!(
        d.test_images.dim(0).unwrap(),
        1,
        "0.1 of 5 rounds to 1... at least one"
    );
}

#[test]
fn pictures_are_resized_cropped_and_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mixed");
    // 8×4 grey: left half black, right half white; the centre 4×4 crop of its 4-high resize keeps a step.
    grey(
        &root.join("a/step.png"),
        8,
        4,
        |x, _| if x < 4 { 0 } else { 255 },
    );
    colour(&root.join("b/red.jpg"), 6, 6, [255, 0, 0]);
    let half = |size, channels| FolderOptions {
        test_fraction: 0.5,
        ..options(Some(size), Some(channels))
    };
    let d = load(&root, &half(2, 3)).unwrap().data;
    assert_eq!(d.shape, [3, 2, 2]);
    let all = candle_core::Tensor::cat(&[&d.train_images, &d.test_images], 0).unwrap();
    let labels = candle_core::Tensor::cat(&[&d.train_labels, &d.test_labels], 0).unwrap();
    let rows = all.to_vec2::<u8>().unwrap();
    let labels = labels.to_vec1::<u32>().unwrap();
    let red = &rows[labels.iter().position(|&l| l == 1).unwrap()];
    // Planes: R high everywhere, G and B low (JPEG keeps them within a few levels).
    assert!(red[..4].iter().all(|&v| v > 240), "{red:?}");
    assert!(red[4..].iter().all(|&v| v < 15), "{red:?}");
    let step = &rows[labels.iter().position(|&l| l == 0).unwrap()];
    // Grey made RGB: the three planes equal; in each row the left pixel darker than the right.
    assert_eq!(step[..4], step[4..8]);
    assert!(step[0] < step[1] && step[2] < step[3], "{step:?}");
    // RGB made grey: one plane, red's luma (about 0.3 of white).
    let d = load(&root, &half(2, 1)).unwrap().data;
    assert_eq!(d.shape, [1, 2, 2]);
}

#[test]
fn a_picture_of_the_right_size_keeps_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.png");
    grey(&path, 5, 5, |x, y| (x * 50 + y) as u8);
    let px = read_picture(&path, 5, 1).unwrap();
    let want: Vec<u8> = (0..5u32)
        .flat_map(|y| (0..5u32).map(move |x| (x * 50 + y) as u8))
        .collect();
    assert_eq!(px, want);
}

#[test]
fn the_cache_is_read_back_and_a_changed_file_is_decoded_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    two_classes(&root);
    let cache = root.with_extension("cache");
    let first = load(&root, &FolderOptions::default()).unwrap().data;
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "safetensors"));
    // A cached read gives the same examples, even with the pictures gone from their files' content.
    let second = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(
        first.train_images.to_vec2::<u8>().unwrap(),
        second.train_images.to_vec2::<u8>().unwrap()
    );
    // Another setting is another cache file; a changed picture too.
    load(&root, &options(Some(2), None)).unwrap();
    grey(&root.join("cat/00.png"), 4, 4, |_, _| 250);
    let changed = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3);
    let values: Vec<u8> =
        candle_core::Tensor::cat(&[&changed.train_images, &changed.test_images], 0)
            .unwrap()
            .to_vec2::<u8>()
            .unwrap()
            .iter()
            .map(|r| r[0])
            .collect();
    assert!(values.contains(&250) && !values.contains(&0));
    // A damaged cache file is decoded again, not trusted.
    for f in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(f.unwrap().path(), b"not a cache").unwrap();
    }
    let again = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(
        again.train_images.to_vec2::<u8>().unwrap(),
        changed.train_images.to_vec2::<u8>().unwrap()
    );
}

/// A PNG whose header claims `w × h` pixels, with a tiny body: what a decompression bomb's header looks like.
fn png_header_only(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(chunk(b"IHDR", &ihdr));
    bytes.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bytes.extend(chunk(b"IEND", &[]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_folders_are_refused_in_one_line_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let o = FolderOptions::default();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(
        err(&empty, &o, false).contains("no pictures"),
        "{}",
        err(&empty, &o, false)
    );
    let texts = tmp.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(texts.join("notes.txt"), "hello").unwrap();
    assert!(err(&texts, &o, false).starts_with(&texts.display().to_string()));
    let missing = tmp.path().join("nope");
    assert!(err(&missing, &o, false).starts_with(&missing.display().to_string()));
    let a_file = tmp.path().join("file.png");
    std::fs::write(&a_file, "x").unwrap();
    assert!(err(&a_file, &o, false).contains("not a folder"));
    let hollow = tmp.path().join("hollow");
    two_classes(&hollow);
    std::fs::create_dir(hollow.join("emu")).unwrap();
    let e = err(&hollow, &o, false);
    assert!(
        e.contains("emu") && e.contains("class folder has no pictures"),
        "{e}"
    );
    let bad = |f: f64| FolderOptions {
        test_fraction: f,
        ..FolderOptions::default()
    };
    let pets = tmp.path().join("pets");
    two_classes(&pets);
    assert!(err(&pets, &bad(0.0), false).contains("--test-fraction"));
    assert!(err(&pets, &bad(0.01), false).contains("no example for the test split"));
    assert!(err(&pets, &options(None, Some(2)), false).contains("--channels"));
    assert!(err(&pets, &options(Some(0), None), false).contains("--image-size"));
    let split = tmp.path().join("split");
    two_classes(&split.join("train"));
    grey(&split.join("test/emu/a.png"), 4, 4, |_, _| 0);
    assert!(err(&split, &o, false).contains("not among train/'s classes"));
}

#[test]
fn unreadable_pictures_are_skipped_or_refused_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    two_classes(&root);
    std::fs::write(
        root.join("cat/zz-truncated.png"),
        &std::fs::read(root.join("cat/00.png")).unwrap()[..30],
    )
    .unwrap();
    png_header_only(&root.join("dog/zz-bomb.png"), 30000, 30000);
    std::fs::write(root.join("dog/zz-text.jpg"), "not a jpeg").unwrap();
    std::fs::write(root.join("dog/readme.md"), "ignored: not a picture").unwrap();
    let d = load(&root, &FolderOptions::default()).unwrap().data;
    assert_eq!(
        d.train_images.dim(0).unwrap() + d.test_images.dim(0).unwrap(),
        20
    );
    // --strict refuses the first, in file-name order: the bomb.
    let e = err(&root, &FolderOptions::default(), true);
    assert!(
        e.contains("zz-bomb.png") && e.contains("30000×30000") && e.contains("--strict"),
        "{e}"
    );
    std::fs::remove_file(root.join("dog/zz-bomb.png")).unwrap();
    let e = err(&root, &FolderOptions::default(), true);
    assert!(e.contains("zz-text.jpg") && e.contains("--strict"), "{e}");
    std::fs::remove_file(root.join("dog/zz-text.jpg")).unwrap();
    let e = err(&root, &FolderOptions::default(), true);
    assert!(e.contains("zz-truncated.png"), "{e}");
    // The bomb is refused from its header, by the size limit.
    let bomb = tmp.path().join("bomb");
    png_header_only(&bomb.join("big.png"), 30000, 30000);
    let e = err(&bomb, &options(Some(28), Some(1)), false);
    assert!(e.contains("30000×30000") && e.contains("limit"), "{e}");
    assert!(e.contains("none of its 1 pictures could be read"), "{e}");
    // Without a size, the first picture's header gives it, and the bomb's is refused there.
    let e = err(&bomb, &FolderOptions::default(), false);
    assert!(e.contains("big.png") && e.contains("30000×30000"), "{e}");
}

#[test]
fn an_export_reads_back_as_the_same_examples_in_the_same_order() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    two_classes(&root.join("train"));
    grey(&root.join("test/cat/a.png"), 4, 4, |_, _| 9);
    colour(&tmp.path().join("rgb/train/x/a.png"), 2, 2, [1, 2, 3]);
    colour(&tmp.path().join("rgb/test/x/b.png"), 2, 2, [4, 5, 6]);
    for (src, o) in [
        (root, options(None, None)),
        (tmp.path().join("rgb"), options(None, None)),
    ] {
        let d = load(&src, &o).unwrap().data;
        let out = tmp.path().join(format!(
            "{}-out",
            src.file_name().unwrap().to_string_lossy()
        ));
        assert_eq!(
            export_folder(&d, &out, ExportSplit::Both).unwrap(),
            d.train_images.dim(0).unwrap() + 1
        );
        let back = load(&out, &o).unwrap().data;
        assert_eq!(back.shape, d.shape);
        for (a, b) in [
            (&d.train_images, &back.train_images),
            (&d.test_images, &back.test_images),
        ] {
            assert_eq!(a.to_vec2::<u8>().unwrap(), b.to_vec2::<u8>().unwrap());
        }
        assert_eq!(
            d.train_labels.to_vec1::<u32>().unwrap(),
            back.train_labels.to_vec1::<u32>().unwrap()
        );
        // A second export into the same, now full, folder is refused and leaves it as it was.
        let e = export_folder(&d, &out, ExportSplit::Both)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
        let leftovers = std::fs::read_dir(tmp.path()).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".partial-")
        });
        assert_eq!(leftovers.count(), 0);
    }
}
