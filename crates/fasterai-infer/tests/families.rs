//! Whole model families (CNNs and a vision transformer) through the engine: every op they use has a kernel or runs as built,
//! and the outputs are the graph's up to rounding.

use fasterai_core::testing::{randomize_batch_norms, relative_max_diff};
use fasterai_infer::PathChoice;
use fasterai_models::{Builtin, Family};

use crate::{both, flex, normal};

#[test]
fn every_family_gives_the_graphs_outputs_and_runs_on_the_engines_kernels() {
    let device = flex();
    for family in [
        Family::ResNet20,
        Family::ResNet18,
        Family::ResNet50,
        Family::MobileNetV2,
        Family::MobileNetV3Small,
        Family::EfficientNetB0,
        Family::ViTCifar,
    ] {
        let model = Builtin::net(family, 10)
            .with_input_shape([3, 32, 32])
            .init(&device)
            .unwrap();
        let mut net = model.net;
        randomize_batch_norms(&mut net, &device);
        let (prepared, fast, reference) = both(&net, normal([2, 3, 32, 32]), PathChoice::Rules);
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-4, "{}: {err}", family.name());
        let report = prepared.report();
        assert!(
            report.as_built.is_empty(),
            "{}: {:?}",
            family.name(),
            report.as_built
        );
        assert!(report.fused_nodes > 0, "{}", family.name());
        let squeeze_excitation =
            matches!(family, Family::MobileNetV3Small | Family::EfficientNetB0);
        assert_eq!(report.gates > 0, squeeze_excitation, "{}", family.name());
    }
}
