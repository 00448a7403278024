//! Tensors of safetensors files from elsewhere (Hugging Face checkpoints), read one at a time
//! and widened to f32 from f32, f16 or bf16; and a graph's weights set from such reads as they
//! are needed, so that a load holds the model once plus one tensor, never a second copy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, bridge};
use burn::tensor::{DType, TensorData};
use safetensors::Dtype;

use super::file::{Entry, Reader};
use crate::error::{CoreError, Result};
use crate::graph::Graph;

/// One tensor of a [`TensorFile`]: its stored type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    /// Element type as stored (`F32`, `F16`, `BF16`, …).
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

/// An open safetensors file whose header was checked (sizes, byte ranges); tensors are read
/// on demand. Shared between deferred reads, hence the lock.
pub struct TensorFile {
    path: PathBuf,
    reader: Mutex<Reader>,
}

impl TensorFile {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(TensorFile {
            path: path.to_path_buf(),
            reader: Mutex::new(Reader::open(path)?),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's name, type and shape, by name.
    pub fn tensors(&self) -> Vec<(String, StoredTensor)> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        reader
            .header
            .tensors
            .iter()
            .map(|(name, e)| {
                let info = StoredTensor {
                    dtype: e.dtype,
                    shape: e.shape.clone(),
                };
                (name.clone(), info)
            })
            .collect()
    }

    /// The metadata map of the header.
    pub fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        reader.header.metadata.clone()
    }

    /// The values of tensor `name` as f32 (f16 and bf16 widened exactly).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let entry: Entry = reader
            .header
            .tensors
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::io(&self.path, format!("no tensor `{name}`")))?;
        let io = |e: std::io::Error| CoreError::io(&self.path, e);
        match entry.dtype {
            Dtype::F32 => reader.floats(&entry).map_err(io),
            Dtype::F16 | Dtype::BF16 => {
                let bytes = reader.bytes(&entry).map_err(io)?;
                let halves = bytes
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]));
                Ok(if entry.dtype == Dtype::BF16 {
                    halves.map(|h| f32::from_bits((h as u32) << 16)).collect()
                } else {
                    halves.map(|h| half::f16::from_bits(h).to_f32()).collect()
                })
            }
            other => Err(CoreError::io(
                &self.path,
                format!("tensor `{name}` is {other:?}; weights must be F32, F16 or BF16"),
            )),
        }
    }
}

/// Values read when a load reaches them.
pub type ReadValues = Box<dyn Fn() -> Result<Vec<f32>> + Send + Sync>;

/// A tensor under our PyTorch-layout key whose values are read only when a load needs them.
pub struct DeferredTensor {
    /// The key in our model files (`transformer.h.0.attn.in_proj_weight`).
    pub key: String,
    /// Its shape in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Reads the values (already rearranged into that layout).
    pub read: ReadValues,
}

/// Sets every parameter of `net` from `tensors`, each read when the load reaches it and
/// dropped once copied in. Any missing, unused or mis-shaped tensor is an error naming
/// `source`; so is a failed read.
pub fn set_deferred_tensors(
    net: &mut Graph,
    tensors: Vec<DeferredTensor>,
    source: &Path,
) -> Result<()> {
    let failure: Arc<Mutex<Option<CoreError>>> = Arc::default();
    let snapshots = tensors
        .into_iter()
        .map(|t| {
            let (key, shape, read) = (t.key, t.shape, Arc::new(t.read));
            let failure = failure.clone();
            let dims = shape.clone();
            bridge::deferred(key.clone(), DType::F32, shape.into(), None, move || {
                let values = read().map_err(|e| {
                    let message = e.to_string();
                    failure.lock().unwrap_or_else(|p| p.into_inner()).replace(e);
                    burn::store::burn_pack::Error::ValidationError(message)
                })?;
                Ok(TensorData::new(values, dims.clone()))
            })
        })
        .collect();
    let result = net.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    super::check_applied(source, &result, |_| false)
}
