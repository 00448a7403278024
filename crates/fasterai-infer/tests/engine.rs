//! The prepared graph as a whole: fusions, branches, plain and tracked inputs, path choice.

use burn::tensor::{Distribution, Tensor};
use fasterai_core::prelude::*;
use fasterai_core::testing::{
    random_branched_spec, random_graph, relative_max_diff, tiny_cnn, tiny_resnet,
};
use fasterai_infer::{ConvPath, Inference, Isa, PathChoice};

use crate::{both, choices, flex, normal};

#[test]
fn fused_chains_equal_the_graph_on_every_path() {
    let device = flex();
    for choice in choices() {
        // Conv → BN → ReLU twice (the second offers Winograd), Linear → ReLU head.
        let net = tiny_cnn(3, 5, &device);
        let (prepared, fast, reference) = both(&net, normal([3, 3, 16, 16]), choice);
        assert_eq!(
            prepared.fused_nodes(),
            5,
            "{choice:?}: 2 × (BN, ReLU) and the head's ReLU"
        );
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-5, "tiny CNN, {choice:?}: {err}");

        // Shortcuts: BN → Add → ReLU folded into the convolution computed last, strided 1×1
        // projections.
        let mut net = tiny_resnet(3, 4, &device);
        fasterai_core::testing::randomize_batch_norms(&mut net, &device);
        let (prepared, fast, reference) = both(&net, normal([2, 3, 8, 8]), choice);
        assert!(
            prepared.fused_nodes() > 4,
            "{choice:?}: {}",
            prepared.fused_nodes()
        );
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-5, "tiny ResNet, {choice:?}: {err}");
    }
}

#[test]
fn residual_sums_fold_into_the_convolution_after_their_other_term() {
    let device = flex();
    // x → conv a → bn → (+ x) → relu: the sum's other term is the input, computed first.
    let mut g = GraphBuilder::new();
    g.then("a", LayerSpec::conv(4, 4, 3, 1));
    g.then("bn", LayerSpec::batch_norm(4));
    g.node("sum", LayerSpec::Add(Default::default()), &["bn", "input"]);
    g.then("relu", LayerSpec::relu());
    g.then("flat", LayerSpec::flatten());
    let mut net = random_graph(&g.build(), &device);
    fasterai_core::testing::randomize_batch_norms(&mut net, &device);
    for choice in choices() {
        let (prepared, fast, reference) = both(&net, normal([2, 4, 6, 6]), choice);
        assert_eq!(prepared.fused_nodes(), 3, "bn, sum and relu fold into `a`");
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-5, "{choice:?}: {err}");
    }
}

#[test]
fn random_branched_graphs_give_the_graphs_outputs() {
    let device = flex();
    for seed in 0..12 {
        let (spec, [c, h, w]) = random_branched_spec(seed);
        let net = random_graph(&spec, &device);
        for choice in [PathChoice::Measure, PathChoice::Force(ConvPath::Gemm)] {
            let (_, fast, reference) = both(&net, normal([2, c, h, w]), choice);
            let err = relative_max_diff(fast, reference);
            assert!(err < 1e-5, "seed {seed}, {choice:?}: {err}");
        }
    }
}

#[test]
fn plain_and_tracked_inputs_run_the_graph_as_built() {
    let device = flex();
    let net = tiny_cnn(3, 5, &device);
    let x = normal([2, 3, 16, 16]);
    let reference = net.forward(x.clone()).flatten().into_data();
    let plain = Inference::plain(net.clone());
    assert_eq!(plain.fused_nodes() + plain.winograd_convs(), 0);
    assert_eq!(plain.forward(x.clone()).flatten().into_data(), reference);

    // An input that records a backward pass gets the graph itself, gradients included.
    let ad = device.autodiff();
    let prepared = Inference::new(tiny_cnn(3, 5, &ad), &ad);
    let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &ad).require_grad();
    let y = prepared.forward(x.clone()).flatten();
    let grads = y.sum().backward();
    let grad = x.grad(&grads).expect("the input's gradient is recorded");
    assert_eq!(grad.dims(), [2, 3, 16, 16]);
}

#[test]
fn each_shape_is_tuned_once_and_later_calls_repeat_its_outputs() {
    let device = flex();
    let net = tiny_resnet(3, 4, &device);
    let prepared = Inference::with_choice(net.clone(), &device, PathChoice::Measure);
    // Seven images: the first call times the paths on four of them, then runs all seven.
    for batch in [1, 3, 7, 1] {
        let x = normal([batch, 3, 8, 8]);
        let first = prepared.forward(x.clone()).flatten();
        let err = relative_max_diff(first.clone(), net.forward(x.clone()).flatten());
        assert!(err < 1e-5, "batch {batch}: {err}");
        // The second call reuses the pool's buffers: stale contents must not leak in.
        let second = prepared.forward(x.clone()).flatten().into_data();
        assert_eq!(first.into_data(), second, "batch {batch}");
        let report = prepared.report();
        let convs: usize = report.conv_paths.iter().map(|(_, n)| n).sum();
        assert_eq!(convs, 6, "every convolution has a path: {report:?}");
    }
}

#[test]
fn path_names_parse_and_bad_ones_say_what_is_expected() {
    assert_eq!(PathChoice::parse("auto"), Ok(PathChoice::Measure));
    assert_eq!(PathChoice::parse("rules"), Ok(PathChoice::Rules));
    for path in ConvPath::ALL {
        assert_eq!(PathChoice::parse(path.name()), Ok(PathChoice::Force(path)));
    }
    let err = PathChoice::parse("im2col").unwrap_err();
    assert!(err.contains("gemm, winograd or depthwise"), "{err}");
}

#[test]
fn instruction_set_names_parse_and_ones_the_cpu_lacks_are_refused() {
    assert_eq!(Isa::parse("auto"), Ok(None));
    assert_eq!(Isa::parse(""), Ok(None));
    assert!(Isa::Baseline.available());
    assert!(Isa::best().available());
    for isa in Isa::ALL {
        match Isa::parse(isa.name()) {
            Ok(found) => assert_eq!(found, Some(isa)),
            Err(err) => {
                assert!(!isa.available(), "{err}");
                assert!(err.contains("cannot run"), "{err}");
                assert!(Isa::force(isa).is_err());
            }
        }
    }
    let err = Isa::parse("sse9").unwrap_err();
    assert!(err.contains("baseline, avx2 or avx512"), "{err}");
    let report = Inference::new(tiny_cnn(3, 4, &flex()), &flex()).report();
    assert!(report.isa.is_some_and(Isa::available));
}
