//! Model files: one `.safetensors` file with PyTorch-style keys and layouts, whose metadata
//! holds the architecture JSON, so that a compressed model loads with no knowledge of how it was
//! made. Also the import of torchvision checkpoints (`.pth`/`.pt` or `.safetensors`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use burn::module::Module;
use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, bridge,
};
use burn::tensor::{Bytes, DType, Device, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{CoreError, Result};
use crate::graph::{Graph, InitScheme};
use crate::model::{Architecture, Model};
use crate::quant::{WeightGrid, WeightQuant};

mod layout;

/// Metadata key of the architecture JSON.
pub const ARCHITECTURE_KEY: &str = "fasterai.architecture";
/// Metadata key of the checksum over all tensor values.
pub const CHECKSUM_KEY: &str = "fasterai.checksum";

/// Suffix of the tensor holding a quantized weight's scales (`features.0.weight_scale`).
pub const SCALE_SUFFIX: &str = "weight_scale";

/// Largest safetensors header we accept (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Saves `model` to `path` atomically (written beside it, then renamed into place).
///
/// Refuses to replace an existing file unless `overwrite` is true.
pub fn save_model(model: &Model, path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(CoreError::WouldOverwrite(path.to_path_buf()));
    }
    let arch = serde_json::to_string(&model.architecture()).expect("architecture serialises");
    let mut collect = layout::Collect::new();
    model.net.visit(&mut collect);
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("producer".to_string(), "fasterai".to_string()),
        (ARCHITECTURE_KEY.to_string(), arch),
        (
            CHECKSUM_KEY.to_string(),
            format!("{:016x}", collect.checksum.value()),
        ),
    ]);
    let tensors = with_integer_codes(model, collect.tensors)?;
    let views = tensors
        .iter()
        .map(|(key, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|view| (key.as_str(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CoreError::io(path, e))?;
    // Streamed to the temporary file: no second copy of the tensors in memory.
    write_atomic_with(path, overwrite, |temp| {
        safetensors::serialize_to_file(views, Some(metadata), temp).map_err(std::io::Error::other)
    })
}

/// A file tensor: key, type, PyTorch shape, little-endian bytes.
type FileEntry = (String, Dtype, Vec<usize>, Bytes);

/// The weights of quantized layers as int8 codes beside their scales (`X.weight_scale`); the
/// rest as float32. A weight that left its grid (changed after quantization) is an error, not
/// silently rounded again.
fn with_integer_codes(
    model: &Model,
    tensors: Vec<(String, Vec<usize>, Bytes)>,
) -> Result<Vec<FileEntry>> {
    let mut out = Vec::with_capacity(tensors.len() + model.quantized.len());
    for (key, shape, bytes) in tensors {
        let layer = key.strip_suffix(".weight");
        let Some((path, q)) = layer.and_then(|l| model.quantized.get_key_value(l)) else {
            out.push((key, Dtype::F32, shape, bytes));
            continue;
        };
        let values = layout::floats(&bytes);
        let channels = shape.first().copied().unwrap_or(1);
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
        let code_bytes = codes.iter().map(|&c| c as u8).collect::<Vec<u8>>();
        out.push((key, Dtype::I8, shape, Bytes::from_bytes_vec(code_bytes)));
        let scales = Bytes::from_elems(q.scales.clone());
        out.push((
            format!("{path}.{SCALE_SUFFIX}"),
            Dtype::F32,
            vec![q.scales.len()],
            scales,
        ));
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
        .map(|(key, shape, bytes)| (key, TensorData::from_bytes(bytes, shape, DType::F32)))
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
    Ok(read_skeleton(path, device)?.0)
}

/// A file's model with lazy weights, its metadata, and the weight grids of quantized layers.
type Skeleton = (
    Model,
    serde_json::Map<String, serde_json::Value>,
    BTreeMap<String, WeightGrid>,
);

fn read_skeleton(path: &Path, device: &Device) -> Result<Skeleton> {
    let metadata = read_safetensors_metadata(path)?;
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
    let model = Model::from_architecture(&arch, InitScheme::Zeros, device)?;
    Ok((model, metadata, arch.quantized))
}

/// Loads a model saved by [`save_model`] onto `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<Model> {
    let (mut model, metadata, grids) = read_skeleton(path, device)?;
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };

    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    let mut codes = Vec::new();
    for (key, view) in file.tensors() {
        match view.dtype() {
            Dtype::F32 => {
                tensors.insert(key, (view.shape().to_vec(), view.data()));
            }
            Dtype::I8 => codes.push((key, view)),
            other => return Err(bad(format!("`{key}` is {other:?}, not float32 or int8"))),
        }
    }
    // Quantized weights: codes · scales, the values the saved model computed with.
    let mut dequantized = Vec::new();
    for (key, view) in codes {
        let layer = key.strip_suffix(".weight").unwrap_or(&key);
        let Some(&grid) = grids.get(layer) else {
            return Err(bad(format!(
                "`{key}` holds integer codes but the architecture does not quantize `{layer}`"
            )));
        };
        let scale_key = format!("{layer}.{SCALE_SUFFIX}");
        let Some((_, scale_bytes)) = tensors.remove(scale_key.as_str()) else {
            return Err(bad(format!("`{key}` has no scales (`{scale_key}`)")));
        };
        let scales = layout::floats(scale_bytes);
        let channels = view.shape().first().copied().unwrap_or(1);
        if scales.len() != if grid.per_channel { channels } else { 1 } {
            return Err(bad(format!(
                "`{scale_key}` holds {} scales for {channels} channels",
                scales.len()
            )));
        }
        let values = view.data().iter().map(|&b| b as i8).collect::<Vec<_>>();
        let floats = WeightGrid::dequantize(&values, &scales);
        model
            .quantized
            .insert(layer.to_string(), WeightQuant { grid, scales });
        dequantized.push((key, view.shape().to_vec(), floats));
    }
    if let Some(layer) = grids.keys().find(|l| !model.quantized.contains_key(*l)) {
        return Err(bad(format!(
            "the architecture quantizes `{layer}` but its weight is not stored as integers"
        )));
    }
    let dequantized_bytes: Vec<(String, Vec<usize>, Vec<u8>)> = dequantized
        .into_iter()
        .map(|(key, shape, floats)| {
            let bytes = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
            (key, shape, bytes)
        })
        .collect();
    for (key, shape, bytes) in &dequantized_bytes {
        tensors.insert(key.clone(), (shape.clone(), bytes.as_slice()));
    }
    let mut apply = layout::Apply::new(tensors);
    model.net = model.net.map(&mut apply);
    let unused = apply.unused();
    let mut problems = std::mem::take(&mut apply.problems);
    if !unused.is_empty() {
        problems.push(format!(
            "{} tensors in the file have no place in the model (e.g. {})",
            unused.len(),
            unused
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(CoreError::WeightMismatch {
            path: path.to_path_buf(),
            reason: problems.join("; "),
        });
    }
    if let Some(expected) = metadata.get(CHECKSUM_KEY).and_then(|v| v.as_str()) {
        let actual = format!("{:016x}", apply.checksum.value());
        if actual != expected {
            return Err(bad(format!(
                "tensor data is corrupted (checksum {actual}, file says {expected})"
            )));
        }
    }
    Ok(model)
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

/// Reads the `__metadata__` map of a safetensors file without reading its tensors.
pub fn read_safetensors_metadata(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let bad = |reason: &str| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("file is too short to be safetensors"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(bad(
            "the header length is larger than the file: not safetensors, or truncated",
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| CoreError::io(path, e))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|_| bad("the header is not valid JSON: not safetensors, or damaged"))?;
    let data_len = file_len - 8 - header_len;
    let needed = header
        .as_object()
        .ok_or_else(|| bad("the header is not a JSON object"))?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if needed > data_len {
        return Err(bad(&format!(
            "truncated: tensors need {needed} bytes of data, the file has {data_len}"
        )));
    }
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .cloned()
        .unwrap_or_default())
}
