//! `vae_data::idx::read_idx` on hostile files: the bytes as they are (mostly not gzip at all), and the bytes
//! gzipped, so that the IDX header and size checks behind the decompressor are reached too.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use vae_data::idx::{read_idx, IdxKind};

fn read_both(path: &std::path::Path) {
    for kind in [IdxKind::Images, IdxKind::Labels] {
        if let Ok(idx) = read_idx(path, kind) {
            // What the reader promises on success.
            assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.gz");
    std::fs::write(&raw, data).unwrap();
    read_both(&raw);

    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    let gz = dir.path().join("idx.gz");
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    read_both(&gz);
});
