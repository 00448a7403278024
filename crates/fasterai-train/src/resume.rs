//! The state a run resumes from, written to a folder after every epoch: the training weights
//! (with their parameter ids, which key the optimiser's state), the optimiser's state (momenta,
//! Adam's moments), the callbacks' modules and optimisers (FitNet adapters) and state (masks,
//! schedule position), the model kept so far, and where the run stands (epochs, history).
//!
//! Every file is written atomically and carries its epoch in its name; `progress.json`,
//! written last, names the complete epoch and holds the CRC-32 of every file of it, checked
//! before a file is parsed. A run killed while saving resumes from the previous
//! epoch; files of other epochs are removed once the new one is complete.

use std::collections::BTreeMap;
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
    /// CRC-32 (8 hex digits) of each state file by name; filled in by [`save`].
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
}

impl Progress {
    /// What every progress file this code writes satisfies; anything else was edited or damaged.
    fn check(&self) -> std::result::Result<(), String> {
        let done = self.epochs_done;
        if done == 0 || done > self.run.epochs {
            return Err(format!(
                "{done} epochs done of {}: must be between 1 and the run's epochs",
                self.run.epochs
            ));
        }
        if self.records.len() != done {
            return Err(format!(
                "{} epoch records for {done} epochs",
                self.records.len()
            ));
        }
        if self.best.1 >= done || self.kept.is_some_and(|(_, e)| e >= done) {
            return Err("the best or kept epoch is one not yet run".into());
        }
        if done == self.run.epochs && self.kept.is_none() {
            return Err("the run is complete but keeps no model".into());
        }
        Ok(())
    }
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

/// The CRC-32 of `bytes` as stored in `progress.json`.
fn crc(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

fn write_module(path: &Path, module: &Graph) -> Result<String> {
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| io(path, e))?;
    write_atomic(path, &bytes, true)?;
    Ok(crc(&bytes))
}

fn read_module(path: &Path, template: Graph, sums: &Checksums) -> Result<Graph> {
    let record = ModuleRecord::from_bytes(read_bytes(path, sums)?).map_err(|e| damaged(path, e))?;
    template
        .try_load_record(record)
        .map_err(|e| damaged(path, e))
}

fn write_optim(path: &Path, optim: &ModuleOptimizer) -> Result<String> {
    let bytes = optim.into_bytes().map_err(|e| io(path, e))?;
    write_atomic(path, &bytes, true)?;
    Ok(crc(&bytes))
}

fn read_optim(path: &Path, template: ModuleOptimizer, sums: &Checksums) -> Result<ModuleOptimizer> {
    template
        .from_bytes(read_bytes(path, sums)?)
        .map_err(|e| damaged(path, e))
}

type Checksums = BTreeMap<String, String>;

/// The bytes of a state file, checked against its CRC in `progress.json` before anything
/// parses them.
fn read_bytes(path: &Path, sums: &Checksums) -> Result<Bytes> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match sums.get(&name) {
        Some(expected) if *expected == crc(&bytes) => Ok(Bytes::from_bytes_vec(bytes)),
        Some(_) => Err(damaged(path, "its checksum does not match")),
        None => Err(damaged(path, "progress.json records no checksum for it")),
    }
}

/// Writes the state after `progress.epochs_done` epochs, then removes other epochs' files.
pub(crate) fn save(dir: &Path, progress: &Progress, snapshot: &Snapshot<'_>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let epoch = progress.epochs_done;
    let mut sums = Checksums::new();
    let mut put = |path: PathBuf, sum: String| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        sums.insert(name.unwrap_or_default(), sum);
    };
    let path = file(dir, "net", epoch, "bpk");
    put(path.clone(), write_module(&path, snapshot.net)?);
    let path = file(dir, "optim", epoch, "bpk");
    put(path.clone(), write_optim(&path, snapshot.optim)?);
    for (i, trainable) in snapshot.trainables.iter().enumerate() {
        if let Some((module, optim)) = trainable {
            let path = file(dir, &format!("trainable{i}"), epoch, "bpk");
            put(path.clone(), write_module(&path, module)?);
            let path = file(dir, &format!("trainopt{i}"), epoch, "bpk");
            put(path.clone(), write_optim(&path, optim)?);
        }
    }
    for (i, state) in snapshot.callbacks.iter().enumerate() {
        let path = file(dir, &format!("callback{i}"), epoch, "safetensors");
        write_arrays(&path, &state.arrays, &state.values.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        put(path, crc(&bytes));
    }
    if let Some((_, kept_epoch)) = progress.kept {
        let path = file(dir, "kept", kept_epoch, "bpk");
        match snapshot.kept {
            Some(kept) => put(path.clone(), write_module(&path, kept)?),
            // Kept in an earlier epoch: its checksum carries over from the last progress file.
            None => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if let Some(sum) = previous_checksums(dir).remove(&name.unwrap_or_default()) {
                    put(path, sum);
                }
            }
        }
    }
    let progress = Progress {
        checksums: sums,
        ..progress.clone()
    };
    let json = serde_json::to_vec_pretty(&progress).map_err(|e| io(dir, e))?;
    write_atomic(&dir.join(PROGRESS), &json, true)?;
    remove_stale(dir, epoch, progress.kept.map(|(_, e)| e));
    Ok(())
}

/// The checksums the progress file in `dir` records (none if it is missing or unreadable).
fn previous_checksums(dir: &Path) -> Checksums {
    std::fs::read(dir.join(PROGRESS))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Progress>(&bytes).ok())
        .map(|p| p.checksums)
        .unwrap_or_default()
}

/// A state file's stem (`net`, `callback0`, …) and epoch, when `name` is one [`save`] writes.
fn state_file(name: &str) -> Option<(&str, usize)> {
    let (stem, rest) = name.split_once('-')?;
    let (epoch, ext) = rest.split_once('.')?;
    let ours = stem == "net"
        || stem == "optim"
        || stem == "kept"
        || ["trainable", "trainopt", "callback"].iter().any(|p| {
            stem.strip_prefix(p)
                .is_some_and(|i| i.parse::<usize>().is_ok())
        });
    (ours && matches!(ext, "bpk" | "safetensors"))
        .then(|| epoch.parse().ok().map(|e| (stem, e)))
        .flatten()
}

/// Removes state files of epochs other than the complete one (and kept models other than the
/// current). A file that cannot be removed only costs space.
fn remove_stale(dir: &Path, epoch: usize, kept_epoch: Option<usize>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((stem, n)) = name.to_str().and_then(state_file) else {
            continue;
        };
        let current = if stem == "kept" {
            kept_epoch
        } else {
            Some(epoch)
        };
        if Some(n) != current {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `dir` holds a run's state (the progress file [`save`] writes last).
pub fn is_run_state(dir: &Path) -> bool {
    dir.join(PROGRESS).is_file()
}

/// Files in `dir` that no run wrote (neither state files, the progress file, nor their
/// temporaries).
pub fn foreign_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_str().is_some_and(is_ours))
        .map(|e| e.path())
        .collect()
}

/// A state file, the progress file, or a temporary of one.
fn is_ours(name: &str) -> bool {
    let written = |n: &str| n == PROGRESS || state_file(n).is_some();
    written(name)
        || name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(target, pid)| written(target) && pid.parse::<u32>().is_ok())
}

/// Removes what runs wrote to `dir`: state files, the progress file, and the temporaries of
/// writers that are gone (a live run's are kept); then `dir` itself if that empties it. Any
/// other file stays, and so does the folder holding it.
pub fn clear_state(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_ours(n)) else {
            continue;
        };
        let writer = name
            .strip_suffix(".tmp")
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if writer.is_some_and(fasterai_core::io::process_alive) {
            continue;
        }
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    if std::fs::read_dir(dir)?.next().is_none() {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}

/// Reads the state in `dir`, if a run left one there; checks that it is this run's.
pub(crate) fn load(dir: &Path, key: &RunKey, templates: Templates) -> Result<Option<Resumed>> {
    let path = dir.join(PROGRESS);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let progress: Progress = serde_json::from_slice(&text).map_err(|e| damaged(&path, e))?;
    progress.check().map_err(|e| damaged(&path, e))?;
    if &progress.run != key {
        return Err(TrainError::Config(format!(
            "cannot resume from {}: it holds another run ({:?}), not this one ({key:?}); use \
             the same model, data and settings, or delete the folder to start over",
            dir.display(),
            progress.run
        )));
    }
    let epoch = progress.epochs_done;
    let sums = &progress.checksums;
    let net = read_module(&file(dir, "net", epoch, "bpk"), templates.net, sums)?;
    let optim = read_optim(&file(dir, "optim", epoch, "bpk"), templates.optim, sums)?;
    let trainables = templates
        .trainables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.map(|(module, optim)| {
                Ok((
                    read_module(
                        &file(dir, &format!("trainable{i}"), epoch, "bpk"),
                        module,
                        sums,
                    )?,
                    read_optim(
                        &file(dir, &format!("trainopt{i}"), epoch, "bpk"),
                        optim,
                        sums,
                    )?,
                ))
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let callbacks = (0..key.callbacks)
        .map(|i| {
            let path = file(dir, &format!("callback{i}"), epoch, "safetensors");
            read_bytes(&path, sums)?;
            let (arrays, json) = read_arrays(&path)?;
            let values = serde_json::from_str(&json).map_err(|e| damaged(&path, e))?;
            Ok(CallbackState { values, arrays })
        })
        .collect::<Result<Vec<_>>>()?;
    let kept = match progress.kept {
        Some((_, kept_epoch)) => Some(read_module(
            &file(dir, "kept", kept_epoch, "bpk"),
            templates.kept,
            sums,
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
