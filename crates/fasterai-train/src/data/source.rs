//! `--data KIND:DIR`: which format, where, and the train/validation split it implies.

use std::path::PathBuf;
use std::str::FromStr;

use super::folder::class_folders;
use super::{
    DataError, ImageSet, Normalize, Result, find_file, read_cifar10, read_idx, read_image_folder,
    synthetic,
};

/// The data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// CIFAR-10 binary batches (`data_batch_N.bin`, `test_batch.bin`, raw or `.gz`).
    Cifar10,
    /// Fashion-MNIST in IDX (`train-images-idx3-ubyte`, …, raw or `.gz`).
    FashionMnist,
    /// MNIST in IDX (same file names as Fashion-MNIST).
    Mnist,
    /// One sub-folder per class of PNG/JPEG images; `train/` and `valid/` (or `val/`, `test/`)
    /// sub-folders when the split is given, else every fifth image of each class validates.
    Folder,
    /// Generated images ([`synthetic`]), 3×32×32, 10 classes; no files.
    Synthetic,
}

/// Where the data is, and which files make each split.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    /// Format.
    pub kind: DataKind,
    /// Folder holding the files (unused for [`DataKind::Synthetic`]).
    pub dir: PathBuf,
    /// CIFAR-10 files to train on (default: every `data_batch_N` present).
    pub train_files: Vec<String>,
    /// CIFAR-10 files to validate on (default: `test_batch`).
    pub valid_files: Vec<String>,
    /// Training images of the synthetic set (its validation set is a quarter of that).
    pub synthetic_size: usize,
}

/// The two splits and the normalisation that goes with the data.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training images.
    pub train: ImageSet,
    /// Validation images.
    pub valid: ImageSet,
    /// Normalisation statistics for this data kind.
    pub normalize: Normalize,
}

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

impl FromStr for DataSource {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, dir) = s.split_once(':').unwrap_or((s, ""));
        let kind = match kind {
            "cifar10" => DataKind::Cifar10,
            "fashion-mnist" => DataKind::FashionMnist,
            "mnist" => DataKind::Mnist,
            "folder" => DataKind::Folder,
            "synthetic" => DataKind::Synthetic,
            other => {
                return Err(DataError::Spec(format!(
                    "unknown data kind `{other}`: expected cifar10:DIR, fashion-mnist:DIR, \
                     mnist:DIR, folder:DIR or synthetic[:N]"
                )));
            }
        };
        let mut source = DataSource {
            kind,
            dir: PathBuf::from(dir),
            train_files: Vec::new(),
            valid_files: Vec::new(),
            synthetic_size: 2000,
        };
        if kind == DataKind::Synthetic {
            if !dir.is_empty() {
                source.synthetic_size = dir.parse().map_err(|_| {
                    DataError::Spec(format!("synthetic:N needs a number of images, got `{dir}`"))
                })?;
            }
        } else if dir.is_empty() {
            return Err(DataError::Spec(format!(
                "`{s}` names no folder: use {s}:DIR"
            )));
        }
        Ok(source)
    }
}

impl DataSource {
    /// Reads both splits.
    pub fn load(&self) -> Result<Splits> {
        if self.kind != DataKind::Synthetic && !self.dir.is_dir() {
            return Err(DataError::Missing {
                path: self.dir.clone(),
                hint: "the data folder does not exist".into(),
            });
        }
        match self.kind {
            DataKind::Cifar10 => self.cifar10(),
            DataKind::FashionMnist => self.idx(&FASHION_CLASSES, 0.2860, 0.3530),
            DataKind::Mnist => self.idx(&DIGITS, 0.1307, 0.3081),
            DataKind::Folder => self.folder(),
            DataKind::Synthetic => {
                let n = self.synthetic_size.max(10);
                Ok(Splits {
                    train: synthetic(n, 10, [3, 32, 32], 1)?,
                    valid: synthetic(n / 4, 10, [3, 32, 32], 2)?,
                    normalize: Normalize::uniform(3, 0.5, 0.25),
                })
            }
        }
    }

    fn need(&self, name: &str, bin: bool) -> Result<PathBuf> {
        find_file(&self.dir, name, bin).ok_or_else(|| DataError::Missing {
            path: self.dir.join(name),
            hint: format!(
                "looked for `{name}` raw and gzipped in {}",
                self.dir.display()
            ),
        })
    }

    fn cifar10(&self) -> Result<Splits> {
        let read_all = |names: &[String]| -> Result<ImageSet> {
            let parts = names
                .iter()
                .map(|n| read_cifar10(&self.need(n, true)?))
                .collect::<Result<Vec<_>>>()?;
            ImageSet::concat(parts)
        };
        let train_names: Vec<String> = if self.train_files.is_empty() {
            (1..=5)
                .map(|i| format!("data_batch_{i}"))
                .filter(|n| find_file(&self.dir, n, true).is_some())
                .collect()
        } else {
            self.train_files.clone()
        };
        if train_names.is_empty() {
            return Err(DataError::Missing {
                path: self.dir.join("data_batch_1.bin"),
                hint: "a CIFAR-10 folder holds data_batch_1..5.bin (raw or .gz)".into(),
            });
        }
        let valid_names = if self.valid_files.is_empty() {
            vec!["test_batch".to_string()]
        } else {
            self.valid_files.clone()
        };
        Ok(Splits {
            train: read_all(&train_names)?,
            valid: read_all(&valid_names)?,
            normalize: Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
        })
    }

    fn idx(&self, classes: &[&str], mean: f32, std: f32) -> Result<Splits> {
        let split = |prefix: &str| -> Result<ImageSet> {
            read_idx(
                &self.need(&format!("{prefix}-images-idx3-ubyte"), false)?,
                &self.need(&format!("{prefix}-labels-idx1-ubyte"), false)?,
                classes,
            )
        };
        Ok(Splits {
            train: split("train")?,
            valid: split("t10k")?,
            normalize: Normalize::uniform(1, mean, std),
        })
    }

    fn folder(&self) -> Result<Splits> {
        let normalize = Normalize {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        };
        let train_dir = self.dir.join("train");
        let valid_dir = ["valid", "val", "test"]
            .iter()
            .map(|n| self.dir.join(n))
            .find(|p| p.is_dir());
        if let (true, Some(valid_dir)) = (train_dir.is_dir(), valid_dir) {
            let classes = class_folders(&train_dir)?;
            let train = read_image_folder(&train_dir, &classes, None)?;
            let [_, h, w] = train.shape();
            let valid = read_image_folder(&valid_dir, &classes, Some([h, w]))?;
            return Ok(Splits {
                train,
                valid,
                normalize,
            });
        }
        let all = read_image_folder(&self.dir, &class_folders(&self.dir)?, None)?;
        let (train, valid) = split_every(&all, 5);
        Ok(Splits {
            train,
            valid,
            normalize,
        })
    }
}

/// Every `n`-th image of each class to the second set, the rest to the first.
fn split_every(all: &ImageSet, n: usize) -> (ImageSet, ImageSet) {
    let mut seen = vec![0usize; all.classes().len()];
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (i, &label) in all.labels().iter().enumerate() {
        seen[label as usize] += 1;
        if seen[label as usize].is_multiple_of(n) {
            second.push(i);
        } else {
            first.push(i);
        }
    }
    (all.subset(&first), all.subset(&second))
}
