//! ResNets: torchvision's ImageNet ResNet-18/34/50 and the CIFAR ResNet-20/56 of He et al.
//! (2016) with 1×1 projection shortcuts (option B), the usual pruning benchmark.

use fasterai_core::graph::ops::batch_norm::BatchNorm2dSpec;
use fasterai_core::graph::ops::pool::MaxPool2dSpec;
use fasterai_core::graph::{GraphBuilder, GraphSpec, LayerSpec};

use crate::blocks::residual;

/// Basic (two 3×3 convs) or bottleneck (1×1, 3×3, 1×1 ×4) residual blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// One block at `p` on the current value; the stride is on the (middle) 3×3 conv.
fn block(g: &mut GraphBuilder, p: &str, kind: Block, cin: usize, planes: usize, stride: usize) {
    let input = g.cursor().to_string();
    let cout = planes * kind.expansion();
    let bn = |c| LayerSpec::batch_norm(c);
    match kind {
        Block::Basic => {
            g.then(
                format!("{p}.conv1"),
                LayerSpec::conv(cin, planes, 3, stride),
            );
            g.then(format!("{p}.bn1"), bn(planes));
            g.then(format!("{p}.relu"), LayerSpec::relu());
            g.then(format!("{p}.conv2"), LayerSpec::conv(planes, planes, 3, 1));
            g.then(format!("{p}.bn2"), bn(planes));
        }
        Block::Bottleneck => {
            g.then(format!("{p}.conv1"), LayerSpec::conv(cin, planes, 1, 1));
            g.then(format!("{p}.bn1"), bn(planes));
            g.then(format!("{p}.relu"), LayerSpec::relu());
            g.then(
                format!("{p}.conv2"),
                LayerSpec::conv(planes, planes, 3, stride),
            );
            g.then(format!("{p}.bn2"), bn(planes));
            g.then(format!("{p}.relu_1"), LayerSpec::relu());
            g.then(format!("{p}.conv3"), LayerSpec::conv(planes, cout, 1, 1));
            g.then(format!("{p}.bn3"), bn(cout));
        }
    }
    let main = g.cursor().to_string();
    let shortcut = if stride != 1 || cin != cout {
        g.node(
            format!("{p}.downsample.0"),
            LayerSpec::conv(cin, cout, 1, stride),
            &[&input],
        );
        g.then(format!("{p}.downsample.1"), bn(cout))
    } else {
        input
    };
    g.set_cursor(&main);
    residual(g, p, &shortcut);
    let last_relu = if kind == Block::Basic {
        "relu_1"
    } else {
        "relu_2"
    };
    g.then(format!("{p}.{last_relu}"), LayerSpec::relu());
}

/// Stages `layer1…` with `blocks[i]` blocks of `widths[i]` planes; the first block of every
/// stage but the first halves the image. Returns the output channels.
fn stages(
    g: &mut GraphBuilder,
    kind: Block,
    mut cin: usize,
    widths: &[usize],
    blocks: &[usize],
) -> usize {
    for (s, (&planes, &n)) in widths.iter().zip(blocks).enumerate() {
        for b in 0..n {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            block(g, &format!("layer{}.{b}", s + 1), kind, cin, planes, stride);
            cin = planes * kind.expansion();
        }
    }
    cin
}

fn head(g: &mut GraphBuilder, channels: usize, classes: usize) {
    g.then("avgpool", LayerSpec::global_avg_pool());
    g.then("flatten", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(channels, classes));
}

/// torchvision's `resnet18/34/50` layout.
pub(crate) fn imagenet(
    kind: Block,
    blocks: [usize; 4],
    in_channels: usize,
    classes: usize,
) -> GraphSpec {
    let mut g = GraphBuilder::new();
    g.then(
        "conv1",
        LayerSpec::Conv2d(fasterai_core::graph::ops::conv::Conv2dSpec::new(
            in_channels,
            64,
            7,
            2,
        )),
    );
    g.then("bn1", LayerSpec::BatchNorm2d(BatchNorm2dSpec::new(64)));
    g.then("relu", LayerSpec::relu());
    g.then("maxpool", LayerSpec::MaxPool2d(MaxPool2dSpec::new(3, 2, 1)));
    let out = stages(&mut g, kind, 64, &[64, 128, 256, 512], &blocks);
    head(&mut g, out, classes);
    g.build()
}

/// The CIFAR ResNet-(6n+2): a 3×3 stem of 16 channels, three stages of `n` basic blocks with
/// 16, 32 and 64 channels, global pooling and a linear classifier.
pub(crate) fn cifar(n: usize, in_channels: usize, classes: usize) -> GraphSpec {
    let mut g = GraphBuilder::new();
    g.then("conv1", LayerSpec::conv(in_channels, 16, 3, 1));
    g.then("bn1", LayerSpec::batch_norm(16));
    g.then("relu", LayerSpec::relu());
    let out = stages(&mut g, Block::Basic, 16, &[16, 32, 64], &[n, n, n]);
    head(&mut g, out, classes);
    g.build()
}
