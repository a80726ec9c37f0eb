//! Image files as training (image folders) and prediction both read them: one decoder, bounded
//! in what a file can make it allocate, and one rule for colour and transparency, so that an
//! image means the same pixels to the model in both.
//!
//! The rule: grayscale by Rec. 709 luma (the weights `image`'s own conversion uses), with
//! transparent pixels composited over white, as an image viewer shows them. (The colour hidden
//! under a transparent pixel is invisible and arbitrary, so it is never used.)

use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader, Luma, Pixel, Primitive};

use crate::{Error, Result};

/// Grayscale pixels in [0, 1], 0 black.
pub type GrayF32 = ImageBuffer<Luma<f32>, Vec<f32>>;

/// The most pixels an image may have (2^25, about 33.5 million: 8192 x 4096, or a 6000 x 5000
/// photo). Decoding and converting one costs up to 16 bytes a pixel, half a gigabyte at this
/// bound; the models here take a few thousand pixels.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 25;

/// No PNG or JPEG decodes to more than this many times its file size: deflate expands by at
/// most ~1032:1, and a baseline or progressive JPEG needs at least one bit per 8x8 block of each
/// component (~1200:1 for the widest chroma subsampling). Generous, since it only has to stop
/// headers that lie by orders of magnitude.
const MAX_IMAGE_EXPANSION: u64 = 4096;
/// Allowance for tiny files, whose headers are most of their size.
const IMAGE_ALLOC_SLACK: u64 = 1 << 20;

/// Decodes a PNG or JPEG file. The format is guessed from the content, not the extension, so a
/// PNG saved as `.jpg` still reads.
///
/// Decoders allocate the whole image as soon as they have read its header, so nothing is
/// decoded before the header's size is checked: at most [`MAX_IMAGE_PIXELS`] pixels, and no
/// more bytes than the file's size can honestly decode to (a corrupt header could otherwise
/// make a 100-byte file cost gigabytes).
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let mut reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let honest = file_len
        .saturating_mul(MAX_IMAGE_EXPANSION)
        .saturating_add(IMAGE_ALLOC_SLACK);
    let mut limits = image::Limits::default();
    let default_max = limits.max_alloc.unwrap_or(u64::MAX);
    limits.max_alloc = Some(honest.min(default_max));
    reader.limits(limits.clone());
    let undecodable = |e: image::ImageError| match e {
        image::ImageError::Limits(_) if honest < default_max => Error::data(
            path,
            format!(
                "the image header declares more pixels than a {file_len}-byte file can hold; \
                 the file is corrupt: replace or remove it"
            ),
        ),
        image::ImageError::Limits(_) => Error::data(
            path,
            format!(
                "the image is too large to decode (over {} MiB of pixels); scale it down",
                default_max >> 20
            ),
        ),
        e => Error::data(
            path,
            format!(
                "cannot decode image: {e}; the file is corrupt or not a PNG or JPEG: replace \
                 or remove it"
            ),
        ),
    };
    let decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::data(
            path,
            format!(
                "the image is {w}x{h} pixels ({} million), more than the {} million wgtrain \
                 decodes; scale it down",
                pixels / 1_000_000,
                MAX_IMAGE_PIXELS / 1_000_000
            ),
        ));
    }
    // What `ImageReader::decode` checks before decoding, which `into_decoder` leaves to us.
    limits.reserve(decoder.total_bytes()).map_err(undecodable)?;
    DynamicImage::from_decoder(decoder).map_err(undecodable)
}

/// The image as grayscale in [0, 1] by the module's rule, for resampling.
pub fn gray(img: &DynamicImage) -> GrayF32 {
    let mut v = Vec::with_capacity(img.width() as usize * img.height() as usize);
    for_each_gray(img, |g| v.push(g));
    ImageBuffer::from_raw(img.width(), img.height(), v).expect("one value per pixel")
}

/// The image as grayscale bytes by the module's rule, row by row, with no float copy of it
/// (the image-folder reader holds the decoded image and these bytes, nothing more).
pub fn gray_u8(img: &DynamicImage) -> Vec<u8> {
    let mut v = Vec::with_capacity(img.width() as usize * img.height() as usize);
    for_each_gray(img, |g| v.push(to_byte(g, false)));
    v
}

/// Bytes of grayscale pixels in [0, 1], row by row, inverted if asked (for dark strokes on a
/// light background).
pub fn gray_bytes(gray: &GrayF32, invert: bool) -> Vec<u8> {
    gray.pixels().map(|p| to_byte(p.0[0], invert)).collect()
}

fn to_byte(v: f32, invert: bool) -> u8 {
    let v = v.clamp(0.0, 1.0);
    let v = if invert { 1.0 - v } else { v };
    (v * 255.0).round() as u8
}

/// Calls `f` with every pixel's gray value in [0, 1], row by row, reading the decoded image
/// in place (PNG and JPEG decode to one of the 8- and 16-bit layouts matched here).
fn for_each_gray(img: &DynamicImage, f: impl FnMut(f32)) {
    match img {
        DynamicImage::ImageLuma8(b) => gray_values(b).for_each(f),
        DynamicImage::ImageLumaA8(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgb8(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgba8(b) => gray_values(b).for_each(f),
        DynamicImage::ImageLuma16(b) => gray_values(b).for_each(f),
        DynamicImage::ImageLumaA16(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgb16(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgba16(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgb32F(b) => gray_values(b).for_each(f),
        DynamicImage::ImageRgba32F(b) => gray_values(b).for_each(f),
        other => gray_values(&other.to_rgba32f()).for_each(f),
    }
}

/// The image as RGB bytes, channels interleaved (`(y, x, channel)`), row by row: gray images
/// repeat their value in the three channels, and transparency is composited over white by the
/// same rule as [`gray_u8`].
pub fn rgb_u8(img: &DynamicImage) -> Vec<u8> {
    let buf = img.to_rgba32f();
    let mut v = Vec::with_capacity(buf.width() as usize * buf.height() as usize * 3);
    for p in buf.pixels() {
        let [r, g, b, a] = p.0;
        for c in [r, g, b] {
            v.push(to_byte(a * c + (1.0 - a), false));
        }
    }
    v
}

/// The image as RGB in [0, 1] (transparency over white), for resampling.
pub fn rgb(img: &DynamicImage) -> ImageBuffer<image::Rgb<f32>, Vec<f32>> {
    let buf = img.to_rgba32f();
    let mut v = Vec::with_capacity(buf.width() as usize * buf.height() as usize * 3);
    for p in buf.pixels() {
        let [r, g, b, a] = p.0;
        v.extend([r, g, b].map(|c| a * c + (1.0 - a)));
    }
    ImageBuffer::from_raw(buf.width(), buf.height(), v).expect("three values per pixel")
}

/// Bytes of RGB pixels in [0, 1], interleaved, inverted if asked.
pub fn rgb_bytes(rgb: &ImageBuffer<image::Rgb<f32>, Vec<f32>>, invert: bool) -> Vec<u8> {
    rgb.as_raw().iter().map(|&v| to_byte(v, invert)).collect()
}

/// The rule, pixel by pixel, for gray, gray + alpha, RGB and RGBA pixels of any depth.
fn gray_values<P>(buf: &ImageBuffer<P, Vec<P::Subpixel>>) -> impl Iterator<Item = f32> + '_
where
    P: Pixel,
    P::Subpixel: Into<f32>,
{
    let max: f32 = <P::Subpixel as Primitive>::DEFAULT_MAX_VALUE.into();
    // Rec. 709 luma, composited over white by coverage `a`.
    let luma = |r: f32, g: f32, b: f32| 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let over_white = |v: f32, a: f32| a * v + (1.0 - a);
    buf.pixels().map(move |p| {
        let ch = p.channels();
        let c = |i: usize| ch[i].into() / max;
        match ch.len() {
            1 => c(0),
            2 => over_white(c(0), c(1)),
            3 => luma(c(0), c(1), c(2)),
            _ => over_white(luma(c(0), c(1), c(2)), c(3)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Rgb, RgbImage, Rgba, RgbaImage};

    /// Through both paths, which must agree.
    fn bytes(img: impl Into<DynamicImage>) -> Vec<u8> {
        let img = img.into();
        let via_f32 = gray_bytes(&gray(&img), false);
        assert_eq!(gray_u8(&img), via_f32);
        via_f32
    }

    #[test]
    fn gray_is_unchanged_and_colour_takes_luma() {
        let px: Vec<u8> = (0..=255u8).collect();
        assert_eq!(bytes(GrayImage::from_raw(16, 16, px.clone()).unwrap()), px);
        // Rec. 709: red 0.2126, green 0.7152; 16-bit the same.
        assert_eq!(bytes(RgbImage::from_pixel(1, 1, Rgb([255, 0, 0]))), [54]);
        let red16 = ImageBuffer::from_pixel(1, 1, Rgb([u16::MAX, 0, 0]));
        assert_eq!(bytes(DynamicImage::ImageRgb16(red16)), [54]);
        assert_eq!(bytes(RgbImage::from_pixel(1, 1, Rgb([0, 255, 0]))), [182]);
        let white = RgbImage::from_pixel(1, 1, Rgb([255, 255, 255]));
        assert_eq!(gray_bytes(&gray(&white.into()), true), [0]);
    }

    /// Transparency is composited over white whatever colour hides under it; half-transparent
    /// black is mid-gray.
    #[test]
    fn transparent_pixels_are_white() {
        for hidden in [[0, 0, 0, 0], [255, 0, 0, 0], [255, 255, 255, 0]] {
            assert_eq!(bytes(RgbaImage::from_pixel(1, 1, Rgba(hidden))), [255]);
        }
        assert_eq!(
            bytes(RgbaImage::from_pixel(1, 1, Rgba([0, 0, 0, 255]))),
            [0]
        );
        assert_eq!(
            bytes(RgbaImage::from_pixel(1, 1, Rgba([0, 0, 0, 128]))),
            [127]
        );
    }
}
