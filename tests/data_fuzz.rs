//! Property tests: the IDX readers return `Ok` or `Err` on any input, and never panic, hang or
//! allocate on the word of a corrupt header.

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use wgtrain::data::idx;

fn valid_images() -> Vec<u8> {
    let mut v = Vec::new();
    for x in [idx::IMAGES_MAGIC, 3, 4, 5] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..60u8).map(|i| i.wrapping_mul(37)));
    v
}

fn valid_labels() -> Vec<u8> {
    let mut v = idx::LABELS_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&3u32.to_be_bytes());
    v.extend_from_slice(&[1, 7, 9]);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One edit to a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite the byte at (index mod len).
    Set(usize, u8),
    /// XOR a bit into the byte at (index mod len).
    Flip(usize, u8),
    /// Keep only the first (n mod (len + 1)) bytes.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Overwrite one of the header words (index mod 4) with a value; headers are where sizes
    /// live, so they get their own mutation.
    Word(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0..8u32).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
        (0..4usize, any::<u32>()).prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Set(i, b) if len > 0 => bytes[i % len] = *b,
        Mutation::Flip(i, b) if len > 0 => bytes[i % len] ^= *b,
        Mutation::Truncate(n) => bytes.truncate(n % (len + 1)),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::Word(i, w) if len >= 4 * (i + 1) => {
            bytes[4 * i..4 * (i + 1)].copy_from_slice(&w.to_be_bytes())
        }
        _ => {}
    }
}

/// Every entry point on already-decompressed bytes and on (possibly) gzip bytes.
fn exercise(bytes: &[u8]) {
    let p = Path::new("fuzz");
    let _ = idx::parse_images(bytes, p);
    let _ = idx::parse_labels(bytes, p);
    if let Ok(decoded) = idx::decode_maybe_gz(bytes, p) {
        let _ = idx::parse_images(&decoded, p);
        let _ = idx::parse_labels(&decoded, p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutations of valid raw files, and of their decompressed form before compression (so
    /// the gzip layer is valid and the IDX inside is not).
    #[test]
    fn mutated_raw_idx(labels in any::<bool>(), ms in proptest::collection::vec(mutation(), 1..5)) {
        let mut b = if labels { valid_labels() } else { valid_images() };
        for m in &ms {
            apply(&mut b, m);
        }
        exercise(&b);
        exercise(&gzip(&b));
    }

    /// Mutations of valid gzip files: corrupt compressed streams.
    #[test]
    fn mutated_gzip_idx(labels in any::<bool>(), ms in proptest::collection::vec(mutation(), 1..5)) {
        let mut b = gzip(&if labels { valid_labels() } else { valid_images() });
        for m in &ms {
            // Header words of a gzip file are not IDX words; keep the other mutations.
            if !matches!(m, Mutation::Word(..)) {
                apply(&mut b, m);
            }
        }
        exercise(&b);
    }

    /// Arbitrary bytes, and arbitrary bytes behind the gzip and IDX magic numbers so that the
    /// deeper code paths are reached.
    #[test]
    fn random_bytes(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        exercise(&tail);
        for prefix in [&[0x1f, 0x8b][..], &[0x1f, 0x8b, 8, 0], &[0, 0, 8, 3], &[0, 0, 8, 1]] {
            let mut b = prefix.to_vec();
            b.extend_from_slice(&tail);
            exercise(&b);
        }
    }
}

proptest! {
    // Fewer cases: each writes a file.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The file readers, which add the gzip detection and the file system, on mutated files.
    #[test]
    fn read_mutated_files(gz in any::<bool>(), ms in proptest::collection::vec(mutation(), 1..4)) {
        let mut b = valid_images();
        for m in &ms {
            apply(&mut b, m);
        }
        let bytes = if gz { gzip(&b) } else { b };
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &bytes).unwrap();
        let _ = idx::read_images(tmp.path());
        let _ = idx::read_labels(tmp.path());
        let _ = idx::read_maybe_gz(tmp.path());
    }
}

/// A gzip stream whose header claims 4 GiB and which really decompresses to a lot (a small
/// "zip bomb"): refused by the size bound, without reading it all.
#[test]
fn gzip_bomb_is_bounded() {
    let mut b = Vec::new();
    for x in [idx::IMAGES_MAGIC, 1 << 16, 1 << 8, 1 << 8] {
        b.extend_from_slice(&x.to_be_bytes()); // 2^32 bytes declared: just over the bound
    }
    b.extend(std::iter::repeat_n(0u8, 1 << 20));
    let e = idx::decode_maybe_gz(&gzip(&b), Path::new("bomb")).unwrap_err();
    assert!(e.to_string().contains("4 GiB"), "{e}");
}
