//! The state a run resumes from, written to a folder after every epoch: the training weights
//! (with their parameter ids, which key the optimiser's state), the optimiser's state (momenta,
//! Adam's moments), the callbacks' modules and optimisers (FitNet adapters) and state (masks,
//! schedule position), the model kept so far, and where the run stands (epochs, history).
//!
//! Every file is written atomically and carries its epoch in its name; `progress.json`,
//! written last, names the complete epoch. A run killed while saving resumes from the previous
//! epoch; files of other epochs are removed once the new one is complete.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use fasterai_core::graph::Graph;
use fasterai_core::io::{Arrays, read_arrays, write_arrays, write_atomic};
use serde::{Deserialize, Serialize};

use crate::learner::{EpochRecord, TrainConfig};
use crate::{Result, TrainError};

/// What a callback carries into a resumed run: JSON values and named float arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallbackState {
    /// Scalars and small values.
    pub values: serde_json::Value,
    /// Arrays by name.
    pub arrays: Arrays,
}

/// Where a run stands after a complete epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The settings the run was started with: a resumption must use the same.
    pub run: RunKey,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Records of the completed epochs.
    pub records: Vec<EpochRecord>,
    /// Best validation accuracy and its epoch.
    pub best: (f64, usize),
    /// Accuracy and epoch of the model kept so far (none before the first is kept).
    pub kept: Option<(f64, usize)>,
}

/// Settings that must not change between a run and its resumption (the learning-rate
/// schedule, the shuffling and the callbacks' schedules all depend on them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunKey {
    model: String,
    parameters: usize,
    train_images: usize,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
    optimizer: String,
    schedule: String,
    callbacks: usize,
}

impl RunKey {
    pub fn new(
        model: &str,
        net: &Graph,
        train_images: usize,
        config: &TrainConfig,
        callbacks: usize,
    ) -> Self {
        RunKey {
            model: model.to_string(),
            parameters: net.num_params(),
            train_images,
            epochs: config.epochs,
            batch_size: config.batch_size,
            lr: config.lr,
            seed: config.seed,
            optimizer: format!("{:?}", config.optimizer),
            schedule: format!("{:?}", config.schedule),
            callbacks,
        }
    }
}

/// Everything written after an epoch.
pub(crate) struct Snapshot<'a> {
    pub net: &'a Graph,
    pub optim: &'a ModuleOptimizer,
    /// Per callback: its trainable module and that module's optimiser.
    pub trainables: Vec<Option<(Graph, &'a ModuleOptimizer)>>,
    pub callbacks: Vec<CallbackState>,
    /// The kept model, when it changed in this epoch.
    pub kept: Option<&'a Graph>,
}

/// What a resumed run starts from.
pub(crate) struct Resumed {
    pub progress: Progress,
    pub net: Graph,
    pub optim: ModuleOptimizer,
    pub trainables: Vec<Option<(Graph, ModuleOptimizer)>>,
    pub callbacks: Vec<CallbackState>,
    /// The model kept so far (none when no epoch was complete).
    pub kept: Option<Graph>,
}

/// The modules a resumption loads into: fresh copies of what the run trains.
pub(crate) struct Templates {
    pub net: Graph,
    pub optim: ModuleOptimizer,
    pub trainables: Vec<Option<(Graph, ModuleOptimizer)>>,
    /// The model, on the plain device, for the kept weights.
    pub kept: Graph,
}

const PROGRESS: &str = "progress.json";

fn file(dir: &Path, stem: &str, epoch: usize, ext: &str) -> PathBuf {
    dir.join(format!("{stem}-{epoch}.{ext}"))
}

fn write_module(path: &Path, module: &Graph) -> Result<()> {
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| io(path, e))?;
    Ok(write_atomic(path, &bytes, true)?)
}

fn read_module(path: &Path, template: Graph) -> Result<Graph> {
    let record = ModuleRecord::from_bytes(read_bytes(path)?).map_err(|e| damaged(path, e))?;
    template
        .try_load_record(record)
        .map_err(|e| damaged(path, e))
}

fn write_optim(path: &Path, optim: &ModuleOptimizer) -> Result<()> {
    let bytes = optim.into_bytes().map_err(|e| io(path, e))?;
    Ok(write_atomic(path, &bytes, true)?)
}

fn read_optim(path: &Path, template: ModuleOptimizer) -> Result<ModuleOptimizer> {
    template
        .from_bytes(read_bytes(path)?)
        .map_err(|e| damaged(path, e))
}

fn read_bytes(path: &Path) -> Result<Bytes> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(Bytes::from_bytes_vec(bytes))
}

/// Writes the state after `progress.epochs_done` epochs, then removes other epochs' files.
pub(crate) fn save(dir: &Path, progress: &Progress, snapshot: &Snapshot<'_>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let epoch = progress.epochs_done;
    write_module(&file(dir, "net", epoch, "bpk"), snapshot.net)?;
    write_optim(&file(dir, "optim", epoch, "bpk"), snapshot.optim)?;
    for (i, trainable) in snapshot.trainables.iter().enumerate() {
        if let Some((module, optim)) = trainable {
            write_module(&file(dir, &format!("trainable{i}"), epoch, "bpk"), module)?;
            write_optim(&file(dir, &format!("trainopt{i}"), epoch, "bpk"), optim)?;
        }
    }
    for (i, state) in snapshot.callbacks.iter().enumerate() {
        let path = file(dir, &format!("callback{i}"), epoch, "safetensors");
        write_arrays(&path, &state.arrays, &state.values.to_string())?;
    }
    if let (Some(kept), Some((_, kept_epoch))) = (snapshot.kept, progress.kept) {
        write_module(&file(dir, "kept", kept_epoch, "bpk"), kept)?;
    }
    let json = serde_json::to_vec_pretty(progress).map_err(|e| io(dir, e))?;
    write_atomic(&dir.join(PROGRESS), &json, true)?;
    remove_stale(dir, epoch, progress.kept.map(|(_, e)| e));
    Ok(())
}

/// Removes state files of epochs other than the complete one (and kept models other than the
/// current). A file that cannot be removed only costs space.
fn remove_stale(dir: &Path, epoch: usize, kept_epoch: Option<usize>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((stem, rest)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let Some(Ok(n)) = rest.split('.').next().map(str::parse::<usize>) else {
            continue;
        };
        let ours = stem == "net"
            || stem == "optim"
            || stem == "kept"
            || ["trainable", "trainopt", "callback"].iter().any(|p| {
                stem.strip_prefix(p)
                    .is_some_and(|i| i.parse::<usize>().is_ok())
            });
        let current = if stem == "kept" {
            kept_epoch
        } else {
            Some(epoch)
        };
        if ours && Some(n) != current {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads the state in `dir`, if a run left one there; checks that it is this run's.
pub(crate) fn load(dir: &Path, key: &RunKey, templates: Templates) -> Result<Option<Resumed>> {
    let path = dir.join(PROGRESS);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let progress: Progress = serde_json::from_slice(&text).map_err(|e| damaged(&path, e))?;
    if &progress.run != key {
        return Err(TrainError::Config(format!(
            "cannot resume from {}: it holds another run ({:?}), not this one ({key:?}); use \
             the same model, data and settings, or delete the folder to start over",
            dir.display(),
            progress.run
        )));
    }
    let epoch = progress.epochs_done;
    let net = read_module(&file(dir, "net", epoch, "bpk"), templates.net)?;
    let optim = read_optim(&file(dir, "optim", epoch, "bpk"), templates.optim)?;
    let trainables = templates
        .trainables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.map(|(module, optim)| {
                Ok((
                    read_module(&file(dir, &format!("trainable{i}"), epoch, "bpk"), module)?,
                    read_optim(&file(dir, &format!("trainopt{i}"), epoch, "bpk"), optim)?,
                ))
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let callbacks = (0..key.callbacks)
        .map(|i| {
            let path = file(dir, &format!("callback{i}"), epoch, "safetensors");
            let (arrays, json) = read_arrays(&path)?;
            let values = serde_json::from_str(&json).map_err(|e| damaged(&path, e))?;
            Ok(CallbackState { values, arrays })
        })
        .collect::<Result<Vec<_>>>()?;
    let kept = match progress.kept {
        Some((_, kept_epoch)) => Some(read_module(
            &file(dir, "kept", kept_epoch, "bpk"),
            templates.kept,
        )?),
        None => None,
    };
    Ok(Some(Resumed {
        progress,
        net,
        optim,
        trainables,
        callbacks,
        kept,
    }))
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Core(fasterai_core::CoreError::io(path, e))
}

fn damaged(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!(
        "cannot resume: {} is damaged ({e}); delete its folder to start over",
        path.display()
    ))
}
