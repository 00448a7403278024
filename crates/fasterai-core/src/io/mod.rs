//! Model files: one `.safetensors` file with PyTorch-style keys and layouts, whose metadata
//! holds the architecture JSON, so that a compressed model loads with no knowledge of how it was
//! made. Also the import of torchvision checkpoints (`.pth`/`.pt` or `.safetensors`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;

use burn::module::Module;
use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, bridge,
};
use burn::tensor::{Device, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{CoreError, Result};
use crate::graph::{Graph, GraphSpec, InitScheme};
use crate::model::{Architecture, Model};
use crate::quant::{WeightGrid, WeightQuant};

mod file;
mod layout;
mod tensors;

pub use tensors::{DeferredTensor, ReadValues, StoredTensor, TensorFile, set_deferred_tensors};

/// Metadata key of the architecture JSON.
pub const ARCHITECTURE_KEY: &str = "fasterai.architecture";
/// Metadata key of the CRC-32 (IEEE) of the whole file, header included, as 8 hex digits,
/// computed with those digits counted as `00000000`: any change to the architecture (a stride,
/// an epsilon, a quantizer's scale) or to the weights is detected.
pub const FILE_CRC_KEY: &str = "fasterai.file_crc32";
/// Metadata key of the CRC-32 of the data section alone, which files of format version 2
/// carry: still verified on load (their header is not), no longer written.
pub const CRC_KEY: &str = "fasterai.crc32";
/// Metadata key of the checksum files carried before [`CRC_KEY`]: still verified on load,
/// no longer written.
pub const CHECKSUM_KEY: &str = "fasterai.checksum";

/// What a model file's checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The whole file matches its checksum.
    Verified,
    /// A file of an older format: its weights match their checksum, its header is not covered.
    OlderFormat,
    /// No checksum (plain safetensors from elsewhere, or an old file without one).
    Unverified,
}

impl Integrity {
    /// A short name for JSON: `verified`, `older-format`, `unverified`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Integrity::Verified => "verified",
            Integrity::OlderFormat => "older-format",
            Integrity::Unverified => "unverified",
        }
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Integrity::Verified => "verified (CRC-32 of the whole file)",
            Integrity::OlderFormat => "older format, header unverified (weights verified)",
            Integrity::Unverified => "unverified (the file carries no checksum)",
        })
    }
}

/// Suffix of the tensor holding a quantized weight's scales (`features.0.weight_scale`).
pub const SCALE_SUFFIX: &str = "weight_scale";

/// Saves `model` to `path` atomically (written beside it, then renamed into place), each
/// tensor streamed from the model to the file.
///
/// Refuses to replace an existing file unless `overwrite` is true.
pub fn save_model(model: &Model, path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(CoreError::WouldOverwrite(path.to_path_buf()));
    }
    let arch = serde_json::to_string(&model.architecture()).expect("architecture serialises");
    // Written last, into its placeholder: the CRC of the whole file.
    let mut collect = layout::Collect::new();
    model.net.visit(&mut collect);
    let tensors = with_integer_codes(model, collect.tensors)?;
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("producer".to_string(), "fasterai".to_string()),
        (ARCHITECTURE_KEY.to_string(), arch),
    ]);
    write_atomic_with(path, overwrite, |temp| {
        file::write(temp, metadata, FILE_CRC_KEY, tensors)
    })
}

/// The weights of quantized layers as int8 codes beside their scales (`X.weight_scale`); the
/// rest as float32. A weight that left its grid (changed after quantization) is an error, not
/// silently rounded again.
fn with_integer_codes(
    model: &Model,
    tensors: Vec<layout::FileTensor>,
) -> Result<Vec<file::Outgoing>> {
    let mut out = Vec::with_capacity(tensors.len() + model.quantized.len());
    for tensor in tensors {
        let layer = tensor.key.strip_suffix(".weight");
        let Some((path, q)) = layer.and_then(|l| model.quantized.get_key_value(l)) else {
            out.push(file::Outgoing {
                key: tensor.key,
                dtype: Dtype::F32,
                shape: tensor.shape,
                payload: file::Payload::Rows(Box::new(tensor.rows)),
            });
            continue;
        };
        let values = tensor.values();
        let channels = tensor.shape.first().copied().unwrap_or(1);
        let expected = if q.grid.per_channel { channels } else { 1 };
        if q.scales.len() != expected || q.scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(CoreError::InvalidLayer {
                path: path.clone(),
                reason: format!(
                    "{} weight scales, expected {expected} positive ones",
                    q.scales.len()
                ),
            });
        }
        let codes = q.grid.codes(&values, &q.scales);
        let on_grid = WeightGrid::dequantize(&codes, &q.scales)
            .iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if !on_grid {
            return Err(CoreError::InvalidLayer {
                path: path.clone(),
                reason: "its weights left their integer grid after quantization; quantize the \
                         model again"
                    .into(),
            });
        }
        out.push(file::Outgoing {
            key: tensor.key,
            dtype: Dtype::I8,
            shape: tensor.shape,
            payload: file::Payload::Bytes(codes.iter().map(|&c| c as u8).collect()),
        });
        out.push(file::Outgoing {
            key: format!("{path}.{SCALE_SUFFIX}"),
            dtype: Dtype::F32,
            shape: vec![q.scales.len()],
            payload: file::Payload::Bytes(q.scales.iter().flat_map(|s| s.to_le_bytes()).collect()),
        });
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically, by the same rule as [`save_model`].
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    write_atomic_with(path, overwrite, |temp| std::fs::write(temp, bytes))
}

/// `write` fills a temporary file beside `path`, which is then flushed to disk and renamed over
/// `path`: a reader sees the old file or the new one, never half of one, and a failed write
/// leaves the old file intact and no temporary behind.
fn write_atomic_with(
    path: &Path,
    overwrite: bool,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(CoreError::WouldOverwrite(path.to_path_buf()));
    }
    remove_orphaned_temporaries(path);
    let temp = temp_sibling(path);
    let written = (|| -> std::io::Result<()> {
        write(&temp)?;
        File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes the rename itself durable; not every file system allows it.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    })();
    if written.is_err() && temp.is_file() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(|e| CoreError::io(path, e))
}

/// Every parameter and buffer of `net` under PyTorch's key, in PyTorch's layout (linear weights
/// `[out, in]`, batch norms' `weight`/`bias`/`running_mean`/`running_var`), in graph order.
pub fn pytorch_tensors(net: &Graph) -> Result<Vec<(String, TensorData)>> {
    let mut collect = layout::Collect::new();
    net.visit(&mut collect);
    Ok(collect
        .tensors
        .into_iter()
        .map(|t| {
            let values = t.values();
            (t.key, TensorData::new(values, t.shape))
        })
        .collect())
}

/// Sets every parameter and buffer of `net` from tensors under PyTorch's keys and layouts;
/// `source` names where they came from in errors. Any missing, unused or mis-shaped tensor is
/// an error.
pub fn set_pytorch_tensors(
    net: &mut Graph,
    tensors: Vec<(String, TensorData)>,
    source: &Path,
) -> Result<()> {
    let tensors = tensors
        .into_iter()
        .map(|(name, data)| bridge::from_data(data, name, None))
        .collect();
    let result = net.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    check_applied(source, &result, |_| false)
}

/// Named float arrays: shape and values.
pub type Arrays = std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Writes named float arrays and a metadata string as one safetensors file, atomically: state
/// that is not a model (masks, a run's progress).
pub fn write_arrays(path: &Path, arrays: &Arrays, metadata: &str) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = arrays
        .iter()
        .map(|(k, (shape, v))| {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), data, shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, data, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (k.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CoreError::io(path, e))?;
    let meta = HashMap::from([("state".to_string(), metadata.to_string())]);
    let file = safetensors::serialize(views, Some(meta)).map_err(|e| CoreError::io(path, e))?;
    write_atomic(path, &file, true)
}

/// Writes named float32 arrays as a plain safetensors file with `metadata` (a Hugging Face
/// checkpoint: `format: pt`), atomically, each array streamed to the file as it is (no second
/// copy of them all), with the CRC-32 of the whole file under [`FILE_CRC_KEY`] as our model
/// files carry it. Refuses to replace an existing file unless `overwrite`.
pub fn write_float_arrays(
    path: &Path,
    arrays: Arrays,
    metadata: BTreeMap<String, String>,
    overwrite: bool,
) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(CoreError::WouldOverwrite(path.to_path_buf()));
    }
    let tensors = arrays
        .into_iter()
        .map(|(key, (shape, values))| file::Outgoing {
            key,
            dtype: Dtype::F32,
            shape,
            payload: file::Payload::Floats(values),
        })
        .collect();
    write_atomic_with(path, overwrite, |temp| {
        file::write(temp, metadata, FILE_CRC_KEY, tensors)
    })
}

/// Reads what [`write_arrays`] wrote: the arrays and the metadata string.
pub fn read_arrays(path: &Path) -> Result<(Arrays, String)> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("state").cloned())
        .unwrap_or_default();
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut arrays = Arrays::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("`{name}` is not float32")));
        }
        arrays.insert(name, (view.shape().to_vec(), layout::floats(view.data())));
    }
    Ok((arrays, metadata))
}

/// `dir/.name.PID.tmp` for `dir/name`.
pub fn temp_sibling(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The process that wrote a temporary of [`temp_sibling`]'s form for `name`, if `file` is one.
pub fn temporary_writer(file: &str, name: &str) -> Option<u32> {
    file.strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?
        .parse()
        .ok()
}

/// Whether process `pid` is running. Where that cannot be told (no `/proc`), every process
/// counts as running, so that no temporary of a live writer is ever removed.
pub fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the temporaries that writers of `path` which are gone (killed mid-save) left beside
/// it; a live writer's temporary is kept. Returns how many were removed.
pub fn remove_orphaned_temporaries(path: &Path) -> usize {
    let (Some(name), Some(dir)) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let file = e.file_name();
            let writer = file.to_str().and_then(|f| temporary_writer(f, name));
            writer.is_some_and(|pid| !process_alive(pid))
                && e.file_type().is_ok_and(|t| t.is_file())
                && std::fs::remove_file(e.path()).is_ok()
        })
        .count()
}

/// The layers whose weights a model file stores as integer codes, with their grids, read from
/// its metadata alone.
pub fn quantized_layers(path: &Path) -> Result<BTreeMap<String, WeightGrid>> {
    let metadata = read_safetensors_metadata(path)?;
    let json = metadata
        .get(ARCHITECTURE_KEY)
        .and_then(|v| v.as_str())
        .ok_or_else(|| CoreError::BadModelFile {
            path: path.to_path_buf(),
            reason: format!("no `{ARCHITECTURE_KEY}` metadata"),
        })?;
    Architecture::from_json(json)
        .map(|a| a.quantized)
        .map_err(|reason| CoreError::BadModelFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// The model a file describes, with its weights not read (lazy zeros: nothing is allocated
/// until a value is used): enough for shapes, parameter counts and MACs.
pub fn load_architecture(path: &Path, device: &Device) -> Result<Model> {
    let header = file::Reader::open(path)?.header;
    Ok(skeleton(path, &header, device)?.0)
}

/// The model a file's metadata describes, with lazy weights, and the weight grids of its
/// quantized layers.
///
/// Nothing is built before the file is known to hold every value the layers need, so that no
/// allocation exceeds what the file really holds: a few hundred bytes of JSON cannot declare
/// gigabytes of weights.
fn skeleton(
    path: &Path,
    header: &file::Header,
    device: &Device,
) -> Result<(Model, BTreeMap<String, WeightGrid>)> {
    let metadata = &header.metadata;
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let arch_json = metadata
        .get(ARCHITECTURE_KEY)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            bad(format!(
                "no `{ARCHITECTURE_KEY}` metadata: this holds bare weights; \
             use `fasterai import ARCH --weights FILE` for torchvision checkpoints"
            ))
        })?;
    let arch = Architecture::from_json(arch_json).map_err(bad)?;
    arch.validate().map_err(|e| bad(e.to_string()))?;
    check_stored_values(path, &arch, header)?;
    let model = Model::from_architecture(&arch, InitScheme::Zeros, device)?;
    Ok((model, arch.quantized))
}

/// Refuses an architecture whose layers need more values than the file stores for them (per
/// layer, for a message that names it, and in total, which bounds what building allocates).
fn check_stored_values(path: &Path, arch: &Architecture, header: &file::Header) -> Result<()> {
    let mismatch = |reason: String| CoreError::WeightMismatch {
        path: path.to_path_buf(),
        reason,
    };
    for node in &arch.nodes {
        let needed = GraphSpec::stored_values_of(&node.op);
        if needed == 0 {
            continue;
        }
        let under = header.tensors_under(&node.name);
        let stored: u64 = under.iter().map(|(_, e)| e.elements()).sum();
        if needed > stored {
            let listed: Vec<String> = under
                .iter()
                .take(4)
                .map(|(k, e)| format!("{k} {:?}", e.shape))
                .collect();
            return Err(mismatch(format!(
                "layer `{}` ({}) needs {needed} values, the file stores {stored} for it ({})",
                node.name,
                node.op.kind(),
                if listed.is_empty() {
                    "none".into()
                } else {
                    listed.join(", ")
                }
            )));
        }
    }
    let (needed, stored) = (arch.graph().stored_values(), header.stored_values());
    if needed > stored {
        return Err(mismatch(format!(
            "the layers need {needed} values, the file stores {stored}"
        )));
    }
    Ok(())
}

/// Loads a model saved by [`save_model`] onto `device`, each tensor read from the file straight
/// into its buffer, and the file's CRC-32 checked.
pub fn load_model(path: &Path, device: &Device) -> Result<Model> {
    let mut reader = file::Reader::open(path)?;
    let (mut model, grids) = skeleton(path, &reader.header, device)?;
    let metadata = std::mem::take(&mut reader.header.metadata);
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let io = |e: std::io::Error| CoreError::io(path, e);

    // Quantized weights: codes · scales, the values the saved model computed with.
    let mut left: BTreeSet<String> = reader.header.tensors.keys().cloned().collect();
    let mut decoded = HashMap::new();
    let integers: Vec<(String, file::Entry)> = reader
        .header
        .tensors
        .iter()
        .filter(|(_, e)| e.dtype != Dtype::F32)
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    for (key, entry) in integers {
        if entry.dtype != Dtype::I8 {
            return Err(bad(format!(
                "`{key}` is {:?}, not float32 or int8",
                entry.dtype
            )));
        }
        let layer = key.strip_suffix(".weight").unwrap_or(&key);
        let Some(&grid) = grids.get(layer) else {
            return Err(bad(format!(
                "`{key}` holds integer codes but the architecture does not quantize `{layer}`"
            )));
        };
        let scale_key = format!("{layer}.{SCALE_SUFFIX}");
        let Some(scale_entry) = reader.header.tensors.get(&scale_key).cloned() else {
            return Err(bad(format!("`{key}` has no scales (`{scale_key}`)")));
        };
        left.remove(&scale_key);
        let scales = reader.floats(&scale_entry).map_err(io)?;
        let channels = entry.shape.first().copied().unwrap_or(1);
        if scales.len() != if grid.per_channel { channels } else { 1 } {
            return Err(bad(format!(
                "`{scale_key}` holds {} scales for {channels} channels",
                scales.len()
            )));
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad(format!(
                "`{scale_key}` holds the scale {s}; scales must be positive and finite"
            )));
        }
        let codes: Vec<i8> = reader
            .bytes(&entry)
            .map_err(io)?
            .iter()
            .map(|&b| b as i8)
            .collect();
        let max = grid.max_code();
        if let Some(c) = codes.iter().find(|&&c| (c as i32).abs() > max) {
            return Err(bad(format!(
                "`{key}` holds the code {c}, outside the {}-bit grid [-{max}, {max}]",
                grid.bits
            )));
        }
        let floats = WeightGrid::dequantize(&codes, &scales);
        model
            .quantized
            .insert(layer.to_string(), WeightQuant { grid, scales });
        decoded.insert(key, (entry.shape, floats));
    }
    if let Some(layer) = grids.keys().find(|l| !model.quantized.contains_key(*l)) {
        return Err(bad(format!(
            "the architecture quantizes `{layer}` but its weight is not stored as integers"
        )));
    }

    let stored = |key: &str| metadata.get(key).and_then(|v| v.as_str());
    let legacy = (stored(FILE_CRC_KEY).is_none()
        && stored(CRC_KEY).is_none()
        && stored(CHECKSUM_KEY).is_some())
    .then(layout::Checksum::new);
    let mut apply = layout::Apply::new(&mut reader, decoded, left, legacy);
    model.net = model.net.map(&mut apply);
    let layout::Apply {
        left,
        mut problems,
        io_error,
        legacy,
        ..
    } = apply;
    if let Some(e) = io_error {
        return Err(io(e));
    }
    if !left.is_empty() {
        problems.push(format!(
            "{} tensors in the file have no place in the model (e.g. {})",
            left.len(),
            left.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(CoreError::WeightMismatch {
            path: path.to_path_buf(),
            reason: problems.join("; "),
        });
    }
    check_integrity(path, &mut reader, &metadata, legacy.map(|l| l.value()))?;
    Ok(model)
}

/// Checks a model file's checksum once all its data has been read; `legacy` is the value
/// checksum of the oldest files, computed while their tensors were set. A file of the current
/// format must carry the whole-file checksum; older ones are checked as far as theirs goes.
fn check_integrity(
    path: &Path,
    reader: &mut file::Reader,
    metadata: &serde_json::Map<String, serde_json::Value>,
    legacy: Option<u64>,
) -> Result<Integrity> {
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let stored = |key: &str| metadata.get(key).and_then(|v| v.as_str());
    let corrupted = |actual: String, expected: &str| {
        bad(format!(
            "the file was changed or damaged after it was written (checksum {actual}, the file \
             says {expected})"
        ))
    };
    if let Some(expected) = stored(FILE_CRC_KEY) {
        let actual = reader.file_crc32(FILE_CRC_KEY).map(|c| format!("{c:08x}"));
        return match actual {
            Some(a) if a == expected => Ok(Integrity::Verified),
            Some(a) => Err(corrupted(a, expected)),
            None => Err(bad(format!(
                "its checksum (`{FILE_CRC_KEY}`) is not stored in the form this build writes"
            ))),
        };
    }
    if architecture_version(metadata).is_some_and(|v| v >= Architecture::VERSION as u64) {
        return Err(bad(format!(
            "it is of format version {} but carries no checksum (`{FILE_CRC_KEY}`): damaged or \
             edited",
            Architecture::VERSION
        )));
    }
    if let Some(expected) = stored(CRC_KEY) {
        let actual = reader.crc32().map(|c| format!("{c:08x}"));
        return match actual {
            Some(a) if a == expected => Ok(Integrity::OlderFormat),
            a => Err(corrupted(a.unwrap_or_default(), expected)),
        };
    }
    if let (Some(expected), Some(value)) = (stored(CHECKSUM_KEY), legacy) {
        let actual = format!("{value:016x}");
        if actual != expected {
            return Err(corrupted(actual, expected));
        }
        return Ok(Integrity::OlderFormat);
    }
    Ok(Integrity::Unverified)
}

/// The `version` of the architecture JSON in a file's metadata.
fn architecture_version(metadata: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    let json = metadata.get(ARCHITECTURE_KEY)?.as_str()?;
    serde_json::from_str::<serde_json::Value>(json)
        .ok()?
        .get("version")?
        .as_u64()
}

/// Reads all of a model file and checks its checksum without building the model (what
/// `inspect` reports). Files of the oldest format, whose checksum is over values, report
/// [`Integrity::OlderFormat`] here and are verified by [`load_model`].
pub fn verify_file(path: &Path) -> Result<Integrity> {
    let mut reader = file::Reader::open(path)?;
    let metadata = reader.header.metadata.clone();
    reader.read_all().map_err(|e| CoreError::io(path, e))?;
    if metadata.contains_key(CHECKSUM_KEY)
        && !metadata.contains_key(CRC_KEY)
        && !metadata.contains_key(FILE_CRC_KEY)
    {
        return Ok(Integrity::OlderFormat);
    }
    check_integrity(path, &mut reader, &metadata, None)
}

/// Loads torchvision-layout weights (a `.pth`/`.pt` state dict, or a `.safetensors` file with
/// PyTorch keys) into `net`, whose architecture must match exactly. `num_batches_tracked`
/// buffers are ignored; any other missing, unused or mis-shaped tensor is an error.
pub fn import_pytorch_weights(
    net: &mut Graph,
    path: &Path,
    top_level_key: Option<&str>,
) -> Result<usize> {
    if !path.is_file() {
        return Err(CoreError::io(path, "no such file"));
    }
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let mismatch = |e: String| CoreError::WeightMismatch {
        path: path.to_path_buf(),
        reason: e,
    };
    let result = if is_safetensors {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true);
        net.load_from(&mut store)
            .map_err(|e| mismatch(e.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path)
            // Our paths keep PyTorch's indices (classifier.0, .3, .6); never renumber them.
            .map_indices_contiguous(false)
            .allow_partial(true);
        if let Some(key) = top_level_key {
            store = store.with_top_level_key(key);
        }
        net.load_from(&mut store)
            .map_err(|e| mismatch(e.to_string()))?
    };
    check_applied(path, &result, |key| key.ends_with("num_batches_tracked"))?;
    Ok(result.applied.len())
}

fn check_applied(
    path: &Path,
    result: &ApplyResult,
    ignorable: impl Fn(&str) -> bool,
) -> Result<()> {
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        problems.push(format!("{:?}", result.errors));
    }
    if !result.missing.is_empty() {
        let keys: Vec<&str> = result
            .missing
            .iter()
            .map(|(k, _)| k.as_str())
            .take(8)
            .collect();
        problems.push(format!(
            "{} tensors missing from the file (e.g. {})",
            result.missing.len(),
            keys.join(", ")
        ));
    }
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !ignorable(k))
        .collect();
    if !unused.is_empty() {
        let keys: Vec<&str> = unused.iter().copied().take(8).collect();
        problems.push(format!(
            "{} tensors in the file have no place in the model (e.g. {})",
            unused.len(),
            keys.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CoreError::WeightMismatch {
            path: path.to_path_buf(),
            reason: problems.join("; "),
        })
    }
}

/// Reads the `__metadata__` map of a safetensors file without reading its tensors (the
/// header is checked whole: a truncated or damaged file is an error here already).
pub fn read_safetensors_metadata(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    Ok(file::Reader::open(path)?.header.metadata)
}
