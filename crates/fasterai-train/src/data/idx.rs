//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic, then one `u32` per
//! dimension) followed by unsigned bytes; raw or gzipped.

use std::path::Path;

use super::{DataError, ImageSet, Result, read_bytes};

const IMAGES_MAGIC: u32 = 0x0000_0803; // u8 data, 3 dimensions
const LABELS_MAGIC: u32 = 0x0000_0801; // u8 data, 1 dimension

/// `(dimensions, data)` of an IDX file whose magic must be `magic`.
fn read(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_bytes(path)?;
    let format = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| format("too short for an IDX header".into()))?;
    if found != magic {
        return Err(format(format!(
            "IDX magic number {found:#010x}, expected {magic:#010x} ({})",
            if magic == IMAGES_MAGIC {
                "an images file"
            } else {
                "a labels file"
            }
        )));
    }
    let rank = (magic & 0xff) as usize;
    let dims = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format("header cut short".into()))?;
    let header = 4 * (rank + 1);
    let expected: usize = dims.iter().product();
    let body = bytes.len() - header.min(bytes.len());
    if body != expected {
        return Err(format(format!(
            "header announces {dims:?} = {expected} bytes of data but the file holds {body} \
             (truncated or padded)"
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Reads an IDX images file and its labels file into grayscale images `[1, rows, cols]` with
/// classes `names` (MNIST: the digits; Fashion-MNIST: the garment names).
pub fn read_idx(images: &Path, labels: &Path, names: &[&str]) -> Result<ImageSet> {
    let (dims, pixels) = read(images, IMAGES_MAGIC)?;
    let (label_dims, labels_data) = read(labels, LABELS_MAGIC)?;
    if label_dims[0] != dims[0] {
        return Err(DataError::Format {
            path: labels.to_path_buf(),
            reason: format!(
                "{} labels for {} images in {}",
                label_dims[0],
                dims[0],
                images.display()
            ),
        });
    }
    if let Some((index, &label)) = labels_data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= names.len())
    {
        return Err(DataError::Label {
            path: labels.to_path_buf(),
            index,
            label: label as usize,
            classes: names.len(),
        });
    }
    let classes = names.iter().map(|c| c.to_string()).collect();
    ImageSet::new(pixels, labels_data, [1, dims[1], dims[2]], classes)
}
