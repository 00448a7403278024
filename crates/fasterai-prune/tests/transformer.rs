//! Transformer pruning: heads, head dimensions, MLP units and the embedding width, counted by
//! hand on ViT-B/16 and removed losslessly from the CIFAR ViT when they were zeroed first.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor, TensorData};
use fasterai_core::graph::Layer;
use fasterai_core::graph::coupling::{Coupling, GroupKind};
use fasterai_core::linalg::host_values;
use fasterai_core::prelude::*;
use fasterai_core::summary::count_parameters;
use fasterai_core::testing::relative_max_diff;
use fasterai_models::Builtin;
use fasterai_prune::{
    GroupCriterion, GroupPruneConfig, PruneContext, prune_groups, prune_to_speedup, prune_zeroed,
};

fn model(name: &str, classes: usize) -> Model {
    let device = parse_device("flex").unwrap();
    device.seed(29);
    let b: Builtin = name.parse().unwrap();
    let mut m = b.with_num_classes(classes).init(&device).unwrap();
    // torchvision starts a ViT's head at zero, which would make every output equal: random
    // here, so that comparing outputs means something.
    if let Some(Layer::Linear(head)) = m.net.get_mut("heads.head") {
        let w = head.weight.val();
        head.weight = Param::from_tensor(w.random_like(Distribution::Normal(0.0, 0.1)));
    }
    m
}

fn block(i: usize) -> String {
    format!("encoder.layers.encoder_layer_{i}")
}

#[test]
fn vit_b_16_loses_what_a_hand_count_says() {
    let base = model("vit_b_16", 1000);
    let params = count_parameters(&base.net);
    assert_eq!(params, 86_567_656);
    let (e, blocks) = (768, 12);
    let cases = [
        // Half the heads: 6 heads · 64 of q, k and v rows (weight and bias), out_proj columns.
        (GroupKind::Head, 0.5, 6 * 64 * 3 * (e + 1) + 6 * 64 * e),
        // A quarter of the MLP units: 768 fc1 rows (and biases), 768 fc2 columns.
        (GroupKind::MlpUnit, 0.25, 768 * (e + 1) + 768 * e),
        // A quarter of the q/k dims: 16 of 64 in each of 12 heads, q and k rows.
        (GroupKind::QueryKeyDim, 0.25, 16 * 12 * 2 * (e + 1)),
        // A quarter of the v dims: v rows and out_proj columns.
        (GroupKind::ValueDim, 0.25, 16 * 12 * (e + 1) + 16 * 12 * e),
    ];
    for (kind, ratio, per_block) in cases {
        let config = GroupPruneConfig::new(0.0).with_kind(kind, ratio);
        let (pruned, report) = prune_groups(&base, &config).unwrap();
        assert_eq!(
            count_parameters(&pruned.net),
            params - blocks * per_block,
            "{kind}"
        );
        assert_eq!(report.params_after, params - blocks * per_block);
        assert!(report.groups.iter().all(|g| g.kind == kind));
        assert_eq!(report.groups.len(), blocks);
        assert!(report.macs_after < report.macs_before);
        // The shapes check, so the pruned graph runs.
        pruned.net.output_shape(&pruned.input_shape).unwrap();
    }
    // Heads left per block and the kept scale.
    let (pruned, _) = prune_groups(
        &base,
        &GroupPruneConfig::new(0.0).with_kind(GroupKind::Head, 0.5),
    )
    .unwrap();
    let Some(Layer::MultiheadAttention(a)) =
        pruned.net.get(&format!("{}.self_attention", block(3)))
    else {
        panic!("attention")
    };
    assert_eq!(a.num_heads, 6);
    assert_eq!(a.scale, 0.125);
    // --ratio on a transformer: heads and MLP units, never the embedding width.
    let (_, report) = prune_groups(&base, &GroupPruneConfig::new(0.5)).unwrap();
    let kinds: Vec<GroupKind> = report.groups.iter().map(|g| g.kind).collect();
    assert!(kinds.contains(&GroupKind::Head) && kinds.contains(&GroupKind::MlpUnit));
    assert!(!kinds.contains(&GroupKind::Embed) && !kinds.contains(&GroupKind::QueryKeyDim));

    // Zeroed first, removed without changing the outputs: half the heads of block 0, a quarter
    // of the q/k and v dims of block 1, a quarter of the MLP units of block 2.
    let mut zeroed = base;
    let (qk, hd) = (768, 64);
    let heads: Vec<usize> = (0..6 * hd).collect();
    let rows: Vec<usize> = heads
        .iter()
        .flat_map(|&r| [r, qk + r, 2 * qk + r])
        .collect();
    zero_attention(
        &mut zeroed.net,
        &format!("{}.self_attention", block(0)),
        &rows,
        &heads,
    );
    let dims: Vec<usize> = (0..12)
        .flat_map(|h| (0..16).map(move |d| h * hd + d))
        .collect();
    let rows: Vec<usize> = dims.iter().flat_map(|&r| [r, 2 * qk + r]).collect();
    zero_attention(
        &mut zeroed.net,
        &format!("{}.self_attention", block(1)),
        &rows,
        &[],
    );
    zero_mlp_units(&mut zeroed.net, &block(2), &(0..768).collect::<Vec<_>>());
    let device = parse_device("flex").unwrap();
    let x = Tensor::<4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let before = zeroed.net.forward(x.clone()).flatten();
    let (pruned, report) = prune_zeroed(&zeroed).unwrap();
    let removed: Vec<(GroupKind, usize)> =
        report.groups.iter().map(|g| (g.kind, g.removed)).collect();
    assert_eq!(
        removed,
        [
            (GroupKind::MlpUnit, 768),
            (GroupKind::Head, 6),
            (GroupKind::QueryKeyDim, 16),
            (GroupKind::ValueDim, 16),
        ]
    );
    let diff = relative_max_diff(pruned.net.forward(x).flatten(), before);
    assert!(diff < 1e-5, "{diff}");
}

/// Sets rows of the packed in_proj (weight and bias) and columns of out_proj to zero.
fn zero_attention(net: &mut Graph, node: &str, rows: &[usize], out_columns: &[usize]) {
    let Some(Layer::MultiheadAttention(a)) = net.get_mut(node) else {
        panic!("{node}")
    };
    let device = a.in_proj_weight.device();
    let [n, e] = a.in_proj_weight.dims();
    let mut w = host_values(a.in_proj_weight.val());
    let mut b = host_values(a.in_proj_bias.as_ref().unwrap().val());
    for &r in rows {
        w[r * e..(r + 1) * e].fill(0.0);
        b[r] = 0.0;
    }
    a.in_proj_weight = param(w, [n, e], &device);
    a.in_proj_bias = Some(param(b, [n], &device));
    // Burn's out_proj weight is [in, out]: column c of PyTorch's is row c here.
    let [v, out] = a.out_proj.weight.dims();
    let mut wo = host_values(a.out_proj.weight.val());
    for &c in out_columns {
        wo[c * out..(c + 1) * out].fill(0.0);
    }
    a.out_proj.weight = param(wo, [v, out], &device);
}

/// A parameter of `shape` holding `values`.
fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Sets hidden units of an MLP to zero: fc1 rows and biases.
fn zero_mlp_units(net: &mut Graph, block: &str, units: &[usize]) {
    let fc1 = format!("{block}.mlp.0");
    let (shape, mut w) = net.layer(&fc1).unwrap().torch_weight().unwrap();
    for &u in units {
        w[u * shape[1]..(u + 1) * shape[1]].fill(0.0);
    }
    let layer = net.get_mut(&fc1).unwrap();
    layer.set_torch_weight(w);
    let Layer::Linear(l) = layer else { panic!() };
    let bias = l.bias.as_mut().unwrap();
    let mut b = host_values(bias.val());
    for &u in units {
        b[u] = 0.0;
    }
    let device = bias.device();
    *bias = param(b, [shape[0]], &device);
}

#[test]
fn zeroed_heads_head_dims_and_mlp_units_are_removed_without_changing_outputs() {
    // vit_cifar: 6 blocks, width 192, 3 heads of 64, MLP 384.
    let mut m = model("vit_cifar", 10);
    let (qk, hd) = (192, 64);
    // Block 0: head 1 zeroed the way a head mask does (q, k, v rows and out_proj columns).
    let head1: Vec<usize> = (hd..2 * hd).collect();
    let rows: Vec<usize> = head1
        .iter()
        .flat_map(|&r| [r, qk + r, 2 * qk + r])
        .collect();
    zero_attention(
        &mut m.net,
        &format!("{}.self_attention", block(0)),
        &rows,
        &head1,
    );
    // Block 1: q/k dims 5 and 7 in every head (q side only: q·k loses those terms), and v
    // dim 3 of every head through out_proj alone.
    let qk_rows: Vec<usize> = (0..3).flat_map(|h| [h * hd + 5, h * hd + 7]).collect();
    let v_cols: Vec<usize> = (0..3).map(|h| h * hd + 3).collect();
    zero_attention(
        &mut m.net,
        &format!("{}.self_attention", block(1)),
        &qk_rows,
        &v_cols,
    );
    // Block 2: 100 MLP units.
    zero_mlp_units(
        &mut m.net,
        &block(2),
        &(0..100).map(|u| 3 * u).collect::<Vec<_>>(),
    );
    // Embedding channel 5 zeroed in every LayerNorm (γ and β): every reader sees 0, yet it
    // stays, since removing it changes the LayerNorms' statistics.
    let norms: Vec<String> = m
        .net
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::LayerNorm(_)))
        .map(|n| n.name.clone())
        .collect();
    for name in &norms {
        let Some(Layer::LayerNorm(ln)) = m.net.get_mut(name) else {
            panic!()
        };
        for p in [ln.gamma.as_mut().unwrap(), ln.beta.as_mut().unwrap()] {
            let mut v = host_values(p.val());
            v[5] = 0.0;
            let device = p.device();
            *p = param(v, [192], &device);
        }
    }
    let device = parse_device("flex").unwrap();
    let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let before = m.net.forward(x.clone()).flatten();
    let (pruned, report) = prune_zeroed(&m).unwrap();
    let removed: Vec<(GroupKind, usize)> =
        report.groups.iter().map(|g| (g.kind, g.removed)).collect();
    assert_eq!(
        removed,
        vec![
            (GroupKind::MlpUnit, 100),
            (GroupKind::Head, 1),
            (GroupKind::QueryKeyDim, 2),
            (GroupKind::ValueDim, 1),
        ]
    );
    let e = 192;
    let expected = 100 * (e + 1 + e) // MLP units
        + 64 * 3 * (e + 1) + 64 * e // one head
        + 2 * 3 * 2 * (e + 1) // two q/k dims of three heads
        + 3 * (e + 1) + 3 * e; // one v dim of three heads
    assert_eq!(report.params_before - report.params_after, expected);
    let after = pruned.net.forward(x).flatten();
    let diff = relative_max_diff(after, before);
    assert!(diff < 1e-5, "{diff}");
    // Saved and loaded, the pruned attention keeps its widths, heads and scale.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    save_model(&pruned, &path, false).unwrap();
    let loaded = load_model(&path, &device).unwrap();
    assert_eq!(loaded.net.spec(), pruned.net.spec());
}

#[test]
fn every_group_kind_of_a_vit_is_found_and_listed() {
    let m = model("vit_cifar", 10);
    let coupling = Coupling::new(&m.net, &m.input_shape).unwrap();
    let count = |kind| coupling.groups.iter().filter(|g| g.kind == kind).count();
    assert_eq!(count(GroupKind::Embed), 1);
    assert_eq!(count(GroupKind::MlpUnit), 6);
    assert_eq!(count(GroupKind::Head), 6);
    assert_eq!(count(GroupKind::QueryKeyDim), 6);
    assert_eq!(count(GroupKind::ValueDim), 6);
    let embed = coupling
        .groups
        .iter()
        .find(|g| g.kind == GroupKind::Embed)
        .unwrap();
    assert_eq!(embed.channels, 192);
    assert!(embed.prunable());
    let table = coupling.to_string();
    assert!(table.contains("head         3 heads"), "{table}");
    assert!(table.contains("embed      192 channels"), "{table}");
    assert!(table.contains("qk_dim      64 dims"), "{table}");
}

#[test]
fn embedding_pruning_runs_and_says_it_is_lossy() {
    let m = model("vit_cifar", 10);
    let config = GroupPruneConfig::new(0.0).with_kind(GroupKind::Embed, 0.25);
    let (pruned, report) = prune_groups(&m, &config).unwrap();
    assert_eq!(report.groups.len(), 1);
    assert_eq!(report.groups[0].removed, 48);
    assert!(report.notes.iter().any(|n| n.contains("never exact")));
    let device = parse_device("flex").unwrap();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let y = pruned.net.forward(x).flatten();
    assert_eq!(y.dims(), [2, 10]);
}

#[test]
fn a_global_ranking_that_empties_an_attention_is_an_error() {
    let mut m = model("vit_cifar", 10);
    // Block 0's heads are far weaker than every other head.
    let node = format!("{}.self_attention", block(0));
    let Some(Layer::MultiheadAttention(a)) = m.net.get_mut(&node) else {
        panic!()
    };
    a.in_proj_weight = Param::from_tensor(a.in_proj_weight.val() * 1e-3);
    a.out_proj.weight = Param::from_tensor(a.out_proj.weight.val() * 1e-3);
    let config = GroupPruneConfig {
        context: PruneContext::Global,
        normalize: false,
        criterion: GroupCriterion::L1,
        ..GroupPruneConfig::new(0.0).with_kind(GroupKind::Head, 0.5)
    };
    let err = prune_groups(&m, &config).unwrap_err().to_string();
    assert!(err.contains("all 3 heads") && err.contains(&node), "{err}");
    // Per attention, the same ratio keeps two heads in every block.
    let local = GroupPruneConfig {
        context: PruneContext::Local,
        ..config
    };
    let (_, report) = prune_groups(&m, &local).unwrap();
    assert!(report.groups.iter().all(|g| g.removed == 1 && g.of == 3));
}

#[test]
fn a_speedup_target_on_a_vit_prunes_heads_and_mlp_units() {
    let m = model("vit_cifar", 10);
    let gain = |r: &fasterai_prune::PruneReport| r.macs_before as f64 / r.macs_after as f64;
    // With 3 heads a block loses 0, 1 or 2 of them: 2× falls in the jump from one head to
    // two (1.9× → 3×), and the search stops at the first ratio past it.
    let (_, report) = prune_to_speedup(&m, &GroupPruneConfig::new(0.0), 2.0).unwrap();
    assert!((2.0..3.1).contains(&gain(&report)), "{}", gain(&report));
    assert!(report.groups.iter().any(|g| g.kind == GroupKind::Head));
    // With the heads fixed (one of three), the MLP width is searched to just past 2×.
    let config = GroupPruneConfig::new(0.0).with_kind(GroupKind::Head, 0.34);
    let (_, report) = prune_to_speedup(&m, &config, 2.0).unwrap();
    assert!((2.0..2.02).contains(&gain(&report)), "{}", gain(&report));
    assert!(report.groups.iter().any(|g| g.kind == GroupKind::MlpUnit));
}

#[test]
fn head_and_mlp_unit_masks_are_removed_losslessly_and_embed_masks_with_a_note() {
    use fasterai_sparsify::{Granularity, Sparsifier, SparsifyConfig};
    let device = parse_device("flex").unwrap();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let cases = [
        // One of three heads per block; a quarter of the MLP units; an eighth of the width.
        (Granularity::Head, 0.34, GroupKind::Head, 1),
        (Granularity::MlpUnit, 0.25, GroupKind::MlpUnit, 96),
        (Granularity::Embed, 0.125, GroupKind::Embed, 24),
    ];
    for (granularity, sparsity, kind, per_group) in cases {
        let mut m = model("vit_cifar", 10);
        let config = SparsifyConfig::new(granularity);
        let mut sparsifier = Sparsifier::new(&m.net, &m.input_shape, config).unwrap();
        sparsifier.prune(&mut m.net, sparsity).unwrap();
        let sparse_y = m.net.forward(x.clone()).flatten();
        let (pruned, report) = prune_zeroed(&m).unwrap();
        assert!(!report.groups.is_empty(), "{granularity}");
        for g in &report.groups {
            assert_eq!((g.kind, g.removed), (kind, per_group), "{granularity}");
        }
        let diff = relative_max_diff(pruned.net.forward(x.clone()).flatten(), sparse_y);
        if kind == GroupKind::Embed {
            // Not exact (LayerNorm statistics), and the report says so.
            assert!(report.notes.iter().any(|n| n.contains("never exact")));
            assert!(diff > 1e-6, "{diff}");
        } else {
            assert!(diff < 1e-5, "{granularity}: {diff}");
            assert!(report.notes.is_empty(), "{:?}", report.notes);
        }
    }
    // On a transformer the default layers are its Linear layers; `head` on a CNN is an error.
    let m = model("vit_cifar", 10);
    let weight = SparsifyConfig::new(Granularity::Weight);
    let sparsifier = Sparsifier::new(&m.net, &m.input_shape, weight).unwrap();
    assert_eq!(sparsifier.paths().len(), 6 * 2 + 1);
    let cnn = model("resnet20", 10);
    let heads = GroupPruneConfig::new(0.0).with_kind(GroupKind::Head, 0.5);
    let err = prune_groups(&cnn, &heads).unwrap_err().to_string();
    assert!(err.contains("no prunable head group"), "{err}");
    let head = SparsifyConfig::new(Granularity::Head);
    let err = Sparsifier::new(&cnn.net, &cnn.input_shape, head).unwrap_err();
    assert!(err.to_string().contains("transformers"), "{err}");
}
