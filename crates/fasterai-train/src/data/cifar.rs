//! CIFAR-10's binary batches: records of one label byte and 3,072 pixel bytes (the red, green
//! and blue 32×32 planes), no header; raw or gzipped.

use std::path::Path;

use super::{DataError, ImageSet, Result, read_bytes};

const RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10's class names, label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Reads one CIFAR-10 binary batch file (`data_batch_1.bin`, `test_batch.bin`, or `.gz`).
pub fn read_cifar10(path: &Path) -> Result<ImageSet> {
    let bytes = read_bytes(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or \
                 not a CIFAR-10 binary batch)",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for (index, record) in bytes.chunks_exact(RECORD).enumerate() {
        if record[0] as usize >= CIFAR10_CLASSES.len() {
            return Err(DataError::Label {
                path: path.to_path_buf(),
                index,
                label: record[0] as usize,
                classes: CIFAR10_CLASSES.len(),
            });
        }
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    let classes = CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect();
    ImageSet::new(pixels, labels, [3, 32, 32], classes)
}
