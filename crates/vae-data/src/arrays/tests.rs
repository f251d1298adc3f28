use candle_core::{Device, Tensor};

use super::*;

fn npz(path: &Path, arrays: &[(&str, &Tensor)]) {
    Tensor::write_npz(arrays, path).unwrap();
}

fn table(n: usize, d: usize, offset: f32) -> Tensor {
    let v: Vec<f32> = (0..n * d).map(|i| offset + i as f32 / 100.0).collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

fn labels(v: &[i64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn err(path: &Path) -> String {
    let e = load_arrays(path, 0.1, 1).unwrap_err().to_string();
    assert!(
        !e.contains('\n') && e.starts_with(&path.display().to_string()),
        "{e}"
    );
    e
}

#[test]
fn an_npz_table_with_labels_reads_as_vectors_of_its_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("t.npz");
    let (ytr, yte) = (labels(&[0, 1, 2, 1]), labels(&[2, 0]));
    npz(
        &p,
        &[
            ("x_train", &table(4, 3, 0.0)),
            ("x_test", &table(2, 3, 5.0)),
            ("y_train", &ytr),
            ("y_test", &yte),
        ],
    );
    let d = load_arrays(&p, 0.1, 1).unwrap();
    assert_eq!(d.shape, [3]);
    assert_eq!(d.image_shape(), None);
    assert_eq!(d.class_names, ["0", "1", "2"]);
    assert_eq!(d.test_labels.to_vec1::<u32>().unwrap(), [2, 0]);
    assert_eq!(
        d.train_images.to_vec2::<f32>().unwrap()[1],
        [0.03, 0.04, 0.05]
    );
    assert_eq!(d.test_images.to_vec2::<f32>().unwrap()[0][0], 5.0);
}

#[test]
fn channel_last_images_are_made_channel_first_and_a_single_npy_is_split() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("rgb.npz");
    // [N, H, W, C] = [2, 1, 2, 3]: pixel (0, 1) of example 0 is (3, 4, 5).
    let x = Tensor::from_vec((0u8..12).collect::<Vec<_>>(), (2, 1, 2, 3), &Device::Cpu).unwrap();
    npz(&p, &[("x_train", &x), ("x_test", &x)]);
    let d = load_arrays(&p, 0.1, 1).unwrap();
    assert_eq!(d.shape, [3, 1, 2]);
    // Planes R = [0, 3], G = [1, 4], B = [2, 5].
    assert_eq!(
        d.train_images.to_vec2::<u8>().unwrap()[0],
        [0, 3, 1, 4, 2, 5]
    );
    assert!(d.class_names.is_empty());
    let single = tmp.path().join("grey.npy");
    let x = Tensor::from_vec((0u8..80).collect::<Vec<_>>(), (20, 2, 2), &Device::Cpu).unwrap();
    x.write_npy(&single).unwrap();
    let d = load_arrays(&single, 0.25, 3).unwrap();
    assert_eq!(
        (
            d.shape.clone(),
            d.train_images.dim(0).unwrap(),
            d.test_images.dim(0).unwrap()
        ),
        (vec![1, 2, 2], 15, 5)
    );
    let again = load_arrays(&single, 0.25, 3).unwrap();
    assert_eq!(
        again.test_images.to_vec2::<u8>().unwrap(),
        d.test_images.to_vec2::<u8>().unwrap()
    );
}

/// An `.npy` of a header and `body` bytes.
fn raw_npy(path: &Path, header: &str, body: &[u8]) {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((h.len() as u16).to_le_bytes());
    bytes.extend(h.as_bytes());
    bytes.extend(body);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_arrays_are_refused_in_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name);
    let x = table(4, 3, 0.0);
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        {
            let p = at("f64.npz");
            npz(
                &p,
                &[
                    ("x_train", &x.to_dtype(DType::F64).unwrap()),
                    ("x_test", &x),
                ],
            );
            (p, "dtype f8 is not read")
        },
        {
            let p = at("rank1.npz");
            npz(
                &p,
                &[
                    ("x_train", &table(1, 4, 0.0).flatten_all().unwrap()),
                    ("x_test", &x),
                ],
            );
            (p, "expected [N, D], [N, H, W] or [N, H, W, C]")
        },
        {
            let p = at("nan.npz");
            let bad = Tensor::new(&[[0f32, f32::NAN, 1.0]], &Device::Cpu).unwrap();
            npz(&p, &[("x_train", &x), ("x_test", &bad)]);
            (
                p,
                "x_test: value NaN at example 0, position 1 is not finite",
            )
        },
        {
            let p = at("count.npz");
            npz(
                &p,
                &[
                    ("x_train", &x),
                    ("x_test", &x),
                    ("y_train", &labels(&[0, 1])),
                    ("y_test", &labels(&[0, 1, 0, 1])),
                ],
            );
            (p, "y_train: 2 labels for 4 examples")
        },
        {
            let p = at("negative.npz");
            npz(
                &p,
                &[
                    ("x_train", &x),
                    ("x_test", &x),
                    ("y_train", &labels(&[0, 1, -1, 1])),
                    ("y_test", &labels(&[0, 1, 0, 1])),
                ],
            );
            (p, "label -1 at index 2 is not a class 0-9999")
        },
        {
            let p = at("past.npz");
            npz(
                &p,
                &[
                    ("x_train", &x),
                    ("x_test", &x),
                    ("y_train", &labels(&[0, 1, 0, 1])),
                    ("y_test", &labels(&[0, 1, 10_000, 1])),
                ],
            );
            (p, "label 10000 at index 2")
        },
        {
            let p = at("half.npz");
            npz(
                &p,
                &[
                    ("x_train", &x),
                    ("x_test", &x),
                    ("y_train", &labels(&[0, 1, 0, 1])),
                ],
            );
            (p, "one of y_train and y_test")
        },
        {
            let p = at("no-test.npz");
            npz(&p, &[("x_train", &x)]);
            (p, "no `x_test` array")
        },
        {
            let p = at("empty-test.npz");
            npz(&p, &[("x_train", &x), ("x_test", &table(0, 3, 0.0))]);
            (p, "the test split has no examples")
        },
        {
            let p = at("shapes.npz");
            npz(&p, &[("x_train", &x), ("x_test", &table(4, 2, 0.0))]);
            (p, "x_test examples are [2], x_train's [3]")
        },
        {
            let p = at("huge.npy");
            raw_npy(
                &p,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 1000), }",
                &[0; 16],
            );
            (p, "past the limit")
        },
        {
            let p = at("short.npy");
            raw_npy(
                &p,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 10), }",
                &[0; 16],
            );
            (p, "needs 40000 bytes and the file holds")
        },
        {
            // Two shapes: candle-core reads the last, so the check must too.
            let p = at("twice.npy");
            raw_npy(&p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'shape': (1000000, 1000), }", &[0; 16]);
            (p, "shape [1000000, 1000]")
        },
        {
            let p = at("overflow.npy");
            raw_npy(
                &p,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
                &[0; 16],
            );
            (p, "overflows")
        },
        {
            let p = at("big-endian.npy");
            raw_npy(
                &p,
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
                &[0; 16],
            );
            (p, "big-endian")
        },
        {
            let p = at("fortran.npy");
            raw_npy(
                &p,
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                &[0; 16],
            );
            (p, "Fortran order")
        },
        {
            let p = at("text.npy");
            std::fs::write(&p, "not an array at all").unwrap();
            (p, "no \\x93NUMPY magic")
        },
        {
            let p = at("text.npz");
            std::fs::write(&p, "not a zip").unwrap();
            (p, "not an .npz")
        },
    ];
    for (path, needle) in cases {
        let e = err(&path);
        assert!(
            e.contains(needle),
            "{}: `{needle}` not in {e}",
            path.display()
        );
    }
    let one = at("one.npy");
    table(1, 3, 0.0).write_npy(&one).unwrap();
    let e = load_arrays(&one, 0.1, 1).unwrap_err().to_string();
    assert!(e.contains("the test split has no examples"), "{e}");
}
