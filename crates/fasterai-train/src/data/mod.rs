//! Image-classification data: the standard file formats, a generated set for demos and quick
//! tests, and batching with normalisation and augmentation.
//!
//! Images are kept as bytes (`[N, C, H, W]`, 0–255) and turned into normalised float tensors
//! one batch at a time, so CIFAR-10's 50,000 images take 150 MB instead of 600.

mod cifar;
mod folder;
mod idx;
mod loader;
mod source;
mod synthetic;

pub use cifar::read_cifar10;
pub use folder::read_image_folder;
pub use idx::read_idx;
pub use loader::{Augment, Batch, Batches, Normalize};
pub use source::{DataKind, DataSource, Splits};
pub use synthetic::synthetic;

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or folder the data kind needs is not there.
    #[error("{path}: not found ({hint})")]
    Missing {
        /// What was looked for.
        path: PathBuf,
        /// What the data kind expects.
        hint: String,
    },
    /// The file is not in the expected format (magic number, size, truncation).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A label outside `0..classes`.
    #[error("{path}: record {index} has label {label}, but there are {classes} classes")]
    Label {
        /// The file.
        path: PathBuf,
        /// Record number.
        index: usize,
        /// The label read.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A data specification that cannot be understood.
    #[error("{0}")]
    Spec(String),
    /// The operating system refused a read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias for [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Labelled images of one shape, stored as bytes `[N, C, H, W]`.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    shape: [usize; 3],
    classes: Vec<String>,
}

impl ImageSet {
    /// Checks that `pixels` holds `labels.len()` images of `shape` and that every label names
    /// one of `classes`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> Result<Self> {
        let per_image: usize = shape.iter().product();
        if per_image == 0 || pixels.len() != labels.len() * per_image {
            return Err(DataError::Spec(format!(
                "{} bytes of pixels do not make {} images of shape {shape:?}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes.len())
        {
            return Err(DataError::Label {
                path: PathBuf::from("<memory>"),
                index,
                label: label as usize,
                classes: classes.len(),
            });
        }
        Ok(Self {
            pixels,
            labels,
            shape,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Class names, label `i` at index `i`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The bytes of image `i` (`C·H·W`).
    pub fn image(&self, i: usize) -> &[u8] {
        let n: usize = self.shape.iter().product();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.image(0).len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Self {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }

    /// The first `n` images (all of them when there are fewer).
    pub fn take(&self, n: usize) -> Self {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    /// All images of `parts` one after the other; shapes and classes must agree.
    pub fn concat(parts: Vec<ImageSet>) -> Result<Self> {
        let mut parts = parts.into_iter();
        let mut all = parts
            .next()
            .ok_or_else(|| DataError::Spec("no image sets to join".into()))?;
        for part in parts {
            if part.shape != all.shape || part.classes != all.classes {
                return Err(DataError::Spec(format!(
                    "cannot join images of shape {:?} ({} classes) with {:?} ({} classes)",
                    part.shape,
                    part.classes.len(),
                    all.shape,
                    all.classes.len()
                )));
            }
            all.pixels.extend(part.pixels);
            all.labels.extend(part.labels);
        }
        Ok(all)
    }
}

/// The bytes of `path`, gunzipped when they start with gzip's magic number.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|source| io_error(path, source))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                reason: format!("corrupted gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> DataError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DataError::Missing {
            path: path.to_path_buf(),
            hint: "no such file".into(),
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `dir/name` as it exists: raw or with `.gz` (and `.bin`/`.bin.gz` when `bin`).
pub(crate) fn find_file(dir: &Path, name: &str, bin: bool) -> Option<PathBuf> {
    let mut candidates = vec![name.to_string(), format!("{name}.gz")];
    if bin && !name.ends_with(".bin") {
        candidates.extend([format!("{name}.bin"), format!("{name}.bin.gz")]);
    }
    candidates
        .into_iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
}
