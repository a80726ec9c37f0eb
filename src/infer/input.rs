//! Inputs for `predict`: image files of any size and colour mode, and samples of an IDX file,
//! both turned into `u8` pixels of the model's input shape.
//!
//! Pixels stay `u8` so that they reach the model through the model's `Scale` in the same
//! gather op as the training data did.

use crate::data::{idx, image_file};
use crate::model::ModelSpec;
use crate::{Error, Result};
use image::DynamicImage;
use image::imageops::{self, FilterType};
use std::ops::Range;
use std::path::Path;

/// `(height, width)` of the model's image inputs, or an error for a model trained on
/// something else (the synthetic sets have a `(1, features)` shape).
pub fn image_shape(spec: &ModelSpec) -> Result<(usize, usize)> {
    let (h, w) = spec.input_shape;
    if h > 1 && h * w * spec.channels == spec.inputs() {
        Ok((h, w))
    } else {
        Err(Error::Config(format!(
            "the model takes {} feature{} per row, not images{}; predict works on image models",
            spec.inputs(),
            if spec.inputs() == 1 { "" } else { "s" },
            spec.data
                .as_deref()
                .map(|d| format!(" (it was trained on {d})"))
                .unwrap_or_default()
        )))
    }
}

/// Reads a PNG or JPEG and returns its pixels as the model sees them: `height * width`
/// grayscale bytes, row by row, with 0 the background of white-on-black digits. The file is
/// decoded, bounded, by the image-folder reader's decoder.
pub fn read_image(path: &Path, shape: (usize, usize), invert: bool) -> Result<Vec<u8>> {
    let img = image_file::decode(path)?;
    Ok(image_pixels(&img, shape, invert))
}

/// [`read_image`] for a model of `channels` channels: gray (1) or RGB (3, interleaved), as the
/// image-folder reader reads them for `--color gray|rgb`.
pub fn read_image_as(
    path: &Path,
    shape: (usize, usize),
    channels: usize,
    invert: bool,
) -> Result<Vec<u8>> {
    let img = image_file::decode(path)?;
    if channels != 3 {
        return Ok(image_pixels(&img, shape, invert));
    }
    let rgb = image_file::rgb(&img);
    let (w32, h32) = (shape.1 as u32, shape.0 as u32);
    let sized = if rgb.dimensions() == (w32, h32) {
        rgb
    } else {
        imageops::resize(&rgb, w32, h32, FilterType::Triangle)
    };
    Ok(image_file::rgb_bytes(&sized, invert))
}

/// Converts an image of any colour mode and bit depth to grayscale as the image-folder reader
/// does (composited over white where it has transparency, as a viewer shows it), resizes it to
/// `shape` (stretching; no resampling when it already has that size, so a saved data set
/// sample comes back unchanged), and inverts it if asked (for dark strokes on a light
/// background).
pub fn image_pixels(img: &DynamicImage, (h, w): (usize, usize), invert: bool) -> Vec<u8> {
    let gray = image_file::gray(img);
    let (w32, h32) = (w as u32, h as u32);
    let sized = if gray.dimensions() == (w32, h32) {
        gray
    } else {
        // Triangle (bilinear) widens its support when shrinking, so a large photo is averaged
        // rather than sampled, and it never overshoots [0, 1].
        imageops::resize(&gray, w32, h32, FilterType::Triangle)
    };
    image_file::gray_bytes(&sized, invert)
}

/// A sample range as given on the command line: `A..B` (B excluded), `A..=B`, `A..`, `..B`
/// or a single index `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRange {
    /// The first index selected; `None` for 0.
    pub start: Option<usize>,
    /// The first index not selected (exclusive end); `None` for the end of the file.
    pub end: Option<usize>,
}

impl std::str::FromStr for SampleRange {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let num = |t: &str| -> std::result::Result<usize, String> {
            t.trim().parse::<usize>().map_err(|_| {
                format!("{s:?} is not a range: use A..B (B excluded), A..=B, A.., ..B or N")
            })
        };
        let opt = |t: &str| {
            if t.trim().is_empty() {
                Ok(None)
            } else {
                num(t).map(Some)
            }
        };
        if let Some((a, b)) = s.split_once("..=") {
            let end = num(b)?
                .checked_add(1)
                .ok_or_else(|| format!("{s:?}: the end is too large"))?;
            Ok(SampleRange {
                start: opt(a)?,
                end: Some(end),
            })
        } else if let Some((a, b)) = s.split_once("..") {
            Ok(SampleRange {
                start: opt(a)?,
                end: opt(b)?,
            })
        } else {
            let n = num(s)?;
            Ok(SampleRange {
                start: Some(n),
                end: Some(n + 1),
            })
        }
    }
}

impl SampleRange {
    /// Every sample (`..`).
    pub const ALL: SampleRange = SampleRange {
        start: None,
        end: None,
    };

    /// The indices this range selects in a file of `count` samples.
    pub fn resolve(self, count: usize) -> std::result::Result<Range<usize>, String> {
        let start = self.start.unwrap_or(0);
        let end = self.end.unwrap_or(count);
        if start >= end {
            return Err(format!("the range {start}..{end} is empty"));
        }
        if end > count {
            return Err(format!(
                "the range {start}..{end} is out of bounds: the file has {count} images (0..{count})"
            ));
        }
        Ok(start..end)
    }
}

/// Samples `range` of an IDX image file (raw or gzip), checked against the model's shape:
/// their pixels, (samples, height * width), and the resolved indices.
pub fn read_idx_samples(
    path: &Path,
    range: SampleRange,
    shape: (usize, usize),
    invert: bool,
) -> Result<(Vec<u8>, Range<usize>)> {
    let images = idx::read_images(path)?;
    if (images.height, images.width) != shape {
        return Err(Error::data(
            path,
            format!(
                "the images are {}x{} but the model takes {}x{}",
                images.height, images.width, shape.0, shape.1
            ),
        ));
    }
    let range = range
        .resolve(images.count)
        .map_err(|msg| Error::data(path, msg))?;
    let size = shape.0 * shape.1;
    let mut pixels = images.pixels[range.start * size..range.end * size].to_vec();
    if invert {
        for p in &mut pixels {
            *p = 255 - *p;
        }
    }
    Ok((pixels, range))
}

/// Labels `range` of an IDX label file, to show beside the predictions.
pub fn read_idx_labels(path: &Path, range: &Range<usize>) -> Result<Vec<u8>> {
    let labels = idx::read_labels(path)?;
    labels
        .get(range.clone())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "has {} labels, fewer than the images' range {}..{} needs",
                    labels.len(),
                    range.start,
                    range.end
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |s: &str| s.parse::<SampleRange>().unwrap();
        assert_eq!(r("3..7").resolve(10), Ok(3..7));
        assert_eq!(r("3..=7").resolve(10), Ok(3..8));
        assert_eq!(r("5").resolve(10), Ok(5..6));
        assert_eq!(r("8..").resolve(10), Ok(8..10));
        assert_eq!(r("..2").resolve(10), Ok(0..2));
        assert_eq!(SampleRange::ALL.resolve(4), Ok(0..4));
        assert!(r("5..5").resolve(10).is_err());
        assert!(
            r("9..11")
                .resolve(10)
                .unwrap_err()
                .contains("out of bounds")
        );
        assert!(r("10").resolve(10).is_err());
        assert!("a..b".parse::<SampleRange>().is_err());
        assert!("-1..3".parse::<SampleRange>().is_err());
        assert!("".parse::<SampleRange>().is_err());
    }

    #[test]
    fn same_size_grayscale_is_unchanged() {
        let px: Vec<u8> = (0..=255u8).cycle().take(28 * 28).collect();
        let img = GrayImage::from_raw(28, 28, px.clone()).unwrap();
        assert_eq!(image_pixels(&img.into(), (28, 28), false), px);
    }

    #[test]
    fn colour_alpha_and_inversion() {
        // Pure white RGB becomes 255; inverted, 0.
        let white = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
        let d: DynamicImage = white.into();
        assert!(image_pixels(&d, (4, 4), false).iter().all(|&p| p == 255));
        assert!(image_pixels(&d, (4, 4), true).iter().all(|&p| p == 0));
        // Fully transparent pixels are white (the background a viewer shows).
        let clear = RgbaImage::from_pixel(5, 5, Rgba([0, 0, 0, 0]));
        assert!(
            image_pixels(&clear.into(), (5, 5), false)
                .iter()
                .all(|&p| p == 255)
        );
        // Red has Rec. 709 luma 0.2126.
        let red = RgbImage::from_pixel(3, 3, Rgb([255, 0, 0]));
        assert!(
            image_pixels(&red.into(), (3, 3), false)
                .iter()
                .all(|&p| p == 54)
        );
    }

    #[test]
    fn resizing_keeps_a_bright_square_bright() {
        // A 56x56 image with a bright centre square shrinks to 28x28 with it in the centre.
        let img = GrayImage::from_fn(56, 56, |x, y| {
            Luma([if (16..40).contains(&x) && (16..40).contains(&y) {
                255
            } else {
                0
            }])
        });
        let px = image_pixels(&img.into(), (28, 28), false);
        assert_eq!(px.len(), 28 * 28);
        assert_eq!(px[14 * 28 + 14], 255);
        assert_eq!(px[0], 0);
    }
}
