//! PyTorch files written here in torch.save's layout, opcode by opcode: the real shape of a `state_dict`, and the
//! hostile ones the second hostile pass found.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A pickle written opcode by opcode, protocol 2 as torch.save writes it.
pub struct Pickle(Vec<u8>);

impl Pickle {
    pub fn new() -> Self {
        Self(vec![0x80, 2])
    }
    pub fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    pub fn text(self, s: &str) -> Self {
        let len = (s.len() as u32).to_le_bytes();
        self.op(b"X").op(&len).op(s.as_bytes())
    }
    pub fn int(self, v: i32) -> Self {
        self.op(b"J").op(&v.to_le_bytes())
    }
    pub fn global(self, module: &str, name: &str) -> Self {
        self.op(b"c")
            .op(module.as_bytes())
            .op(b"\n")
            .op(name.as_bytes())
            .op(b"\n")
    }
    pub fn ints(self, values: &[i32]) -> Self {
        values.iter().fold(self.op(b"("), |p, &v| p.int(v)).op(b"t")
    }
    /// `_rebuild_tensor_v2(storage(key, numel), 0, size, stride, False, OrderedDict())`, cut to `args` arguments.
    pub fn tensor(self, key: &str, numel: i32, size: &[i32], stride: &[i32], args: usize) -> Self {
        let p = self.global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        let parts: Vec<Box<dyn Fn(Pickle) -> Pickle>> = vec![
            Box::new(|p: Pickle| {
                p.op(b"(")
                    .text("storage")
                    .global("torch", "FloatStorage")
                    .text(key)
                    .text("cpu")
                    .int(numel)
                    .op(b"tQ")
            }),
            Box::new(|p: Pickle| p.int(0)),
            Box::new(|p: Pickle| p.ints(size)),
            Box::new(|p: Pickle| p.ints(stride)),
            Box::new(|p: Pickle| p.op(&[0x89])),
            Box::new(|p: Pickle| p.global("collections", "OrderedDict").op(b")R")),
        ];
        parts.iter().take(args).fold(p, |p, part| part(p)).op(b"tR")
    }
    pub fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// A `state_dict` of one 2×3 f32 tensor `w` (storage key "0"), its rebuild call given `args` arguments.
pub fn one_tensor(size: &[i32], args: usize) -> Vec<u8> {
    Pickle::new()
        .op(b"}(")
        .text("w")
        .tensor("0", 6, size, &[3, 1], args)
        .op(b"u")
        .stop()
}

/// The values 0..6 as the f32 storage "0".
pub fn six_floats() -> Vec<u8> {
    (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect()
}

/// A zip in torch.save's layout: `<archive>/data.pkl` and each storage as `<archive>/data/<key>`.
pub fn pt_file(dir: &Path, archive: &str, pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join(format!("{archive}.pt"));
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(format!("{archive}/data.pkl"), stored)
        .unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("{archive}/data/{key}"), stored)
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// PyTorch files that once took `import` down (a panic, an abort, a stack overflow), each with what its one-line
/// refusal must say.
pub fn hostile_files(dir: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let at = |name: &str, pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        pt_file(&sub, "archive", &pickle, storages)
    };
    let floats = || vec![("0", six_floats())];
    let short_storage = Pickle::new()
        .op(b"}(")
        .text("w")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .text("storage")
        .global("torch", "FloatStorage")
        .op(&[0x86, b'Q'])
        .int(0)
        .ints(&[2, 3])
        .ints(&[3, 1])
        .op(b"tRu")
        .stop();
    let wrapper = |module: &str, name: &str| {
        Pickle::new()
            .op(b"}(")
            .text("w")
            .global(module, name)
            .op(b")Ru")
            .stop()
    };
    let claims = Pickle::new().op(b"}(").text("w").tensor(
        "0",
        2_000_000_000,
        &[400000, 5000],
        &[5000, 1],
        6,
    );
    let mut tuples = vec![0x80, 2, b'K', 0];
    tuples.extend(std::iter::repeat_n(0x85, 2_000_000));
    tuples.push(b'.');
    let mut dicts = vec![0x80, 2];
    for _ in 0..500_000 {
        dicts.extend([b'}', b'X', 1, 0, 0, 0, b'a']);
    }
    dicts.push(b'}');
    dicts.extend(std::iter::repeat_n(b's', 500_000));
    dicts.push(b'.');
    let mut doubled = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        doubled.extend([b']', b'(', b'h', 0, b'h', 0, b'e', b'q', 0]);
    }
    doubled.push(b'.');
    vec![
        (
            "a rebuild call of two arguments",
            at("short-call", one_tensor(&[2, 3], 2), &floats()),
            "_rebuild_tensor_v2 with 2 arguments",
        ),
        (
            "a 2-item storage tuple",
            at("short-storage", short_storage, &[]),
            "its storage id is not",
        ),
        (
            "_rebuild_parameter ()",
            at(
                "parameter",
                wrapper("torch._utils", "_rebuild_parameter"),
                &[],
            ),
            "no tensors",
        ),
        (
            "a short _rebuild_from_type_v2",
            at(
                "from-type",
                wrapper("torch._tensor", "_rebuild_from_type_v2"),
                &[],
            ),
            "no tensors",
        ),
        (
            "a shape of 2147483647²",
            at(
                "huge-shape",
                one_tensor(&[2147483647, 2147483647], 6),
                &floats(),
            ),
            "runs past its storage of 6 values",
        ),
        (
            "a storage claiming 8 GB",
            at("huge-storage", claims.op(b"u").stop(), &floats()),
            "declares 8000000000 bytes",
        ),
        (
            "a storage cut short",
            at(
                "cut-storage",
                one_tensor(&[2, 3], 6),
                &[("0", six_floats()[..20].to_vec())],
            ),
            "holds 20 bytes where the pickle says 24",
        ),
        (
            "2 000 000 nested tuples",
            at("tuples", tuples, &[]),
            "nests objects deeper than 100",
        ),
        (
            "a 500 000-deep dict",
            at("dicts", dicts, &[]),
            "nests objects deeper than 100",
        ),
        (
            "a list doubled 40 times",
            at("doubled", doubled, &[]),
            "builds more than 4000000 objects",
        ),
    ]
}
