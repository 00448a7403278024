//! File helpers: NumPy arrays in and out, written atomically, never over the input.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use npyz::WriterBuilder;

/// A float32 array read from a `.npy` file.
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Opens a C-ordered `.npy` file and returns its shape and parser. The header's shape is checked
/// against the file's size (at least `min_bytes` per element) before anything is parsed, so no
/// header can make a reader allocate more than the file holds.
fn open_npy(path: &Path, min_bytes: u64) -> Result<(Vec<usize>, npyz::NpyFile<BufReader<File>>)> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let shape = npy_shape(&mut file)
        .with_context(|| format!("{} is not a NumPy .npy file", path.display()))?;
    if shape.contains(&0) {
        bail!("{} is empty (shape {shape:?})", path.display());
    }
    let elements = fasterai::core::limits::product(&shape);
    if elements.is_none_or(|n| n.saturating_mul(min_bytes) > file_len) {
        bail!(
            "{}: shape {shape:?} needs more data than the file holds ({file_len} bytes): \
             truncated or damaged",
            path.display()
        );
    }
    file.seek(SeekFrom::Start(0))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{} is not a NumPy .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{} is Fortran-ordered; save it with np.ascontiguousarray",
            path.display()
        );
    }
    Ok((shape, npy))
}

/// Reads a C-ordered float32 `.npy` file (checked against its size before parsing).
pub fn read_npy(path: &Path) -> Result<Array> {
    let (shape, npy) = open_npy(path, 4)?;
    let dtype = npy.dtype();
    let data = npy.into_vec::<f32>().map_err(|e| {
        anyhow::anyhow!(
            "{}: expected float32 data, found {dtype:?} ({e}); convert with x.astype(np.float32)",
            path.display()
        )
    })?;
    Ok(Array { shape, data })
}

/// Token ids read from an int64 or int32 `.npy` file, as the floats a graph reads (exact below
/// 2²⁴); any id past that is an error here, the vocabulary is checked by the caller.
pub fn read_npy_ids(path: &Path) -> Result<Array> {
    let (shape, npy) = open_npy(path, 4)?;
    let dtype = npy.dtype().descr().trim_matches('\'').to_string();
    let ids: Vec<i64> = match dtype.as_str() {
        "<i8" => npy.into_vec::<i64>()?,
        "<i4" => npy.into_vec::<i32>()?.into_iter().map(i64::from).collect(),
        other => bail!(
            "{}: token ids must be int64 or int32, found {other}; convert with x.astype(np.int64)",
            path.display()
        ),
    };
    let limit = fasterai::core::graph::ops::embedding::MAX_VOCABULARY as i64;
    if let Some(bad) = ids.iter().find(|&&id| !(0..limit).contains(&id)) {
        bail!("{}: token id {bad} is outside 0..{limit}", path.display());
    }
    Ok(Array {
        shape,
        data: ids.into_iter().map(|id| id as f32).collect(),
    })
}

/// The shape in a `.npy` header (`'shape': (1, 3, 32, 32)`), read with bounded effort: the
/// magic, a version-dependent header length, then the dictionary text.
fn npy_shape(file: &mut File) -> Result<Vec<usize>> {
    let mut start = [0u8; 10];
    file.read_exact(&mut start).context("too short")?;
    if &start[..6] != b"\x93NUMPY" {
        bail!("no NumPy magic");
    }
    let header_len = match start[6] {
        1 => u16::from_le_bytes([start[8], start[9]]) as u64,
        2 | 3 => {
            let mut rest = [0u8; 2];
            file.read_exact(&mut rest)?;
            u32::from_le_bytes([start[8], start[9], rest[0], rest[1]]) as u64
        }
        v => bail!("unknown format version {v}"),
    };
    if header_len > 1 << 20 {
        bail!("a header of {header_len} bytes");
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).context("truncated header")?;
    let header = String::from_utf8_lossy(&header);
    let shape = header
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(dims, _)| dims)
        .context("no shape in the header")?;
    shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!("dimension `{d}` is not a size"))
        })
        .collect()
}

/// Writes a float32 `.npy` file atomically. Refuses to replace `protect` (the input), and an
/// existing file unless `force`.
pub fn write_npy(
    path: &Path,
    shape: &[usize],
    data: &[f32],
    protect: &[&Path],
    force: bool,
) -> Result<()> {
    refuse_overwrite(path, protect, force)?;
    atomically(path, |out| {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(out)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()?;
        Ok(())
    })
}

/// Writes `bytes` to `path` atomically (a report, a history).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomically(path, |out| Ok(out.write_all(bytes)?))
}

/// Writes through `write` into a temporary sibling of `path`, then renames it into place, so
/// `path` is never left half-written.
fn atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    fasterai::core::io::remove_orphaned_temporaries(path);
    let tmp = fasterai::core::io::temp_sibling(path);
    let result = (|| -> Result<()> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Errors if writing `path` would replace one of the inputs, or an existing file without `force`.
pub fn refuse_overwrite(path: &Path, protect: &[&Path], force: bool) -> Result<()> {
    for input in protect {
        if same_file(path, input) {
            bail!(
                "refusing to write the output over the input file {}",
                input.display()
            );
        }
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    // Checked now, not when the first epoch's checkpoint is written.
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist; create it first",
            path.display(),
            folder.display()
        );
    }
    // A folder that cannot be written fails now, not after an epoch of training.
    let probe = fasterai::core::io::temp_sibling(path);
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .with_context(|| format!("cannot write to the folder {}", folder.display()))?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
