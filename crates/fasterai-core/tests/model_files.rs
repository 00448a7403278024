//! Model files: round trip, and a clear error for every kind of bad file.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Distribution, Tensor};
use fasterai_core::io::{
    ARCHITECTURE_KEY, CHECKSUM_KEY, CRC_KEY, FILE_CRC_KEY, Integrity, load_architecture,
    load_model, pytorch_tensors, read_safetensors_metadata, save_model, verify_file,
};
use fasterai_core::prelude::*;
use fasterai_core::testing::{tiny_cnn, tiny_resnet};

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn saved_tiny(dir: &Path) -> (Model, std::path::PathBuf) {
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device())).unwrap();
    let path = dir.join("tiny.safetensors");
    save_model(&model, &path, false).unwrap();
    (model, path)
}

fn outputs(model: &Model) -> Vec<f32> {
    device().seed(7);
    let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device());
    model
        .net
        .try_forward(x)
        .unwrap()
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    let loaded = load_model(&path, &device()).unwrap();
    assert_eq!(loaded.architecture(), model.architecture());
    assert_eq!(outputs(&loaded), outputs(&model));
    // PyTorch-style keys and layouts in the file.
    let meta = read_safetensors_metadata(&path).unwrap();
    assert!(meta.contains_key(ARCHITECTURE_KEY));
    // The architecture alone (what `inspect` reads) describes the same model.
    let skeleton = load_architecture(&path, &device()).unwrap();
    assert_eq!(skeleton.architecture(), model.architecture());
    assert_eq!(skeleton.num_params(), model.num_params());
    assert_eq!(skeleton.macs().unwrap(), model.macs().unwrap());
}

/// Tensors larger than one read or write chunk (4 MB): parallel chunked reads, a Linear weight
/// transposed band by band, rows streamed out in several pieces; the file holds PyTorch's
/// layout and loads back bit for bit.
#[test]
fn large_tensors_round_trip_in_chunks() {
    let mut g = GraphBuilder::new();
    g.then("flatten", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(3 * 40 * 40, 1100));
    g.then("relu", LayerSpec::relu());
    g.then("head", LayerSpec::linear(1100, 1001));
    let net = fasterai_core::testing::random_graph(&g.build(), &device());
    let model = Model::new("wide", vec![3, 40, 40], net).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.safetensors");
    save_model(&model, &path, false).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let weight = file.tensor("fc.weight").unwrap();
    assert_eq!(weight.shape(), [1100, 4800]);
    assert!(weight.data().len() > 2 * (4 << 20));
    let burn_weight = model.net.get("fc").unwrap().torch_weight().unwrap().1;
    assert_eq!(weight.data(), bytemuck_bytes(&burn_weight));
    let loaded = load_model(&path, &device()).unwrap();
    assert_eq!(
        pytorch_tensors(&loaded.net).unwrap(),
        pytorch_tensors(&model.net).unwrap()
    );
}

fn bytemuck_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn existing_file_is_not_overwritten_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    let before = std::fs::read(&path).unwrap();
    let err = save_model(&model, &path, false).unwrap_err();
    assert!(matches!(err, CoreError::WouldOverwrite(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    save_model(&model, &path, true).unwrap();
}

#[test]
fn truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved_tiny(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    for keep in [0, 5, 100, bytes.len() - 10] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_model(&path, &device()).unwrap_err();
        assert!(
            matches!(err, CoreError::BadModelFile { .. }),
            "keep {keep}: {err}"
        );
    }
}

/// Copies `from` to `to` with `mask` flipped in the byte `from_end` bytes before the end.
fn flip_bit(from: &Path, to: &Path, from_end: usize, mask: u8) {
    let mut bytes = std::fs::read(from).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= mask;
    std::fs::write(to, &bytes).unwrap();
}

#[test]
fn corrupted_data_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved_tiny(dir.path());
    flip_bit(&path, &path, 3, 0x40); // one bit of the last tensor
    let err = load_model(&path, &device()).unwrap_err();
    assert!(err.to_string().contains("changed or damaged"), "{err}");
}

#[test]
fn files_of_the_older_checksum_are_still_verified() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1_vgg11_bn_small.safetensors");
    let meta = read_safetensors_metadata(&fixture).unwrap();
    assert!(meta.contains_key(CHECKSUM_KEY) && !meta.contains_key(CRC_KEY));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    flip_bit(&fixture, &path, 5, 0x01);
    let err = load_model(&path, &device()).unwrap_err();
    assert!(err.to_string().contains("changed or damaged"), "{err}");
}

/// Our writer's files read back with the `safetensors` crate: PyTorch keys and layouts, the
/// same values as `pytorch_tensors`, and the CRC-32 of the data section in the metadata.
#[test]
fn saved_files_are_plain_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new("tiny", vec![3, 16, 16], tiny_resnet(3, 5, &device())).unwrap();
    let path = dir.path().join("tiny.safetensors");
    save_model(&model, &path, false).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let expected = pytorch_tensors(&model.net).unwrap();
    assert_eq!(file.len(), expected.len());
    for (key, data) in &expected {
        let view = file.tensor(key).unwrap();
        assert_eq!(view.shape(), data.shape().as_slice(), "{key}");
        assert_eq!(view.data(), data.as_bytes(), "{key}");
    }
    // The checksum is the CRC-32 of the whole file with its own digits counted as zeros.
    let meta = read_safetensors_metadata(&path).unwrap();
    let stored = meta[FILE_CRC_KEY].as_str().unwrap();
    let pattern = format!("\"{FILE_CRC_KEY}\":\"{stored}\"");
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_bytes())
        .unwrap()
        + pattern.len()
        - 9;
    let mut blank = bytes.clone();
    blank[at..at + 8].copy_from_slice(b"00000000");
    assert_eq!(stored, format!("{:08x}", crc32fast::hash(&blank)));
    assert!(!meta.contains_key(CRC_KEY));
    assert_eq!(verify_file(&path).unwrap(), Integrity::Verified);
}

/// Replaces the first `from` in the file's header by `to` (same length: the file stays valid
/// safetensors).
fn edit_header(path: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("`{from}` is not in the header"));
    bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn any_change_to_the_header_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    // A hyper-parameter (a batch norm's ε: still a valid model, with other outputs). The
    // architecture is a JSON string in the header: its quotes are escaped.
    let (_, path) = saved_tiny(dir.path());
    edit_header(&path, r#"eps\":0.00001"#, r#"eps\":0.00009"#);
    let err = load_model(&path, &device()).unwrap_err().to_string();
    assert!(err.contains("changed or damaged"), "{err}");
    assert!(verify_file(&path).is_err());
    // The checksum itself removed (renamed): a current file without one is refused.
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved_tiny(dir.path());
    edit_header(&path, FILE_CRC_KEY, "fasterai.file_crc3X");
    let err = load_model(&path, &device()).unwrap_err().to_string();
    assert!(err.contains("carries no checksum"), "{err}");
}

#[test]
fn files_of_the_data_only_checksum_load_with_their_header_unverified() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v2_data_crc_vgg11_bn_small.safetensors");
    let meta = read_safetensors_metadata(&fixture).unwrap();
    assert!(meta.contains_key(CRC_KEY) && !meta.contains_key(FILE_CRC_KEY));
    load_model(&fixture, &device()).unwrap();
    assert_eq!(verify_file(&fixture).unwrap(), Integrity::OlderFormat);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    flip_bit(&fixture, &path, 5, 0x01);
    let err = load_model(&path, &device()).unwrap_err();
    assert!(err.to_string().contains("changed or damaged"), "{err}");
    // Plain safetensors (no fasterai metadata) carry no checksum.
    let plain = dir.path().join("plain.safetensors");
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data);
    let bytes = safetensors::serialize([("w", view.unwrap())], None).unwrap();
    std::fs::write(&plain, bytes).unwrap();
    assert_eq!(verify_file(&plain).unwrap(), Integrity::Unverified);
}

#[test]
fn corrupted_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = saved_tiny(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] = b'#';
    std::fs::write(&path, &bytes).unwrap();
    let err = load_model(&path, &device()).unwrap_err();
    assert!(matches!(err, CoreError::BadModelFile { .. }), "{err}");
}

/// Writes `model`'s weights with an arbitrary architecture string in the metadata.
fn write_with_architecture(model: &Model, path: &Path, arch: &str) {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata(ARCHITECTURE_KEY, arch)
        .overwrite(true);
    model.net.save_into(&mut store).unwrap();
}

#[test]
fn weights_that_do_not_fit_the_architecture_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    let mut other = model.architecture();
    // Claim 7 classes while the weights have 5.
    let json = serde_json::to_string(&other)
        .unwrap()
        .replace(r#""out_features":5"#, r#""out_features":7"#);
    other = serde_json::from_str(&json).unwrap();
    write_with_architecture(&model, &path, &serde_json::to_string(&other).unwrap());
    let err = load_model(&path, &device()).unwrap_err();
    assert!(matches!(err, CoreError::WeightMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("12.weight") || err.to_string().contains("12.bias"),
        "{err}"
    );
}

#[test]
fn unknown_layer_type_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    let json = serde_json::to_string(&model.architecture())
        .unwrap()
        .replace(r#""type":"ReLU""#, r#""type":"SelectiveScan""#);
    write_with_architecture(&model, &path, &json);
    let err = load_model(&path, &device()).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `SelectiveScan`"),
        "{err}"
    );
}

#[test]
fn bare_safetensors_without_architecture_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device())).unwrap();
    let path = dir.path().join("bare.safetensors");
    let mut store = SafetensorsStore::from_file(&path).with_to_adapter(BurnToPyTorchAdapter);
    model.net.save_into(&mut store).unwrap();
    let err = load_model(&path, &device()).unwrap_err();
    assert!(err.to_string().contains("fasterai import"), "{err}");
}

#[test]
fn missing_file_is_an_io_error() {
    let err = load_model(Path::new("/nonexistent/model.safetensors"), &device()).unwrap_err();
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
}

#[test]
fn parameter_count_from_spec_equals_count_from_tensors() {
    let net = tiny_cnn(3, 5, &device());
    let expected = (8 * 27 + 8) + 16 + (16 * 72 + 16) + 32 + (256 * 32 + 32) + (32 * 5 + 5);
    assert_eq!(net.spec().params(), expected);
    assert_eq!(count_parameters(&net), expected);
}

#[test]
fn try_forward_rejects_wrong_input_shapes() {
    let net = tiny_cnn(3, 5, &device());
    let x = Tensor::<4>::zeros([2, 1, 16, 16], &device());
    let err = net.try_forward(x).unwrap_err();
    assert!(
        err.to_string().contains("`0`") && err.to_string().contains("3 input channels"),
        "{err}"
    );
    let x = Tensor::<4>::zeros([2, 3, 8, 8], &device());
    let err = net.try_forward(x).unwrap_err();
    assert!(err.to_string().contains("`9`"), "{err}"); // the first Linear sees 16·2·2 features
}

#[test]
fn files_written_by_the_version_one_format_still_load_and_compute_the_same() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let model = load_model(&fixtures.join("v1_vgg11_bn_small.safetensors"), &device()).unwrap();
    assert_eq!(model.name, "vgg11_bn_small_w0.0625+sparse+pruned");
    assert_eq!(model.num_params(), 21_617);
    // Version 1 paths survive as node names.
    assert!(model.net.get("features.0").is_some() && model.net.get("classifier.0").is_some());

    let n = 2 * 3 * 32 * 32;
    let x: Vec<f32> = (0..n).map(|i| (0.37 * i as f64).sin() as f32).collect();
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(x, [2, 3, 32, 32]), &device());
    let y = model.net.try_forward(x).unwrap().flatten();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("v1_vgg11_bn_small.outputs.json")).unwrap(),
    )
    .unwrap();
    let expected: Vec<f32> = expected["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(y.dims(), [2, 3]);
    let got = y.into_data().try_to_vec::<f32>().unwrap();
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-4 * scale, "{got:?} vs {expected:?}");
    }
}

#[test]
fn a_failed_save_leaves_the_previous_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    let before = std::fs::read(&path).unwrap();
    // Block the temporary's name so the write fails midway.
    let temp = fasterai_core::io::temp_sibling(&path);
    std::fs::create_dir(&temp).unwrap();
    let err = save_model(&model, &path, true).unwrap_err();
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the previous file changed"
    );
    std::fs::remove_dir(&temp).unwrap();
    // A successful save leaves only the file.
    save_model(&model, &path, true).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["tiny.safetensors"]);
    assert_eq!(
        outputs(&load_model(&path, &device()).unwrap()),
        outputs(&model)
    );
}

#[test]
fn a_save_removes_temporaries_of_killed_writers_only() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved_tiny(dir.path());
    // A writer killed mid-save (no such process) and a live one (init, pid 1).
    let orphan = dir.path().join(".tiny.safetensors.4294967295.tmp");
    let live = dir.path().join(".tiny.safetensors.1.tmp");
    let unrelated = dir.path().join(".other.safetensors.4294967295.tmp");
    for f in [&orphan, &live, &unrelated] {
        std::fs::write(f, b"partial").unwrap();
    }
    save_model(&model, &path, true).unwrap();
    assert!(!orphan.exists(), "the killed writer's temporary is removed");
    assert!(live.exists() && unrelated.exists());
}
