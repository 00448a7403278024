//! Constant tensors: initializers and `Constant` values decoded from `TensorProto`, and the
//! shape arithmetic exporters leave behind (`Shape → Gather → Concat → Reshape`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use burn::tensor::f16;

use crate::error::{OnnxError, Result};
use crate::proto::{EXTERNAL, TensorProto, data_type};

/// A constant tensor with its dimensions (empty for a scalar).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

/// Float values, or integers where `None` is a size known only at run time (the batch).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConstData {
    F32(Vec<f32>),
    I64(Vec<Option<i64>>),
}

impl Const {
    pub fn ints(values: Vec<Option<i64>>) -> Self {
        Const {
            dims: vec![values.len()],
            data: ConstData::I64(values),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// The values as floats (integers converted); `None` when a value is unknown.
    pub fn floats(&self) -> Option<Vec<f32>> {
        match &self.data {
            ConstData::F32(v) => Some(v.clone()),
            ConstData::I64(v) => v.iter().map(|x| x.map(|x| x as f32)).collect(),
        }
    }

    /// The values as integers (`None` entries for run-time sizes); floats must be whole.
    pub fn int_values(&self) -> Option<Vec<Option<i64>>> {
        match &self.data {
            ConstData::I64(v) => Some(v.clone()),
            ConstData::F32(v) => v
                .iter()
                .map(|&x| (x.fract() == 0.0).then_some(Some(x as i64)))
                .collect(),
        }
    }

    /// The single value of a scalar or one-element tensor, as a float.
    pub fn scalar(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.floats()?.first().copied())?
    }
}

/// Decodes a tensor; external data is read relative to `base` (the model's folder).
pub(crate) fn decode(t: &TensorProto, base: Option<&Path>) -> Result<Const> {
    let bad = |reason: String| OnnxError::Tensor {
        name: t.name.clone(),
        reason,
    };
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<Vec<usize>>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("too many elements".into()))?;
    let external;
    let raw: &[u8] = if t.data_location == EXTERNAL {
        external = read_external(t, base, count)?;
        &external
    } else {
        &t.raw_data
    };
    let check = |n: usize| {
        if n == count {
            Ok(())
        } else {
            Err(bad(format!(
                "holds {n} values but its dimensions {dims:?} need {count}"
            )))
        }
    };
    let chunks = |size: usize| -> Result<std::slice::ChunksExact<'_, u8>> {
        if !raw.len().is_multiple_of(size) {
            return Err(bad(format!(
                "{} bytes of data is not a whole number of {size}-byte values",
                raw.len()
            )));
        }
        check(raw.len() / size)?;
        Ok(raw.chunks_exact(size))
    };
    let data = match t.data_type {
        data_type::FLOAT if !raw.is_empty() => ConstData::F32(
            chunks(4)?
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        data_type::FLOAT => {
            check(t.float_data.len())?;
            ConstData::F32(t.float_data.clone())
        }
        data_type::DOUBLE if !raw.is_empty() => ConstData::F32(
            chunks(8)?
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        ),
        data_type::DOUBLE => {
            check(t.double_data.len())?;
            ConstData::F32(t.double_data.iter().map(|&x| x as f32).collect())
        }
        data_type::FLOAT16 if !raw.is_empty() => ConstData::F32(
            chunks(2)?
                .map(|b| f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32())
                .collect(),
        ),
        data_type::FLOAT16 => {
            check(t.int32_data.len())?;
            ConstData::F32(
                t.int32_data
                    .iter()
                    .map(|&bits| f16::from_bits(bits as u16).to_f32())
                    .collect(),
            )
        }
        data_type::INT64 if !raw.is_empty() => ConstData::I64(
            chunks(8)?
                .map(|b| Some(i64::from_le_bytes(b.try_into().expect("8 bytes"))))
                .collect(),
        ),
        data_type::INT64 => {
            check(t.int64_data.len())?;
            ConstData::I64(t.int64_data.iter().map(|&x| Some(x)).collect())
        }
        data_type::INT32 if !raw.is_empty() => ConstData::I64(
            chunks(4)?
                .map(|b| Some(i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64))
                .collect(),
        ),
        data_type::INT32 => {
            check(t.int32_data.len())?;
            ConstData::I64(t.int32_data.iter().map(|&x| Some(x as i64)).collect())
        }
        // Integer codes (a quantized model's weights and zero points): read, so that the
        // error that follows names the op that uses them (`QuantizeLinear`), not their type.
        data_type::INT8 | data_type::UINT8 if !raw.is_empty() => {
            let signed = t.data_type == data_type::INT8;
            ConstData::I64(
                chunks(1)?
                    .map(|b| {
                        Some(if signed {
                            b[0] as i8 as i64
                        } else {
                            b[0] as i64
                        })
                    })
                    .collect(),
            )
        }
        data_type::INT8 | data_type::UINT8 => {
            check(t.int32_data.len())?;
            ConstData::I64(t.int32_data.iter().map(|&x| Some(x as i64)).collect())
        }
        other => {
            return Err(bad(format!(
                "data type {other} is not supported (float32, float64, float16, int32, int64, \
                 int8, uint8 are)"
            )));
        }
    };
    Ok(Const { dims, data })
}

/// Reads the bytes of a tensor stored beside the model (`location`, `offset`, `length`).
fn read_external(t: &TensorProto, base: Option<&Path>, count: usize) -> Result<Vec<u8>> {
    let bad = |reason: String| OnnxError::Tensor {
        name: t.name.clone(),
        reason,
    };
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location =
        entry("location").ok_or_else(|| bad("stored externally but names no `location`".into()))?;
    let relative = Path::new(location);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(bad(format!(
            "external data `{location}` must be a path inside the model's folder"
        )));
    }
    let base = base.ok_or_else(|| {
        bad(format!(
            "stored in the external file `{location}`; import from a file path so it can be found"
        ))
    })?;
    let path = base.join(relative);
    // A link may not lead out of the model's folder, and only a regular file is read: a FIFO
    // or device would block the import forever or stream without end.
    let inside = |p: &Path| {
        let (Ok(p), Ok(b)) = (p.canonicalize(), base.canonicalize()) else {
            return false;
        };
        p.starts_with(b)
    };
    if !inside(&path) {
        return Err(bad(format!(
            "external data `{location}` resolves outside the model's folder (a link?) or is \
             missing; copy the data file next to the model"
        )));
    }
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(bad(format!(
            "external data `{location}` is not a regular file"
        )));
    }
    let number = |key: &str| -> Result<Option<u64>> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("external `{key}` = `{v}` is not a number")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let mut file = File::open(&path).map_err(|e| {
        bad(format!(
            "its external data file {} cannot be opened: {e}",
            path.display()
        ))
    })?;
    let file_len = file.metadata().map_err(|e| OnnxError::io(&path, e))?.len();
    let element = match t.data_type {
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::DOUBLE | data_type::INT64 => 8,
        data_type::FLOAT16 => 2,
        _ => 1,
    };
    let length = number("length")?.unwrap_or((count * element) as u64);
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(bad(format!(
            "needs bytes {offset}..{} of {}, which has {file_len}: truncated?",
            offset.saturating_add(length),
            path.display()
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| OnnxError::io(&path, e))?;
    Ok(bytes)
}

/// A float32 initializer stored as raw little-endian bytes.
pub(crate) fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        raw_data: values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

/// An int8 initializer (quantized weights, zero points).
pub(crate) fn int8_tensor(name: &str, dims: &[usize], values: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT8,
        raw_data: values.iter().map(|&v| v as u8).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

/// An int64 initializer (shapes).
pub(crate) fn int_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        raw_data: values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}
