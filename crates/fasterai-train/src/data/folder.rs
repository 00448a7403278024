//! A folder of images, one sub-folder per class (`DIR/cat/1.png`, `DIR/dog/2.jpg`, …), for the
//! user's own data. Images are decoded as RGB and resized to one size.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, ImageSet, Result};

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| super::io_error(dir, source))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|source| super::io_error(dir, source))?;
    paths.sort();
    Ok(paths)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The class names of `dir`: its sub-folders, sorted.
pub(crate) fn class_folders(dir: &Path) -> Result<Vec<String>> {
    Ok(list(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect())
}

/// Reads every PNG/JPEG under `dir/<class>/` for `classes` (label = position in `classes`),
/// resized to `size` (`[H, W]`; the first image's size when `None`).
pub fn read_image_folder(
    dir: &Path,
    classes: &[String],
    size: Option<[usize; 2]>,
) -> Result<ImageSet> {
    if classes.is_empty() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: "an image folder needs one sub-folder per class".into(),
        });
    }
    let mut size = size;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            return Err(DataError::Missing {
                path: class_dir,
                hint: format!("every split needs the same class folders: {classes:?}"),
            });
        }
        for path in list(&class_dir)?.into_iter().filter(|p| is_image(p)) {
            let img = image::open(&path)
                .map_err(|e| DataError::Format {
                    path: path.clone(),
                    reason: format!("cannot decode image: {e}"),
                })?
                .to_rgb8();
            let [h, w] = *size.get_or_insert([img.height() as usize, img.width() as usize]);
            let img = if [img.height() as usize, img.width() as usize] == [h, w] {
                img
            } else {
                image::imageops::resize(&img, w as u32, h as u32, FilterType::Triangle)
            };
            // HWC → CHW.
            let raw = img.into_raw();
            for c in 0..3 {
                pixels.extend(raw.iter().skip(c).step_by(3));
            }
            labels.push(u8::try_from(label).map_err(|_| {
                DataError::Spec(format!(
                    "{} classes: at most 256 are supported",
                    classes.len()
                ))
            })?);
        }
    }
    if labels.is_empty() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: "no .png/.jpg/.jpeg images in the class folders".into(),
        });
    }
    let [h, w] = size.expect("set by the first image");
    ImageSet::new(pixels, labels, [3, h, w], classes.to_vec())
}
