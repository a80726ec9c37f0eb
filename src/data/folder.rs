//! Reader for image folders laid out as `ROOT/<split>/<label>/*.png|jpg|jpeg`.
//!
//! Every image becomes one row of `height * width` gray pixels (or, read as RGB, `height *
//! width * 3` bytes, channels interleaved), decoded and converted as
//! `predict` does it ([`super::image_file`]: luma weights, transparency over white). Class folders and files are visited in sorted order, so
//! the same folder always gives the same data set, row for row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Color, Dataset, Features, Targets, image_file};
use crate::{Error, Result};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Reads one split folder (`dir/<label>/*.png|jpg|jpeg`) into a [`Dataset`] with `u8`
/// features, and returns it with the class names, index = label.
///
/// Class folders are sorted numerically when every name is an integer (so `10` follows `9`),
/// otherwise lexicographically. With `class_names` (the training split's list) the same mapping
/// is used, and a class folder that is not in it is an error; the returned names are then
/// `class_names` itself. Rows are grouped by class, in file-name order.
pub fn read_split(
    dir: &Path,
    class_names: Option<&[String]>,
    color: Color,
) -> Result<(Dataset, Vec<String>)> {
    let found = class_folders(dir)?;
    let names: Vec<String> = match class_names {
        Some(names) => names.to_vec(),
        None => found.iter().map(|(name, _)| name.clone()).collect(),
    };
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    // The first image read fixes the size; its path is kept to name it in a mismatch.
    let mut shape: Option<((usize, usize), PathBuf)> = None;
    for (name, class_dir) in &found {
        let Some(&label) = index.get(name.as_str()) else {
            return Err(Error::data(
                class_dir,
                format!(
                    "class folder {name:?} is not one of the training split's classes ({}); \
                     give both splits the same class folders",
                    names.join(", ")
                ),
            ));
        };
        let files = image_files(class_dir)?;
        for file in files {
            let img = image_file::decode(&file)?;
            let size = (img.height() as usize, img.width() as usize);
            match &shape {
                None => shape = Some((size, file.clone())),
                Some((first, first_path)) if *first != size => {
                    return Err(Error::data(
                        &file,
                        format!(
                            "image is {}x{} (height x width) but {} is {}x{}; all images must \
                             have the same size: resize them to one size",
                            size.0,
                            size.1,
                            first_path.display(),
                            first.0,
                            first.1
                        ),
                    ));
                }
                Some(_) => {}
            }
            match color {
                Color::Gray => pixels.extend(image_file::gray_u8(&img)),
                Color::Rgb => pixels.extend(image_file::rgb_u8(&img)),
            }
            labels.push(label);
        }
    }
    // `image_files` refuses empty class folders and `class_folders` refuses a split without
    // any, so at least one image was read.
    let Some(((height, width), _)) = shape else {
        return Err(Error::data(dir, "no images found"));
    };
    let rows = labels.len();
    let dataset = Dataset {
        rows,
        dim: height * width * color.channels(),
        image_shape: (height, width),
        features: Features::U8(pixels),
        targets: Targets::Classes {
            labels,
            num_classes: names.len(),
        },
    };
    Ok((dataset, names))
}

/// The class subfolders of `dir`, sorted, as `(name, path)`.
fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut classes = Vec::new();
    for path in visible_entries(dir)? {
        // Loose files beside the class folders (a README, a labels.csv) are not data; only
        // folders are classes.
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::data(&path, "class folder name is not valid UTF-8"))?
            .to_string();
        classes.push((name, path));
    }
    if classes.is_empty() {
        return Err(Error::data(
            dir,
            "no class subfolders; expected one folder per class, e.g. DIR/cat/*.png",
        ));
    }
    let numeric: Option<Vec<u64>> = classes.iter().map(|(n, _)| n.parse().ok()).collect();
    match numeric {
        // Sort by value so "10" comes after "9"; ties ("1" and "01") fall back to the name.
        Some(values) => {
            let mut keyed: Vec<_> = values.into_iter().zip(classes).collect();
            keyed.sort_by(|(x, (a, _)), (y, (b, _))| x.cmp(y).then_with(|| a.cmp(b)));
            Ok(keyed.into_iter().map(|(_, class)| class).collect())
        }
        None => {
            classes.sort();
            Ok(classes)
        }
    }
}

/// The image files of one class folder, sorted by name. Anything else is an error, since a
/// stray file usually means the folder is not laid out as we think.
fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in visible_entries(class_dir)? {
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
        if path.is_dir() {
            return Err(Error::data(
                &path,
                "unexpected folder inside a class folder (expected only .png, .jpg or .jpeg \
                 files); move it out",
            ));
        }
        if !is_image {
            return Err(Error::data(
                &path,
                "not an image file (expected only .png, .jpg or .jpeg in class folders); move \
                 it out",
            ));
        }
        files.push(path);
    }
    if files.is_empty() {
        return Err(Error::data(
            class_dir,
            "empty class folder: no .png, .jpg or .jpeg files; add images or remove the folder",
        ));
    }
    files.sort();
    Ok(files)
}

/// Entries of `dir` except hidden ones (`.DS_Store`, editor swap files), which tools leave
/// behind and nobody means as data.
fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        paths.push(entry.path());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_gray(path: &Path, h: u32, w: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn numeric_class_names_sort_by_value() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, c) in ["10", "2", "9"].iter().enumerate() {
            save_gray(&tmp.path().join(c).join("a.png"), 2, 3, i as u8);
        }
        let (ds, names) = read_split(tmp.path(), None, Color::Gray).unwrap();
        assert_eq!(names, ["2", "9", "10"]);
        assert_eq!(ds.image_shape, (2, 3));
        assert_eq!(
            ds.targets,
            Targets::Classes {
                labels: vec![0, 1, 2],
                num_classes: 3
            }
        );
        // Rows follow the sorted classes: "2" (value 1), "9" (2), "10" (0).
        assert_eq!(
            ds.features,
            Features::U8([[1u8; 6], [2; 6], [0; 6]].concat())
        );
    }

    #[test]
    fn hidden_files_and_loose_files_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        save_gray(&tmp.path().join("b/x.png"), 1, 1, 5);
        std::fs::write(tmp.path().join("README"), "notes").unwrap();
        std::fs::write(tmp.path().join("b/.DS_Store"), "junk").unwrap();
        let (ds, names) = read_split(tmp.path(), None, Color::Gray).unwrap();
        assert_eq!((ds.rows, names), (1, vec!["b".to_string()]));
    }
}
