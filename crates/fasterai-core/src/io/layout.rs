//! A graph's tensors to and from PyTorch's keys and layouts, for model files, in one pass and
//! one copy per tensor: Linear weights transposed (Burn keeps `[in, out]`, PyTorch
//! `[out, in]`) in cache-sized tiles, batch norms' `gamma`/`beta` named `weight`/`bias`, and the
//! file checksum computed on the way. burn-store's adapters do the same renaming and
//! transposing, element by element and with extra copies: on VGG16-bn they were most of a save
//! or a load.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bytes, Tensor, TensorData};

/// FNV-1a-style hash over each float tensor's Burn path, shape and values (Burn's layout), in
/// visiting order: the `fasterai.checksum` of a model file.
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
        if owner == Some("Struct:BatchNorm") {
            match last {
                Some("gamma") => *parts.last_mut().expect("non-empty") = "weight".into(),
                Some("beta") => *parts.last_mut().expect("non-empty") = "bias".into(),
                _ => {}
            }
        }
        (parts.join("."), transposed)
    }
}

/// `values` (`rows × cols`, row-major f32 bytes) transposed, on every core, in tiles that stay
/// in cache; a `Vec<f32>` so that Burn takes the buffer as it is (a byte vector would be copied
/// to align it).
fn transpose(values: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let mut out = vec![0f32; rows * cols];
    // Each task fills TILE output rows (input columns c0..c0 + width), reading TILE input rows
    // at a time.
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(t, block)| {
            let (c0, width) = (t * TILE, block.len() / rows);
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let at = 4 * (r * cols + c0);
                    for (dc, b) in values[at..at + 4 * width].chunks_exact(4).enumerate() {
                        block[dc * rows + r] = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                    }
                }
            }
        });
    out
}

/// f32 little-endian bytes as values.
pub(crate) fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// Every float parameter and buffer of a module under its PyTorch key, in PyTorch's layout
/// (f32 little-endian bytes and shape), with the checksum over them.
pub(crate) struct Collect {
    position: Position,
    pub tensors: Vec<(String, Vec<usize>, Bytes)>,
    pub checksum: Checksum,
}

impl Collect {
    pub(crate) fn new() -> Self {
        Collect {
            position: Position::default(),
            tensors: Vec::new(),
            checksum: Checksum::new(),
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
        let data = param.val().into_data().convert::<f32>();
        let shape = data.shape().to_vec();
        let bytes = data.into_bytes();
        self.checksum
            .tensor(&self.position.burn_path.join("."), &shape, &bytes);
        let (key, transposed) = self.position.key();
        if transposed && shape.len() == 2 {
            let bytes = Bytes::from_elems(transpose(&bytes, shape[0], shape[1]));
            self.tensors.push((key, vec![shape[1], shape[0]], bytes));
        } else {
            self.tensors.push((key, shape, bytes));
        }
    }
}

/// A file's tensor: PyTorch shape and f32 little-endian bytes.
pub(crate) type FileTensor<'a> = (Vec<usize>, &'a [u8]);

/// Replaces every float parameter of a module by the file's tensor under its PyTorch key,
/// checking shapes; the checksum comes out over the loaded values.
pub(crate) struct Apply<'a> {
    position: Position,
    file: HashMap<String, FileTensor<'a>>,
    pub used: usize,
    pub problems: Vec<String>,
    pub checksum: Checksum,
}

impl<'a> Apply<'a> {
    pub(crate) fn new(file: HashMap<String, FileTensor<'a>>) -> Self {
        Apply {
            position: Position::default(),
            file,
            used: 0,
            problems: Vec::new(),
            checksum: Checksum::new(),
        }
    }

    /// Keys of the file that no parameter took.
    pub(crate) fn unused(&self) -> Vec<String> {
        self.file.keys().cloned().collect()
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
        let Some((file_shape, bytes)) = self.file.remove(&key) else {
            self.problems
                .push(format!("`{key}` is missing from the file"));
            return param;
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
        let values = if transposed {
            transpose(bytes, file_shape[0], file_shape[1])
        } else {
            floats(bytes)
        };
        let data = TensorData::new(values, burn_shape);
        self.checksum.tensor(
            &self.position.burn_path.join("."),
            data.shape(),
            data.as_bytes(),
        );
        self.used += 1;
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
                .map(|(k, s, b)| (k.clone(), s.clone(), b.to_vec()))
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

    #[test]
    fn transposes_exactly() {
        let (rows, cols) = (37, 70);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = transpose(&bytes, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                let at = 4 * (c * rows + r);
                assert_eq!(t[at / 4], values[r * cols + c]);
            }
        }
    }
}
