//! The data formats on the real files in `../shared/data` and on malformed ones made here, and
//! batching (normalisation, augmentation).

use std::io::Write;
use std::path::Path;

use fasterai_core::device::parse_device;
use fasterai_core::testing::shared_data;
use fasterai_train::DataSource;
use fasterai_train::data::{
    Augment, DataError, Normalize, read_cifar10, read_idx, read_image_folder, synthetic,
};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn cifar_record(label: u8, value: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(value, 3072));
    r
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn real_cifar10_batches_have_the_published_class_counts() {
    let Some(dir) = shared_data("cifar-10-batches-bin") else {
        return;
    };
    let b1 = read_cifar10(&dir.join("data_batch_1.bin.gz")).unwrap();
    assert_eq!(b1.len(), 10_000);
    assert_eq!(b1.shape(), [3, 32, 32]);
    assert_eq!(
        b1.class_counts(),
        [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    );
    let source = DataSource {
        train_files: vec!["data_batch_1".into(), "data_batch_2".into()],
        valid_files: vec!["test_batch_first1000".into()],
        ..format!("cifar10:{}", dir.display()).parse().unwrap()
    };
    let splits = source.load().unwrap();
    assert_eq!(splits.train.len(), 20_000);
    assert_eq!(
        splits.valid.class_counts(),
        [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    );
    // Without test_batch in the folder, the default validation split is a clear error.
    let default: DataSource = format!("cifar10:{}", dir.display()).parse().unwrap();
    assert!(matches!(default.load(), Err(DataError::Missing { .. })));
}

#[test]
fn real_fashion_mnist_has_6000_images_per_class() {
    let Some(dir) = shared_data("fashion-mnist") else {
        return;
    };
    let source: DataSource = format!("fashion-mnist:{}", dir.display()).parse().unwrap();
    let splits = source.load().unwrap();
    assert_eq!(splits.train.shape(), [1, 28, 28]);
    assert_eq!(splits.train.class_counts(), vec![6000; 10]);
    assert_eq!(splits.valid.class_counts(), vec![1000; 10]);
    assert_eq!(splits.train.classes()[9], "Ankle boot");
}

#[test]
fn malformed_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // CIFAR-10: good (raw and gzipped), truncated, bad label, corrupted gzip.
    let mut good = cifar_record(3, 7);
    good.extend(cifar_record(9, 200));
    let raw = read_cifar10(&write("good.bin", &good)).unwrap();
    let gz = read_cifar10(&write("good.bin.gz", &gzip(&good))).unwrap();
    assert_eq!(raw.labels(), [3, 9]);
    assert_eq!(gz.labels(), raw.labels());
    assert_eq!(raw.image(1)[0], 200);
    let err = read_cifar10(&write("short.bin", &good[..good.len() - 5])).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    let mut bad_label = good.clone();
    bad_label[3073] = 12;
    let err = read_cifar10(&write("label.bin", &bad_label)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Label {
                index: 1,
                label: 12,
                ..
            }
        ),
        "{err}"
    );
    let mut broken = gzip(&good);
    let n = broken.len();
    broken[n / 2..].iter_mut().for_each(|b| *b = 0xAB);
    let err = read_cifar10(&write("broken.bin.gz", &broken)).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    let err = read_cifar10(&dir.path().join("absent.bin")).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");

    // IDX: good, wrong magic, truncated, count mismatch, label out of range.
    let images = idx(0x803, &[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    let labels = idx(0x801, &[2], &[4, 1]);
    let names = ["a", "b", "c", "d", "e"];
    let set = read_idx(&write("i", &images), &write("l", &gzip(&labels)), &names).unwrap();
    assert_eq!(set.shape(), [1, 2, 3]);
    assert_eq!(set.image(1), [7, 8, 9, 10, 11, 12]);
    let err = read_idx(&write("l2", &labels), &write("l3", &labels), &names).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
    let err = read_idx(
        &write("i2", &images[..images.len() - 1]),
        &write("l4", &labels),
        &names,
    )
    .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let three = idx(0x801, &[3], &[0, 1, 2]);
    let err = read_idx(&write("i3", &images), &write("l5", &three), &names).unwrap_err();
    assert!(err.to_string().contains("3 labels for 2 images"), "{err}");
    let bad = idx(0x801, &[2], &[0, 5]);
    let err = read_idx(&write("i4", &images), &write("l6", &bad), &names).unwrap_err();
    assert!(matches!(err, DataError::Label { label: 5, .. }), "{err}");

    // Specifications.
    assert!(matches!(
        "imagenet:/x".parse::<DataSource>(),
        Err(DataError::Spec(_))
    ));
    assert!(matches!(
        "cifar10".parse::<DataSource>(),
        Err(DataError::Spec(_))
    ));
    let missing: DataSource = "cifar10:/no/such/folder".parse().unwrap();
    assert!(matches!(missing.load(), Err(DataError::Missing { .. })));
}

fn write_png(path: &Path, w: u32, h: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value]))
        .save(path)
        .unwrap();
}

#[test]
fn image_folders_read_with_or_without_a_split() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write_png(&dir.path().join(format!("cat/{i}.png")), 8, 6, 10 * i as u8);
        // A differently sized image is resized to the first one's size.
        write_png(&dir.path().join(format!("dog/{i}.png")), 16, 12, 100);
    }
    std::fs::write(dir.path().join("cat/notes.txt"), "not an image").unwrap();
    let source: DataSource = format!("folder:{}", dir.path().display()).parse().unwrap();
    let splits = source.load().unwrap();
    assert_eq!(splits.train.shape(), [3, 6, 8]);
    assert_eq!(splits.train.classes(), ["cat", "dog"]);
    // Every fifth image of each class validates.
    assert_eq!(splits.train.class_counts(), [4, 4]);
    assert_eq!(splits.valid.class_counts(), [1, 1]);
    // Channel planes: R, then G, then B.
    let img = splits.train.image(1);
    assert_eq!((img[0], img[48], img[96]), (10, 5, 245));

    // A corrupted image names its file.
    std::fs::write(dir.path().join("dog/9.png"), b"\x89PNG garbage").unwrap();
    let err = read_image_folder(dir.path(), &["cat".into(), "dog".into()], None).unwrap_err();
    assert!(err.to_string().contains("9.png"), "{err}");
}

#[test]
fn batches_normalise_and_augment_reproducibly() {
    let device = parse_device("flex").unwrap();
    let set = synthetic(10, 2, [3, 8, 8], 3).unwrap();
    let norm = Normalize {
        mean: vec![0.5, 0.4, 0.3],
        std: vec![0.25, 0.2, 0.1],
    };
    let batch = set.batches(4, &norm, &device).next().unwrap();
    assert_eq!(batch.images.dims(), [4, 3, 8, 8]);
    let values = batch.images.into_data().try_to_vec::<f32>().unwrap();
    let raw = set.image(0);
    for (i, &v) in values[..192].iter().enumerate() {
        let c = i / 64;
        let expected = (raw[i] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        assert!((v - expected).abs() < 1e-6);
    }
    assert_eq!(set.batches(4, &norm, &device).count(), 3);

    // Same seed, same batches; a flip-only augmentation mirrors rows or leaves them.
    let flip = Augment { pad: 0, flip: true };
    let a: Vec<f32> = set
        .shuffled_batches(10, &norm, flip, 7, &device)
        .next()
        .unwrap()
        .images
        .into_data()
        .try_to_vec()
        .unwrap();
    let b: Vec<f32> = set
        .shuffled_batches(10, &norm, flip, 7, &device)
        .next()
        .unwrap()
        .images
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(a, b);
    let plain = Augment {
        pad: 0,
        flip: false,
    };
    let batch = set
        .shuffled_batches(10, &norm, plain, 7, &device)
        .next()
        .unwrap();
    let c: Vec<f32> = batch.images.into_data().try_to_vec().unwrap();
    let mut flipped = 0;
    for img in 0..10 {
        let row = |v: &[f32]| v[img * 192..img * 192 + 8].to_vec();
        let (ra, mut rc) = (row(&a), row(&c));
        if ra != rc {
            rc.reverse();
            assert_eq!(ra, rc, "image {img} is neither kept nor mirrored");
            flipped += 1;
        }
    }
    assert!(flipped > 0 && flipped < 10, "{flipped} of 10 flipped");
    // Padded crops move the image by at most `pad` pixels and fill with the normalised zero.
    let crop = Augment {
        pad: 2,
        flip: false,
    };
    let d: Vec<f32> = set
        .shuffled_batches(10, &norm, crop, 7, &device)
        .next()
        .unwrap()
        .images
        .into_data()
        .try_to_vec()
        .unwrap();
    let zero = (0.0 - norm.mean[0]) / norm.std[0];
    assert!(d.iter().any(|&v| (v - zero).abs() < 1e-6));
}
