//! Property tests: the IDX and image-folder readers return `Ok` or `Err` on any input, and
//! never panic, hang, or allocate more than the input justifies.
//!
//! "Justifies" is measured, not assumed: a counting global allocator records the peak of live
//! heap bytes on the calling thread while a reader runs, and each call is held to a bound:
//!
//! - raw IDX bytes: the input's size plus a constant (messages), whatever the header claims;
//! - gzip IDX bytes: deflate's largest expansion of the input, twice (the growing buffer), plus
//!   the decoder's constant state;
//! - images: [`IMAGE_EXPANSION`] times the file's size plus a constant, the limit the folder
//!   reader gives the decoders.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use wgtrain::data::{folder, idx};

/// Counts live heap bytes per thread (tests run on their own threads), and their peak.
struct Counting;

thread_local! {
    // Const-initialised without destructors, so the allocator can touch them at any time.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap it held live at once, beyond what the
/// thread held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

/// Messages, paths and small bookkeeping.
const SMALL: usize = 16 << 10;
/// Deflate's largest expansion (see `idx::decode_maybe_gz`).
const DEFLATE_RATIO: usize = 1032;
/// The gzip decoder's own state: its input buffer and the inflater's window and tables.
const GZIP_STATE: usize = 256 << 10;
/// The image decoder's allowance per byte of image file and its fixed slack (see
/// `data::image_file`), and the decoders' own constant state.
const IMAGE_EXPANSION: usize = 4096;
const IMAGE_SLACK: usize = 1 << 20;
const DECODER_STATE: usize = 1 << 20;

/// The decoded image the reader allows, twice (decoded, then converted to gray), and the
/// decoder's state.
fn image_bound(file_len: usize) -> usize {
    2 * (IMAGE_EXPANSION * file_len + IMAGE_SLACK) + DECODER_STATE
}

#[track_caller]
fn assert_bounded(what: &str, peak: usize, bound: usize, input: usize) {
    assert!(
        peak <= bound,
        "{what} on {input} input bytes held {peak} heap bytes at once, more than the {bound} \
         the input justifies"
    );
}

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

/// Every entry point on already-decompressed bytes and on (possibly) gzip bytes, each held to
/// its allocation bound.
fn exercise(bytes: &[u8]) {
    let p = Path::new("fuzz");
    let n = bytes.len();
    let raw_bound = n + SMALL;
    let (_, peak) = peak_during(|| idx::parse_images(bytes, p));
    assert_bounded("parse_images", peak, raw_bound, n);
    let (_, peak) = peak_during(|| idx::parse_labels(bytes, p));
    assert_bounded("parse_labels", peak, raw_bound, n);
    let (decoded, peak) = peak_during(|| idx::decode_maybe_gz(bytes, p));
    assert_bounded(
        "decode_maybe_gz",
        peak,
        2 * DEFLATE_RATIO * n + GZIP_STATE,
        n,
    );
    if let Ok(decoded) = decoded {
        let m = decoded.len();
        let (_, peak) = peak_during(|| idx::parse_images(&decoded, p));
        assert_bounded("parse_images (decoded)", peak, m + SMALL, m);
        let (_, peak) = peak_during(|| idx::parse_labels(&decoded, p));
        assert_bounded("parse_labels (decoded)", peak, m + SMALL, m);
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
        let n = bytes.len();
        let bound = if gz { 2 * DEFLATE_RATIO * n + GZIP_STATE } else { 2 * n + SMALL };
        let (_, peak) = peak_during(|| idx::read_images(tmp.path()));
        assert_bounded("read_images", peak, bound, n);
        let (_, peak) = peak_during(|| idx::read_labels(tmp.path()));
        assert_bounded("read_labels", peak, bound, n);
        let (_, peak) = peak_during(|| idx::read_maybe_gz(tmp.path()));
        assert_bounded("read_maybe_gz", peak, bound, n);
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

/// A raw header that declares 2^32 - 1 images of 2^32 - 1 x 2^32 - 1 pixels on a 19-byte file
/// is refused by comparing with the length: nothing of the declared size is allocated.
#[test]
fn huge_raw_header_allocates_nothing() {
    let mut b = Vec::new();
    for x in [idx::IMAGES_MAGIC, u32::MAX, 28, 28] {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b.extend_from_slice(b"abc");
    let (r, peak) = peak_during(|| idx::parse_images(&b, Path::new("huge")));
    assert!(r.is_err());
    assert_bounded("parse_images", peak, SMALL, b.len());
    let mut l = idx::LABELS_MAGIC.to_be_bytes().to_vec();
    l.extend_from_slice(&u32::MAX.to_be_bytes());
    let (r, peak) = peak_during(|| idx::parse_labels(&l, Path::new("huge")));
    assert!(r.is_err());
    assert_bounded("parse_labels", peak, SMALL, l.len());
}

/// A gzip stream of a few dozen bytes whose header declares 2 GiB (under the 4 GiB bound):
/// the buffer reserved follows the compressed size, not the header, and the parser reports
/// the data as truncated.
#[test]
fn lying_gzip_header_reserves_what_the_stream_can_hold() {
    let mut b = Vec::new();
    for x in [idx::IMAGES_MAGIC, 1 << 15, 1 << 8, 1 << 8] {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b.extend_from_slice(&[7; 100]);
    let gz = gzip(&b);
    let p = Path::new("lie.gz");
    let (r, peak) = peak_during(|| {
        idx::decode_maybe_gz(&gz, p).and_then(|d| idx::parse_images(&d, p).map(|_| ()))
    });
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("2147483664 bytes are expected") && e.contains("truncated"),
        "{e}"
    );
    assert_bounded(
        "decode_maybe_gz",
        peak,
        2 * DEFLATE_RATIO * gz.len() + GZIP_STATE,
        gz.len(),
    );
    // Far below the 2 GiB the header asks for.
    assert!(peak < 4 << 20, "{peak}");
}

// ---------------------------------------------------------------------------------------------
// Image folders

/// A small gray PNG and a small colour JPEG, as bytes.
fn valid_png() -> Vec<u8> {
    let img = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 40 + y * 7) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn valid_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 8, |x, y| {
        image::Rgb([(x * 15) as u8, (y * 30) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Rewrites the declared size of a PNG (in IHDR, with its CRC recomputed so the decoder
/// believes it) or of a JPEG (in its first SOF segment).
fn set_image_size(bytes: &mut [u8], w: u32, h: u32) {
    if bytes.starts_with(b"\x89PNG") && bytes.len() >= 33 && &bytes[12..16] == b"IHDR" {
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    } else if let Some(i) = bytes
        .windows(2)
        .position(|m| m[0] == 0xFF && (0xC0..=0xC2).contains(&m[1]))
        && bytes.len() >= i + 9
    {
        // FF Cn, length (2), precision (1), height (2), width (2).
        bytes[i + 5..i + 7].copy_from_slice(&(h as u16).to_be_bytes());
        bytes[i + 7..i + 9].copy_from_slice(&(w as u16).to_be_bytes());
    }
}

/// Reads a split holding one class folder with one image file of `bytes`, and checks the
/// allocation bound.
fn read_image_folder(bytes: &[u8], ext: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("cat");
    std::fs::create_dir(&class).unwrap();
    std::fs::write(class.join(format!("a.{ext}")), bytes).unwrap();
    let n = bytes.len();
    let (_, peak) =
        peak_during(|| folder::read_split(tmp.path(), None, wgtrain::data::Color::Gray));
    assert_bounded("folder::read_split", peak, image_bound(n), n);
}

/// A PNG of under 100 bytes that declares 5000 x 5000 pixels (25 MB; under the bound on any
/// image's size, so the file's own size is what refuses it) is refused from its header.
#[test]
fn lying_png_header_is_refused_before_allocating() {
    let mut png = valid_png();
    set_image_size(&mut png, 5_000, 5_000);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("cat")).unwrap();
    std::fs::write(tmp.path().join("cat/a.png"), &png).unwrap();
    let (r, peak) =
        peak_during(|| folder::read_split(tmp.path(), None, wgtrain::data::Color::Gray));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("declares more pixels than a"), "{e}");
    assert_bounded(
        "folder::read_split",
        peak,
        image_bound(png.len()),
        png.len(),
    );
}

/// `predict` reads images through the folder reader's bounded decoder: an honest 6000 x 6000
/// PNG of a few dozen KB (36 MB decoded, and once converted through 576 MB of float RGBA) is
/// refused from its header, holding next to nothing.
#[test]
fn predict_refuses_an_image_too_large_before_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.png");
    image::GrayImage::new(6000, 6000).save(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let (r, peak) = peak_during(|| wgtrain::infer::input::read_image(&path, (28, 28), false));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("6000x6000 pixels"), "{e}");
    assert_bounded("infer::input::read_image", peak, SMALL + DECODER_STATE, len);
}

/// An image edit: a byte mutation, or a new declared size.
#[derive(Clone, Debug)]
enum ImageEdit {
    Bytes(Mutation),
    Size(u32, u32),
}

fn image_edit() -> impl Strategy<Value = ImageEdit> {
    prop_oneof![
        3 => mutation().prop_map(ImageEdit::Bytes),
        1 => (1..=65_535u32, 1..=65_535u32).prop_map(|(w, h)| ImageEdit::Size(w, h)),
    ]
}

proptest! {
    // Each case writes a file and decodes it.
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Mutated and truncated PNG and JPEG files, and ones whose headers declare other sizes.
    #[test]
    fn mutated_images(jpeg in any::<bool>(), edits in proptest::collection::vec(image_edit(), 1..4)) {
        let (mut b, ext) = if jpeg { (valid_jpeg(), "jpg") } else { (valid_png(), "png") };
        for e in &edits {
            match e {
                // Header words of an image are not IDX words.
                ImageEdit::Bytes(Mutation::Word(..)) => {}
                ImageEdit::Bytes(m) => apply(&mut b, m),
                ImageEdit::Size(w, h) => set_image_size(&mut b, *w, *h),
            }
        }
        read_image_folder(&b, ext);
    }
}
