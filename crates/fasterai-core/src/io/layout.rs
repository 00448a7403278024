//! A graph's tensors to and from PyTorch's keys and layouts, for model files: Linear weights
//! transposed (Burn keeps `[in, out]`, PyTorch `[out, in]`), batch and layer norms' `gamma`/`beta` named
//! `weight`/`bias`. burn-store's adapters do the same renaming and transposing, element by
//! element and with extra copies: on VGG16-bn they were most of a save or a load.

use std::collections::{BTreeSet, HashMap};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::Dtype;

use super::file::Reader;
use crate::linalg::transpose_rows_into;

/// FNV-1a-style hash over each float tensor's Burn path, shape and values (Burn's layout), in
/// visiting order: the `fasterai.checksum` of files written before the CRC-32 replaced it
/// (still verified when such a file loads).
pub(crate) struct Checksum(u64);

impl Checksum {
    pub(crate) fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn tensor(&mut self, path: &str, shape: &[usize], values: &[u8]) {
        self.eat(path.as_bytes());
        for d in shape {
            self.eat(&(*d as u64).to_le_bytes());
        }
        // Word-wise mixing keeps this near memory speed on 500 MB models.
        for chunk in values.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
    }

    pub(crate) fn value(&self) -> u64 {
        self.0
    }
}

/// Where a visit stands: Burn's full path (checksums use it), the PyTorch key (enum variants
/// left out) and the struct the current field belongs to.
#[derive(Default)]
struct Position {
    burn_path: Vec<String>,
    key_path: Vec<String>,
    containers: Vec<String>,
}

impl Position {
    fn enter(&mut self, name: &str, container: &str) {
        self.burn_path.push(name.to_string());
        self.containers.push(container.to_string());
        if !container.starts_with("Enum:") {
            self.key_path.push(name.to_string());
        }
    }

    fn exit(&mut self) {
        self.burn_path.pop();
        if let Some(container) = self.containers.pop()
            && !container.starts_with("Enum:")
        {
            self.key_path.pop();
        }
    }

    /// The PyTorch key, and whether the values are a Linear weight (stored transposed).
    fn key(&self) -> (String, bool) {
        let owner = self
            .containers
            .iter()
            .rev()
            .find(|c| c.starts_with("Struct:"))
            .map(String::as_str);
        let mut parts = self.key_path.clone();
        let last = parts.last().map(String::as_str);
        let transposed = owner == Some("Struct:Linear") && last == Some("weight");
        if owner == Some("Struct:BatchNorm") || owner == Some("Struct:LayerNorm") {
            match last {
                Some("gamma") => *parts.last_mut().expect("non-empty") = "weight".into(),
                Some("beta") => *parts.last_mut().expect("non-empty") = "bias".into(),
                _ => {}
            }
        }
        (parts.join("."), transposed)
    }
}

/// f32 little-endian bytes as values.
pub(crate) fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// A float parameter or buffer in the file's layout.
pub(crate) struct FileTensor {
    pub key: String,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// The values as `[shape[0], rest]` in PyTorch layout: a view of the parameter, nothing
    /// copied (a Linear weight is a transposed view).
    pub rows: Tensor<2>,
}

impl FileTensor {
    /// The values, copied out.
    pub(crate) fn values(&self) -> Vec<f32> {
        self.rows
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("float32 after conversion")
    }
}

/// Every float parameter and buffer of a module under its PyTorch key, in PyTorch's layout.
pub(crate) struct Collect {
    position: Position,
    pub tensors: Vec<FileTensor>,
}

impl Collect {
    pub(crate) fn new() -> Self {
        Collect {
            position: Position::default(),
            tensors: Vec::new(),
        }
    }
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.position.enter(name, container);
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.position.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let dims = value.dims();
        let (key, transposed) = self.position.key();
        let (shape, rows) = if transposed && D == 2 {
            let rows = value.reshape([dims[0], dims[1]]).transpose();
            (vec![dims[1], dims[0]], rows)
        } else {
            let first = dims.first().copied().unwrap_or(1);
            let rest = dims.iter().skip(1).product::<usize>();
            (dims.to_vec(), value.reshape([first, rest]))
        };
        self.tensors.push(FileTensor { key, shape, rows });
    }
}

/// Replaces every float parameter of a module by the file's tensor under its PyTorch key,
/// read straight into the parameter's new buffer, checking types and shapes.
pub(crate) struct Apply<'a> {
    position: Position,
    reader: &'a mut Reader,
    /// Weights decoded before the pass (int8 codes times their scales), in PyTorch layout.
    decoded: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// File keys no parameter has taken yet.
    pub left: BTreeSet<String>,
    pub problems: Vec<String>,
    pub io_error: Option<std::io::Error>,
    /// The checksum of older files, over the loaded values.
    pub legacy: Option<Checksum>,
}

impl<'a> Apply<'a> {
    pub(crate) fn new(
        reader: &'a mut Reader,
        decoded: HashMap<String, (Vec<usize>, Vec<f32>)>,
        left: BTreeSet<String>,
        legacy: Option<Checksum>,
    ) -> Self {
        Apply {
            position: Position::default(),
            reader,
            decoded,
            left,
            problems: Vec::new(),
            io_error: None,
            legacy,
        }
    }

    /// The values under `key` in Burn's layout, or why not.
    fn values(&mut self, key: &str, transposed: bool) -> std::result::Result<Vec<f32>, String> {
        if let Some((shape, values)) = self.decoded.remove(key) {
            return Ok(match (transposed, shape.as_slice()) {
                (true, &[rows, cols]) => {
                    let mut out = vec![0f32; values.len()];
                    transpose_rows_into(&values, 0, &mut out, rows, cols);
                    out
                }
                _ => values,
            });
        }
        let entry = self.reader.header.tensors[key].clone();
        if entry.dtype != Dtype::F32 {
            return Err(format!(
                "`{key}` is {:?} in the file, not float32",
                entry.dtype
            ));
        }
        let read = if transposed {
            self.reader.floats_transposed(&entry)
        } else {
            self.reader.floats(&entry)
        };
        read.map_err(|e| {
            let reason = format!("reading `{key}`: {e}");
            self.io_error.get_or_insert(e);
            reason
        })
    }
}

impl ModuleMapper for Apply<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.position.enter(name, container);
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.position.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (key, transposed) = self.position.key();
        if !self.left.remove(&key) {
            self.problems
                .push(format!("`{key}` is missing from the file"));
            return param;
        }
        let file_shape = match self.decoded.get(&key) {
            Some((shape, _)) => shape.clone(),
            None => self.reader.header.tensors[&key].shape.clone(),
        };
        let expected = param.lazy_shape().dims::<D>().to_vec();
        let burn_shape = match (transposed, file_shape.as_slice()) {
            (true, [o, i]) => vec![*i, *o],
            _ => file_shape.clone(),
        };
        if burn_shape != expected {
            self.problems.push(format!(
                "`{key}` has shape {file_shape:?} in the file; the model needs {:?}",
                if transposed {
                    expected.iter().rev().copied().collect()
                } else {
                    expected
                }
            ));
            return param;
        }
        let values = match self.values(&key, transposed) {
            Ok(values) => values,
            Err(problem) => {
                self.problems.push(problem);
                return param;
            }
        };
        if let Some(checksum) = &mut self.legacy {
            checksum.tensor(
                &self.position.burn_path.join("."),
                &burn_shape,
                bytemuck::cast_slice(&values),
            );
        }
        let data = TensorData::new(values, burn_shape);
        let device = param.lazy_device();
        let id = param.id;
        param.transform_for_load(Tensor::from_data(data, &device), id)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};

    use super::*;
    use crate::testing::{tiny_cnn, tiny_resnet};

    /// The same keys, shapes and bytes as burn-store's own PyTorch adapter, an independent path.
    #[test]
    fn collects_what_burn_stores_pytorch_adapter_does() {
        let device = burn::tensor::Device::flex();
        for net in [tiny_cnn(3, 5, &device), tiny_resnet(3, 5, &device)] {
            let mut collect = Collect::new();
            net.visit(&mut collect);
            let mut ours: Vec<_> = collect
                .tensors
                .iter()
                .map(|t| {
                    let bytes: Vec<u8> = t.values().iter().flat_map(|v| v.to_le_bytes()).collect();
                    (t.key.clone(), t.shape.clone(), bytes)
                })
                .collect();
            let mut theirs: Vec<_> = net
                .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
                .into_iter()
                .map(|t| {
                    let name = t.name.clone();
                    let data = bridge::into_data(t).unwrap();
                    (name, data.shape().to_vec(), data.as_bytes().to_vec())
                })
                .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours.len(), theirs.len());
            assert!(ours == theirs, "keys, shapes or values differ");
            assert!(
                ours.iter()
                    .any(|(k, s, _)| k.ends_with("running_var") && s.len() == 1)
            );
        }
    }
}
