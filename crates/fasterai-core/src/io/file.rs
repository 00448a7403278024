//! safetensors files tensor by tensor, straight between the file and each tensor's own buffer:
//! the file is never held whole in memory, and a CRC-32 of the whole file (header included,
//! with the checksum's own 8 hex digits counted as `00000000`) is computed on the way. On VGG16 (537 MB) the first touch of fresh memory costs more than copying into it, so
//! reads fill a buffer in parallel chunks, and writes copy chunks out on every core.
//! (A memory map would save no copy here: Burn owns its tensors' buffers, so the bytes are
//! copied into them either way.)

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use burn::tensor::Tensor;
use crc32fast::Hasher;
use rayon::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

use crate::error::{CoreError, Result};
use crate::linalg::transpose_rows_into;

/// Bytes per read call (and per CRC part).
const CHUNK: usize = 4 << 20;

/// Bytes per chunk copied out of a tensor for writing: larger, as a Linear weight's chunk is a
/// band of columns of Burn's buffer, and each of its rows costs a page walk.
const WRITE_CHUNK: usize = 16 << 20;

/// Largest safetensors header we accept (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// What a checksum's 8 hex digits count as while the CRC that fills them is computed.
const PLACEHOLDER: &str = "00000000";

/// One tensor of a file: type, shape and its byte range in the data section.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

impl Entry {
    /// Elements (the header check made sure the product does not overflow).
    pub fn elements(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64
    }
}

/// A file's validated header.
pub(crate) struct Header {
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub tensors: BTreeMap<String, Entry>,
    /// File offset of the data section.
    data_start: u64,
    data_len: u64,
    /// The 8 length bytes and the header JSON as stored.
    raw: Vec<u8>,
}

impl Header {
    /// Elements of all tensors (each takes at least one byte of the file, so this is at most
    /// the file's length).
    pub fn stored_values(&self) -> u64 {
        self.tensors.values().map(Entry::elements).sum()
    }

    /// The CRC-32 of the length bytes and the header with `"key":"XXXXXXXX"` counted as the
    /// placeholder: `None` unless the key appears exactly once, in exactly that form (a header
    /// that writes it otherwise cannot be checked, so it is not trusted).
    fn header_crc(&self, key: &str) -> Option<Hasher> {
        let pattern = format!("\"{key}\":\"");
        let at = find_once(&self.raw, pattern.as_bytes())? + pattern.len();
        let digits = self.raw.get(at..at + 9)?;
        if !(digits[..8].iter().all(u8::is_ascii_hexdigit) && digits[8] == b'"') {
            return None;
        }
        let mut crc = Hasher::new();
        crc.update(&self.raw[..at]);
        crc.update(PLACEHOLDER.as_bytes());
        crc.update(&self.raw[at + 8..]);
        Some(crc)
    }

    /// The tensors of the layer at `path` (`path` itself or `path.*`).
    pub fn tensors_under(&self, path: &str) -> Vec<(&String, &Entry)> {
        let prefix = format!("{path}.");
        self.tensors
            .iter()
            .filter(|(k, _)| *k == path || k.starts_with(&prefix))
            .collect()
    }
}

/// An open safetensors file whose tensors are read one by one.
pub(crate) struct Reader {
    file: File,
    pub header: Header,
    /// CRC of every byte range read so far, by offset in the data section.
    parts: Vec<(u64, Hasher)>,
}

impl Reader {
    /// Opens `path` and checks its header: valid JSON, known types, sizes that match shapes,
    /// and byte ranges that tile the data section exactly.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| CoreError::io(path, e))?;
        let header = read_header(&mut file, path)?;
        Ok(Reader {
            file,
            header,
            parts: Vec::new(),
        })
    }

    /// The raw bytes of `entry`.
    pub fn bytes(&mut self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        self.read_into(entry.start, &mut bytes)?;
        Ok(bytes)
    }

    /// The values of a float32 `entry`.
    pub fn floats(&mut self, entry: &Entry) -> std::io::Result<Vec<f32>> {
        let mut values = vec![0f32; (entry.end - entry.start) as usize / 4];
        self.read_into(entry.start, bytemuck::cast_slice_mut(&mut values))?;
        from_little_endian(&mut values);
        Ok(values)
    }

    /// The values of a float32 `[rows, cols]` `entry`, transposed to `[cols, rows]`: read in
    /// bands of rows that stay in cache, each scattered into its columns.
    pub fn floats_transposed(&mut self, entry: &Entry) -> std::io::Result<Vec<f32>> {
        let &[rows, cols] = entry.shape.as_slice() else {
            return self.floats(entry);
        };
        let mut out = vec![0f32; rows * cols];
        let band_rows = (CHUNK / (4 * cols.max(1))).clamp(1, rows.max(1));
        let mut band = vec![0f32; band_rows * cols];
        for first in (0..rows).step_by(band_rows) {
            let band = &mut band[..band_rows.min(rows - first) * cols];
            self.read_into(
                entry.start + (4 * first * cols) as u64,
                bytemuck::cast_slice_mut(band),
            )?;
            from_little_endian(band);
            transpose_rows_into(band, first, &mut out, rows, cols);
        }
        Ok(out)
    }

    /// Fills `buf` from `start` in the data section, in parallel chunks, keeping their CRCs.
    fn read_into(&mut self, start: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let (file, base) = (&self.file, self.header.data_start + start);
        let parts = buf
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                let offset = (i * CHUNK) as u64;
                read_at(file, chunk, base + offset)?;
                let mut crc = Hasher::new();
                crc.update(chunk);
                Ok((start + offset, crc))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        self.parts.extend(parts);
        Ok(())
    }

    /// The CRC-32 of the data section, once every byte of it has been read exactly once.
    pub fn crc32(&mut self) -> Option<u32> {
        self.data_crc().map(Hasher::finalize)
    }

    /// The CRC-32 of the whole file with the checksum stored under `key` counted as
    /// `00000000`, once every data byte has been read exactly once.
    pub fn file_crc32(&mut self, key: &str) -> Option<u32> {
        let mut total = self.header.header_crc(key)?;
        total.combine(&self.data_crc()?);
        Some(total.finalize())
    }

    fn data_crc(&mut self) -> Option<Hasher> {
        self.parts.sort_by_key(|(offset, _)| *offset);
        let mut total = Hasher::new();
        for (offset, part) in &self.parts {
            if *offset != total.total_len() {
                return None;
            }
            total.combine(part);
        }
        (total.total_len() == self.header.data_len).then_some(total)
    }

    /// Reads every tensor's bytes (in file order, through the CRC) without keeping them: what
    /// checks a file whose values are not needed.
    pub fn read_all(&mut self) -> std::io::Result<()> {
        let mut entries: Vec<Entry> = self.header.tensors.values().cloned().collect();
        entries.sort_by_key(|e| e.start);
        let mut buf = Vec::new();
        for entry in entries {
            let mut offset = entry.start;
            while offset < entry.end {
                let len = (entry.end - offset).min(CHUNK as u64) as usize;
                buf.resize(len, 0);
                self.read_into(offset, &mut buf)?;
                offset += len as u64;
            }
        }
        Ok(())
    }
}

fn read_header(file: &mut File, path: &Path) -> Result<Header> {
    let bad = |reason: String| CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let file_len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("file is too short to be safetensors".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(bad(
            "the header length is larger than the file: not safetensors, or truncated".into(),
        ));
    }
    let mut raw = vec![0u8; 8 + header_len as usize];
    raw[..8].copy_from_slice(&len_bytes);
    file.read_exact(&mut raw[8..])
        .map_err(|e| CoreError::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&raw[8..])
        .map_err(|_| bad("the header is not valid JSON: not safetensors, or damaged".into()))?;
    let serde_json::Value::Object(entries) = json else {
        return Err(bad("the header is not a JSON object".into()));
    };
    let mut metadata = serde_json::Map::new();
    let mut tensors = BTreeMap::new();
    for (key, value) in entries {
        if key == "__metadata__" {
            metadata = value.as_object().cloned().unwrap_or_default();
            continue;
        }
        let info: TensorInfo = serde_json::from_value(value)
            .map_err(|e| bad(format!("tensor `{key}` in the header: {e}")))?;
        let (start, end) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |n, &d| n.checked_mul(d));
        if end < start || bits != Some(8 * (end - start)) {
            return Err(bad(format!(
                "tensor `{key}`: {:?} {:?} does not fill its {} bytes",
                info.dtype,
                info.shape,
                end.saturating_sub(start)
            )));
        }
        tensors.insert(
            key,
            Entry {
                dtype: info.dtype,
                shape: info.shape,
                start: start as u64,
                end: end as u64,
            },
        );
    }
    let data_len = file_len - 8 - header_len;
    let mut ranges: Vec<(&String, &Entry)> = tensors.iter().collect();
    ranges.sort_by_key(|(_, e)| (e.start, e.end));
    let mut covered = 0;
    for (key, entry) in ranges {
        if entry.start != covered {
            return Err(bad(format!(
                "the bytes of tensor `{key}` overlap another's or leave a gap: damaged"
            )));
        }
        covered = entry.end;
    }
    if covered > data_len {
        return Err(bad(format!(
            "truncated: tensors need {covered} bytes of data, the file has {data_len}"
        )));
    }
    if covered < data_len {
        return Err(bad(format!(
            "{} bytes after the last tensor: damaged",
            data_len - covered
        )));
    }
    Ok(Header {
        metadata,
        tensors,
        data_start: 8 + header_len,
        data_len,
        raw,
    })
}

/// Where a tensor's bytes come from when a file is written.
pub(crate) enum Payload {
    /// A float tensor in the file's layout, read out in chunks of rows.
    Rows(Box<Tensor<2>>),
    /// Bytes as they are (integer codes, scales).
    Bytes(Vec<u8>),
    /// Float values on the host.
    Floats(Vec<f32>),
}

/// A tensor to write: key, type, shape, bytes.
pub(crate) struct Outgoing {
    pub key: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub payload: Payload,
}

/// Writes a safetensors file to `path` with `metadata`, and under `crc_key` the CRC-32 of the
/// whole file with those 8 hex digits counted as `00000000`. The header is written first with
/// the placeholder, which is filled in once the data has streamed past.
pub(crate) fn write(
    path: &Path,
    metadata: BTreeMap<String, String>,
    crc_key: &str,
    tensors: Vec<Outgoing>,
) -> std::io::Result<()> {
    let (json, crc_at, data_len) = header(metadata, crc_key, &tensors)?;
    let mut file = File::create(path)?;
    let len_bytes = (json.len() as u64).to_le_bytes();
    file.write_all(&len_bytes)?;
    file.write_all(&json)?;
    let mut total = Hasher::new();
    total.update(&len_bytes);
    total.update(&json);
    let mut data = DataSink {
        file,
        crc: Hasher::new(),
    };
    for t in tensors {
        match t.payload {
            Payload::Bytes(bytes) => data.put(&bytes)?,
            Payload::Floats(values) => data.put_chunks(&[values])?,
            Payload::Rows(values) => write_rows(&values, &mut data)?,
        }
    }
    let DataSink { mut file, crc } = data;
    if crc.total_len() != data_len {
        return Err(std::io::Error::other(format!(
            "wrote {} bytes of tensor data where the header announces {data_len}",
            crc.total_len()
        )));
    }
    total.combine(&crc);
    file.seek(SeekFrom::Start(8 + crc_at as u64))?;
    file.write_all(format!("{:08x}", total.finalize()).as_bytes())?;
    file.flush()
}

/// The header JSON (metadata first, then the tensors in file order, as other writers do,
/// padded with spaces to a multiple of 8 bytes as the format asks), the offset in it of the
/// CRC placeholder, and the length of the data section.
fn header(
    metadata: BTreeMap<String, String>,
    crc_key: &str,
    tensors: &[Outgoing],
) -> std::io::Result<(Vec<u8>, usize, u64)> {
    let mut metadata: serde_json::Map<_, _> = metadata
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    metadata.insert(crc_key.into(), PLACEHOLDER.into());
    let mut json = format!("{{\"__metadata__\":{}", serde_json::to_string(&metadata)?);
    let mut offset = 0usize;
    for t in tensors {
        let size = t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8;
        let info = TensorInfo {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data_offsets: (offset, offset + size),
        };
        json += &format!(
            ",{}:{}",
            serde_json::to_string(&t.key)?,
            serde_json::to_string(&info)?
        );
        offset += size;
    }
    json.push('}');
    let mut json = json.into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let pattern = format!("\"{crc_key}\":\"{PLACEHOLDER}\"");
    let crc_at = find_once(&json, pattern.as_bytes())
        .map(|at| at + pattern.len() - PLACEHOLDER.len() - 1)
        .ok_or_else(|| std::io::Error::other("the CRC placeholder is not unique in the header"))?;
    Ok((json, crc_at, offset as u64))
}

/// The data section on its way out: written to the file and through the CRC.
struct DataSink {
    file: File,
    crc: Hasher,
}

impl DataSink {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.file.write_all(bytes)
    }

    fn put_chunks(&mut self, chunks: &[Vec<f32>]) -> std::io::Result<()> {
        chunks
            .iter()
            .try_for_each(|c| self.put(bytemuck::cast_slice(c)))
    }
}

/// Streams a `[rows, cols]` tensor in chunks of rows, copied out on every core (a Linear
/// weight's rows are strided columns of Burn's buffer), a window at a time, while the previous
/// window is written.
fn write_rows(values: &Tensor<2>, data: &mut DataSink) -> std::io::Result<()> {
    let [rows, cols] = values.dims();
    let step = (WRITE_CHUNK / (4 * cols.max(1))).max(1);
    let ranges: Vec<_> = (0..rows)
        .step_by(step)
        .map(|first| first..(first + step).min(rows))
        .collect();
    let copy_out = |range: &std::ops::Range<usize>| -> std::io::Result<Vec<f32>> {
        let data = values.clone().slice([range.clone()]).into_data();
        let mut chunk = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(std::io::Error::other)?;
        to_little_endian(&mut chunk);
        Ok(chunk)
    };
    let mut pending: Vec<Vec<f32>> = Vec::new();
    for window in ranges.chunks(rayon::current_num_threads()) {
        let (written, next) = rayon::join(
            || data.put_chunks(&pending),
            || {
                window
                    .par_iter()
                    .map(copy_out)
                    .collect::<std::io::Result<_>>()
            },
        );
        written?;
        pending = next?;
    }
    data.put_chunks(&pending)
}

fn find_once(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut hits = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    match (hits.next(), hits.next()) {
        (Some((at, _)), None) => Some(at),
        _ => None,
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// File values are little-endian; on a big-endian machine they are swapped in place.
fn from_little_endian(values: &mut [f32]) {
    if cfg!(target_endian = "big") {
        values
            .iter_mut()
            .for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
    }
}

fn to_little_endian(values: &mut [f32]) {
    if cfg!(target_endian = "big") {
        values
            .iter_mut()
            .for_each(|v| *v = f32::from_bits(v.to_bits().to_le()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_exactly_band_by_band() {
        let (rows, cols) = (37, 70);
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        for band_rows in [1, 5, 37] {
            let mut out = vec![f32::NAN; rows * cols];
            for first in (0..rows).step_by(band_rows) {
                let last = (first + band_rows).min(rows);
                transpose_rows_into(
                    &values[first * cols..last * cols],
                    first,
                    &mut out,
                    rows,
                    cols,
                );
            }
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[c * rows + r], values[r * cols + c]);
                }
            }
        }
    }

    #[test]
    fn the_crc_needs_every_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let device = burn::tensor::Device::flex();
        let a = Tensor::<2>::from_data(
            burn::tensor::TensorData::new((0..12).map(|i| i as f32).collect(), [3, 4]),
            &device,
        );
        let tensors = vec![
            Outgoing {
                key: "a".into(),
                dtype: Dtype::F32,
                shape: vec![3, 4],
                payload: Payload::Rows(Box::new(a)),
            },
            Outgoing {
                key: "b".into(),
                dtype: Dtype::I8,
                shape: vec![3],
                payload: Payload::Bytes(vec![1, 2, 3]),
            },
        ];
        write(&path, BTreeMap::new(), "crc", tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The safetensors crate reads it back.
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("b").unwrap().data(), [1, 2, 3]);
        let mut reader = Reader::open(&path).unwrap();
        let stored = reader.header.metadata["crc"].as_str().unwrap().to_string();
        let a = reader.header.tensors["a"].clone();
        let b = reader.header.tensors["b"].clone();
        assert_eq!(
            reader.floats_transposed(&a).unwrap()[..4],
            [0.0, 4.0, 8.0, 1.0]
        );
        assert_eq!(reader.crc32(), None, "`b` not read yet");
        assert_eq!(reader.bytes(&b).unwrap(), [1, 2, 3]);
        let data_crc = crc32fast::hash(&bytes[bytes.len() - 12 * 4 - 3..]);
        assert_eq!(reader.crc32(), Some(data_crc));
        // The stored CRC covers the whole file, its own digits counted as zeros.
        let mut blank = bytes.clone();
        let at = find_once(&blank, stored.as_bytes()).unwrap();
        blank[at..at + 8].copy_from_slice(PLACEHOLDER.as_bytes());
        let whole = crc32fast::hash(&blank);
        assert_eq!(stored, format!("{whole:08x}"));
        assert_eq!(reader.file_crc32("crc"), Some(whole));
    }
}
