//! Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, an element-type code, the number of
//! dimensions), one big-endian `u32` per dimension, then the elements in row-major order. We
//! read two kinds: images (`0x00000803`: `u8`, 3 dimensions `count, rows, cols`) and labels
//! (`0x00000801`: `u8`, 1 dimension `count`).
//!
//! Data files come from users, so nothing here may panic or allocate on the say-so of a header:
//! every size is computed with checked arithmetic and compared with the real length first, and
//! gzip input is decompressed only as far as its header says it should go.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{Error, Result};

/// Magic number of an IDX file of `u8` images: type `0x08`, 3 dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels: type `0x08`, 1 dimension.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The most decompressed data we accept from one gzip file. Fashion-MNIST's training images are
/// 47 MB; a header that asks for more than this is corrupt or hostile, and refusing it up front
/// keeps a 100-byte file from making us decompress (or allocate) gigabytes.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// Deflate cannot expand data by more than about 1032:1, so no honest gzip file decompresses to
/// more than this many times its own size. Used to bound the buffer we reserve up front.
const MAX_DEFLATE_RATIO: usize = 1032;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decoded IDX image file: `count` images of `height x width` pixels, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Images in the file.
    pub count: usize,
    /// Pixel rows per image (28 for MNIST).
    pub height: usize,
    /// Pixel columns per image (28 for MNIST).
    pub width: usize,
    /// `count * height * width` bytes: image by image, each row by row.
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file (magic 2051), raw or gzip-compressed.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&read_maybe_gz(path)?, path)
}

/// Reads an IDX label file (magic 2049), raw or gzip-compressed.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_maybe_gz(path)?, path)
}

/// Reads a file and, if it starts with the gzip magic bytes, decompresses it as an IDX file
/// (see [`decode_maybe_gz`]). The extension is not consulted: files named `.gz` that are not
/// compressed, and compressed files without the suffix, are both common in the wild.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if is_gzip(&bytes) {
        Ok(decode_maybe_gz(&bytes, path)?.into_owned())
    } else {
        Ok(bytes)
    }
}

/// Whether `bytes` start with the gzip magic number `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Returns `bytes` unchanged, or decompressed if they are gzip data (`path` only names the
/// source in errors).
///
/// Decompression is bounded by the IDX header inside the stream: the header is decompressed
/// first, the payload size it declares is computed with checked arithmetic and refused above
/// [`MAX_DECOMPRESSED_BYTES`], and then exactly that many bytes are read. Data beyond that is an
/// error (with the real size), as is a corrupt gzip stream or one that holds no IDX header.
pub fn decode_maybe_gz<'a>(bytes: &'a [u8], path: &Path) -> Result<Cow<'a, [u8]>> {
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut decoder = MultiGzDecoder::new(bytes);
    let gz_err = |e: std::io::Error| {
        Error::data(
            path,
            format!(
                "not a valid gzip stream (corrupt or truncated: {e}); replace it with a good copy"
            ),
        )
    };

    // The magic number says how many dimension words follow it.
    let mut out = Vec::new();
    read_up_to(&mut decoder, &mut out, 4).map_err(gz_err)?;
    if out.len() < 4 {
        // Too short even for a magic number; the parsers report it with the real length.
        return Ok(Cow::Owned(out));
    }
    let magic = be_u32(&out[0..4]);
    let Some(elem_size) = idx_element_size(magic) else {
        return Err(Error::data(
            path,
            format!(
                "not an IDX file: the decompressed data starts with magic number {} where {} \
                 (images) or {} (labels) is expected; --data needs MNIST-format IDX files",
                fmt_magic(magic),
                fmt_magic(IMAGES_MAGIC),
                fmt_magic(LABELS_MAGIC)
            ),
        ));
    };
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    read_up_to(&mut decoder, &mut out, header_len).map_err(gz_err)?;
    if out.len() < header_len {
        return Ok(Cow::Owned(out));
    }

    // Checked product of the dimensions: a corrupt header can ask for 2^96 bytes.
    let declared = out[4..header_len]
        .chunks_exact(4)
        .try_fold(elem_size, |acc, d| acc.checked_mul(u64::from(be_u32(d))))
        .and_then(|n| n.checked_add(header_len as u64))
        .filter(|&n| n <= MAX_DECOMPRESSED_BYTES)
        .ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "the IDX header declares dimensions {} whose data would exceed the {} GiB \
                     this reader accepts; the file is corrupt: replace it with a good copy",
                    fmt_dims(&out[4..header_len]),
                    MAX_DECOMPRESSED_BYTES >> 30
                ),
            )
        })?;
    // At most 4 GiB, which fits a 64-bit usize; on a 32-bit target the conversion fails
    // cleanly instead of wrapping.
    let declared = usize::try_from(declared)
        .map_err(|_| Error::data(path, "IDX data too large for this platform"))?;

    // Reserve no more than the compressed size can honestly expand to, so a lying header does
    // not cost memory; `read_up_to` grows the buffer as real data arrives.
    let honest_max = declared.min(bytes.len().saturating_mul(MAX_DEFLATE_RATIO));
    out.reserve(honest_max.saturating_sub(out.len()));
    // One byte past the declared size tells us whether there is trailing data.
    read_up_to(&mut decoder, &mut out, declared.saturating_add(1)).map_err(gz_err)?;
    if out.len() > declared {
        // Count the rest without keeping it, to report the real decompressed size.
        let limit = MAX_DECOMPRESSED_BYTES.saturating_sub(out.len() as u64);
        let rest =
            std::io::copy(&mut (&mut decoder).take(limit), &mut std::io::sink()).map_err(gz_err)?;
        let found = out.len() as u64 + rest;
        let at_least = if rest == limit { "at least " } else { "" };
        return Err(Error::data(
            path,
            format!(
                "the IDX header (dimensions {}) declares {declared} bytes, but the decompressed \
                 data has {at_least}{found} bytes ({at_least}{} trailing bytes); the file is \
                 corrupt: replace it with a good copy",
                fmt_dims(&out[4..header_len]),
                found - declared as u64
            ),
        ));
    }
    Ok(Cow::Owned(out))
}

/// Parses an IDX image file that is already in memory (decompressed). `path` only names the
/// source in errors. A file with zero images is accepted; callers decide whether that is usable.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    check_magic(bytes, IMAGES_MAGIC, path)?;
    let header = header_words(bytes, 3, path)?;
    let (count, height, width) = (header[0], header[1], header[2]);
    if height == 0 || width == 0 {
        return Err(Error::data(
            path,
            format!(
                "the IDX header declares images of {height}x{width} pixels; both must be \
                 positive: the file is corrupt, replace it with a good copy"
            ),
        ));
    }
    let expected = count
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .and_then(|n| n.checked_add(16));
    check_length(
        bytes.len(),
        expected,
        &format!("{count} images of {height}x{width} pixels"),
        path,
    )?;
    Ok(IdxImages {
        count,
        height,
        width,
        pixels: bytes[16..].to_vec(),
    })
}

/// Parses an IDX label file that is already in memory (decompressed). `path` only names the
/// source in errors. A file with zero labels is accepted.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    check_magic(bytes, LABELS_MAGIC, path)?;
    let header = header_words(bytes, 1, path)?;
    let count = header[0];
    check_length(
        bytes.len(),
        count.checked_add(8),
        &format!("{count} labels"),
        path,
    )?;
    Ok(bytes[8..].to_vec())
}

/// Size in bytes of one element for a valid IDX magic number, `None` if it is not one.
fn idx_element_size(magic: u32) -> Option<u64> {
    if magic >> 16 != 0 || magic & 0xff == 0 {
        return None;
    }
    match (magic >> 8) & 0xff {
        0x08 | 0x09 => Some(1), // u8, i8
        0x0B => Some(2),        // i16
        0x0C | 0x0D => Some(4), // i32, f32
        0x0E => Some(8),        // f64
        _ => None,
    }
}

fn check_magic(bytes: &[u8], expected: u32, path: &Path) -> Result<()> {
    let Some(head) = bytes.get(0..4) else {
        return Err(Error::data(
            path,
            format!(
                "too short for an IDX file: {} bytes, but the magic number alone is 4; \
                 replace it with a complete copy",
                bytes.len()
            ),
        ));
    };
    let magic = be_u32(head);
    if magic == expected {
        return Ok(());
    }
    // Swapped image and label files are the likeliest mistake; say so.
    let hint = match magic {
        IMAGES_MAGIC => " (this is an IDX image file)",
        LABELS_MAGIC => " (this is an IDX label file)",
        _ if is_gzip(bytes) => " (this is gzip data; decompress it first)",
        _ => "",
    };
    let what = if expected == IMAGES_MAGIC {
        "images"
    } else {
        "labels"
    };
    Err(Error::data(
        path,
        format!(
            "wrong magic number {}{hint}, expected {} for IDX {what}; use the {what} file of \
             an MNIST-format data set here",
            fmt_magic(magic),
            fmt_magic(expected)
        ),
    ))
}

/// The `n` dimension words after the magic number, as `usize`.
fn header_words(bytes: &[u8], n: usize, path: &Path) -> Result<Vec<usize>> {
    let header_len = 4 + 4 * n;
    let Some(words) = bytes.get(4..header_len) else {
        return Err(Error::data(
            path,
            format!(
                "truncated IDX header: expected {header_len} bytes, found {}; replace it with \
                 a complete copy",
                bytes.len()
            ),
        ));
    };
    // u32 always fits in usize on the 32- and 64-bit targets we build for.
    Ok(words.chunks_exact(4).map(|w| be_u32(w) as usize).collect())
}

/// Compares the real length with what the header declares (`None`: the declared size
/// overflowed, which no real file can match).
fn check_length(found: usize, expected: Option<usize>, what: &str, path: &Path) -> Result<()> {
    match expected {
        Some(expected) if expected == found => Ok(()),
        Some(expected) => {
            let why = if found < expected {
                "truncated: replace it with a complete copy".to_string()
            } else {
                format!(
                    "{} trailing bytes: the header and the data disagree, replace it with a good copy",
                    found - expected
                )
            };
            Err(Error::data(
                path,
                format!(
                    "the IDX header declares {what}, so {expected} bytes are expected, but \
                     {found} bytes were found ({why})"
                ),
            ))
        }
        None => Err(Error::data(
            path,
            format!(
                "the IDX header declares {what}, more bytes than can exist; {found} bytes were \
                 found (the header is corrupt: replace the file with a good copy)"
            ),
        )),
    }
}

/// Reads from `r` until `buf` holds `target` bytes or the stream ends.
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, target: usize) -> std::io::Result<()> {
    let want = target.saturating_sub(buf.len()) as u64;
    r.take(want).read_to_end(buf)?;
    Ok(())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn fmt_magic(magic: u32) -> String {
    format!("0x{magic:08X} ({magic})")
}

fn fmt_dims(words: &[u8]) -> String {
    words
        .chunks_exact(4)
        .map(|w| be_u32(w).to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn images_bytes(count: u32, h: u32, w: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, count, h, w] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend((0..count * h * w).map(|i| (i % 251) as u8));
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn err_text(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    const P: &str = "x.idx";

    #[test]
    fn parses_non_square_images() {
        let img = parse_images(&images_bytes(3, 5, 7), Path::new(P)).unwrap();
        assert_eq!((img.count, img.height, img.width), (3, 5, 7));
        assert_eq!(img.pixels.len(), 105);
        assert_eq!(img.pixels[104], 104);
    }

    #[test]
    fn gzip_round_trip_matches_raw() {
        let raw = images_bytes(4, 3, 2);
        let gz = gzip(&raw);
        assert_eq!(
            decode_maybe_gz(&gz, Path::new(P)).unwrap().as_ref(),
            &raw[..]
        );
        // Raw input is passed through without a copy.
        assert!(matches!(
            decode_maybe_gz(&raw, Path::new(P)).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn truncated_and_trailing_report_sizes() {
        let raw = images_bytes(2, 2, 2);
        let e = err_text(parse_images(&raw[..raw.len() - 1], Path::new(P)));
        assert!(
            e.contains("24 bytes are expected, but 23 bytes were found (truncated:"),
            "{e}"
        );
        let mut long = raw.clone();
        long.extend_from_slice(&[1, 2]);
        let e = err_text(parse_images(&long, Path::new(P)));
        assert!(e.contains("26 bytes were found (2 trailing bytes:"), "{e}");
        let e = err_text(decode_maybe_gz(&gzip(&long), Path::new(P)));
        assert!(
            e.contains("declares 24 bytes") && e.contains("has 26 bytes"),
            "{e}"
        );
    }

    #[test]
    fn huge_header_is_refused_without_allocating() {
        let mut raw = images_bytes(0, 1, 1);
        raw[4..16].copy_from_slice(&[0xff; 12]);
        let e = err_text(parse_images(&raw, Path::new(P)));
        assert!(
            e.contains("4294967295 images of 4294967295x4294967295"),
            "{e}"
        );
        let e = err_text(decode_maybe_gz(&gzip(&raw), Path::new(P)));
        assert!(e.contains("exceed the 4 GiB"), "{e}");
    }

    #[test]
    fn element_sizes() {
        assert_eq!(idx_element_size(IMAGES_MAGIC), Some(1));
        assert_eq!(idx_element_size(0x0000_0D02), Some(4));
        assert_eq!(idx_element_size(0x0000_0800), None);
        assert_eq!(idx_element_size(0x0100_0801), None);
        assert_eq!(idx_element_size(0x0000_0701), None);
    }

    #[test]
    fn swapped_files_get_a_hint() {
        let mut labels = LABELS_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&0u32.to_be_bytes());
        let e = err_text(parse_images(&labels, Path::new(P)));
        assert!(
            e.contains("0x00000801 (2049) (this is an IDX label file)"),
            "{e}"
        );
        assert!(e.contains("expected 0x00000803 (2051)"), "{e}");
    }
}
