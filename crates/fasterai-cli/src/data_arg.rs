//! The `--data KIND:DIR` argument shared by train, eval and distill.

use anyhow::{Context, Result};
use fasterai::burn::tensor::Device;
use fasterai::train::data::{Batch, DataSource, Splits};

/// Which data to use.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// cifar10:DIR, fashion-mnist:DIR, mnist:DIR, folder:DIR (one sub-folder per class) or
    /// synthetic[:N] (generated, no files). DIR holds the standard file names, raw or .gz.
    #[arg(long, value_name = "KIND:DIR")]
    pub data: String,
    /// CIFAR-10 files to train on [default: every data_batch_N in DIR].
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub train_files: Vec<String>,
    /// CIFAR-10 files to validate on [default: test_batch].
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub valid_files: Vec<String>,
    /// Use only the first N training images (quick runs).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl DataArgs {
    /// Reads both splits.
    pub fn load(&self) -> Result<Splits> {
        let mut source: DataSource = self.data.parse()?;
        source.train_files = self.train_files.clone();
        source.valid_files = self.valid_files.clone();
        let mut splits = source
            .load()
            .with_context(|| format!("loading --data {}", self.data))?;
        if let Some(n) = self.limit {
            splits.train = splits.train.take(n);
        }
        Ok(splits)
    }
}

/// A calibration batch: the first `n` training images of `data` (`KIND:DIR`), normalised as
/// for training.
pub fn calibration_batch(
    data: &str,
    train_files: &[String],
    n: usize,
    device: &Device,
) -> Result<Batch> {
    // Only the training split is read from: naming the training files as the validation ones
    // too spares a folder without `test_batch`.
    let splits = DataArgs {
        data: data.to_string(),
        train_files: train_files.to_vec(),
        valid_files: train_files.to_vec(),
        limit: Some(n),
    }
    .load()?;
    splits
        .train
        .batches(n, &splits.normalize, device)
        .next()
        .context("the calibration data has no images")
}
