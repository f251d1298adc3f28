//! The IDX format (LeCun's MNIST files), checked before anything trusts it.
//!
//! A file is a 4-byte magic `00 00 08 <ndim>` (8 = unsigned bytes), `ndim` big-endian u32 dimensions, then the
//! bytes in row-major order. Every file is checked as it is decoded: magic, dimensions against the real length, and
//! a size the gzip can actually hold, before anything is allocated for it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::{DataError, Result};

/// What an IDX file should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    /// `[count, rows, cols]` unsigned bytes, magic 2051.
    Images,
    /// `[count]` unsigned bytes, magic 2049.
    Labels,
}

impl IdxKind {
    fn ndim(self) -> u8 {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }
}

/// Deflate never compresses better than about 1032:1, so a gzip of n bytes cannot hold more than this many.
const MAX_DEFLATE_RATIO: u64 = 1032;

fn corrupt(path: &Path, e: &std::io::Error) -> DataError {
    DataError::idx(path, format!("corrupt gzip ({e})"))
}

/// A decoded IDX file: its dimensions and its bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The header's dimensions, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The data, exactly `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Decompresses the gzipped IDX file `gz` in memory, after checking the magic and that the dimensions fit the
/// gzip's size, and checks that the data is exactly as long as the header says. Nothing is allocated in proportion
/// to what the header claims, and nothing is written to disk.
pub fn read_idx(gz: &Path, kind: IdxKind) -> Result<Idx> {
    let file = File::open(gz).map_err(DataError::io(gz))?;
    let gz_len = file.metadata().map_err(DataError::io(gz))?.len();
    let mut dec = GzDecoder::new(BufReader::new(file));
    let dims = read_dims(&mut dec, gz, kind)?;
    let body = body_len(gz, &dims, gz_len)?;
    let data = read_body(&mut dec, gz, &dims, body)?;
    Ok(Idx {
        dims: dims.into_iter().map(|d| d as usize).collect(),
        data,
    })
}

/// The header: the magic number, checked against `kind`, then the dimensions, none of them zero.
fn read_dims(dec: &mut impl Read, gz: &Path, kind: IdxKind) -> Result<Vec<u64>> {
    let mut magic = [0u8; 4];
    read_header(dec, &mut magic, gz)?;
    if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != kind.ndim() {
        let expected = 0x0800 + kind.ndim() as u32;
        return Err(DataError::idx(
            gz,
            format!(
                "wrong magic number {} (expected {expected} for IDX {kind:?})",
                u32::from_be_bytes(magic)
            ),
        ));
    }
    let mut dims = Vec::with_capacity(kind.ndim() as usize);
    for _ in 0..kind.ndim() {
        let mut d = [0u8; 4];
        read_header(dec, &mut d, gz)?;
        dims.push(u32::from_be_bytes(d) as u64);
    }
    if dims.contains(&0) {
        return Err(DataError::idx(
            gz,
            format!("header has a zero dimension {dims:?}"),
        ));
    }
    Ok(dims)
}

/// The data bytes the dimensions describe, if a gzip of `gz_len` bytes can hold that many.
fn body_len(gz: &Path, dims: &[u64], gz_len: u64) -> Result<u64> {
    let capacity = gz_len.saturating_mul(MAX_DEFLATE_RATIO);
    match dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)) {
        Some(b) if b <= capacity => Ok(b),
        _ => Err(DataError::idx(
            gz,
            format!(
                "header claims dimensions {dims:?}, more data than a {gz_len}-byte gzip can hold"
            ),
        )),
    }
}

/// Exactly `body` data bytes, the stream ending there.
fn read_body(dec: &mut impl Read, gz: &Path, dims: &[u64], body: u64) -> Result<Vec<u8>> {
    // Grown as the data arrives, so a lying header costs at most the first megabyte.
    let mut data = Vec::with_capacity(body.min(1 << 20) as usize);
    let copied = dec
        .take(body)
        .read_to_end(&mut data)
        .map_err(|e| corrupt(gz, &e))? as u64;
    if copied != body {
        return Err(DataError::idx(
            gz,
            format!("truncated: header dimensions {dims:?} need {body} data bytes, the file has {copied}"),
        ));
    }
    let mut extra = [0u8; 1];
    match dec.read(&mut extra) {
        Ok(0) => Ok(data),
        Ok(_) => Err(DataError::idx(
            gz,
            format!("header dimensions {dims:?} describe {body} data bytes, but the file has more"),
        )),
        Err(e) => Err(corrupt(gz, &e)),
    }
}

fn read_header(dec: &mut impl Read, buf: &mut [u8], gz: &Path) -> Result<()> {
    dec.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DataError::idx(gz, "truncated: the IDX header is incomplete")
        }
        _ => corrupt(gz, &e),
    })
}
