//! What every op knows about itself: the [`Op`] trait (from hyper-parameters alone) and the
//! [`LiveOp`] trait (from its current weights). Passes ask these traits instead of matching on
//! op kinds, so adding an op is one file in `ops/` and one line in the registry (`layer.rs`).

use burn::tensor::Device;

use super::activation::Activation;
use super::coupling::GroupKind;
use super::layer::{Layer, LayerSpec};
use super::sequence::Step;

/// How a freshly built layer's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitScheme {
    /// PyTorch's defaults (Kaiming-uniform with `a = √5` for conv and linear weights).
    #[default]
    PyTorchDefault,
    /// torchvision's VGG scheme: conv weights Kaiming-normal (fan-out, ReLU gain), linear
    /// weights `N(0, 0.01)`, all biases zero.
    Vgg,
    /// torchvision's ResNet/MobileNet scheme: conv weights Kaiming-normal (fan-out), batch
    /// norms γ = 1, β = 0, linear weights `N(0, 0.01)` and zero biases.
    KaimingFanOut,
    /// torchvision's ViT scheme: Linear weights Xavier-uniform with zero biases, the patch
    /// convolution `N(0, 1/fan_in)`, attention projections Xavier-uniform, position embeddings
    /// `N(0, 0.02)`, class tokens zero, layer norms γ = 1, β = 0.
    Transformer,
    /// Every weight zero: for a graph whose tensors are about to be overwritten (loading a file,
    /// importing), where drawing random numbers would be wasted work.
    Zeros,
}

/// How many inputs an op takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly one.
    One,
    /// Two or more (`Add`, `Mul`, `Concat`).
    Many,
}

/// How an op's output channels relate to its input channels: what channel coupling is built
/// from. "Channels" are dimension 1 of `[N, C, H, W]`, the features `D` of tokens `[N, T, D]`
/// and the features of `[N, F]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Reads every input channel and makes new output channels (Conv2d with one group,
    /// Linear): the input channels are consumed (weight dim 1), the outputs produced (dim 0).
    Transform,
    /// Output channel `c` depends on input channel `c` only (batch norm, activations, pooling,
    /// dropout, identity, depthwise convolution).
    PerChannel,
    /// Element-wise over inputs that share one channel layout (`Add`, `Mul` with broadcasting
    /// over H×W): all inputs are coupled.
    Elementwise,
    /// The output's channels are the inputs' channels, one input after another.
    Concat,
    /// `[C, H, W]` to `[C·H·W]`: channel `c` becomes `H·W` consecutive features.
    Flatten,
    /// Channels cannot be followed through (a grouped convolution that is not depthwise).
    Opaque,
}

/// An op's hyper-parameters and everything that follows from them alone.
pub trait Op {
    /// Type name, as PyTorch prints it.
    fn kind(&self) -> &'static str;
    /// Number of inputs.
    fn arity(&self) -> Arity {
        Arity::One
    }
    /// Checks the hyper-parameters themselves; the error says what is wrong.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// Output shape (no batch dimension) for the inputs' shapes; the error says what the op
    /// expected.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String>;
    /// Multiply-accumulates per sample. Convolutions and linear layers count their products;
    /// a batch norm one per output element (one fused multiply-add at inference); the rest 0.
    fn macs(&self, _inputs: &[&[usize]], _output: &[usize]) -> u64 {
        0
    }
    /// Trainable parameters, as PyTorch counts them (batch-norm statistics excluded).
    fn params(&self) -> usize {
        0
    }
    /// Values stored beside the parameters (batch-norm statistics): with [`params`](Op::params),
    /// what a file must hold for the layer.
    fn buffers(&self) -> usize {
        0
    }
    /// Short hyper-parameter description for tables (`3→64, k3×3, p1`).
    fn detail(&self) -> String {
        String::new()
    }
    /// How channels flow through the op.
    fn channels(&self) -> Channels {
        Channels::PerChannel
    }
    /// Whether each output channel depends on statistics over all channels (LayerNorm): then
    /// removing a channel, even one that is always zero, changes the others.
    fn normalizes_channels(&self) -> bool {
        false
    }
    /// Units inside the op that can be removed without touching its input or output channels
    /// (attention heads, head dimensions): their kind and count, in a fixed order.
    fn inner_units(&self) -> Vec<(GroupKind, usize)> {
        Vec::new()
    }
    /// A live layer with fresh weights.
    fn build(&self, scheme: InitScheme, device: &Device) -> Layer;
}

/// What a live layer knows from its current weights.
pub trait LiveOp {
    /// The specification, read off the current weights (so it follows any surgery).
    fn spec(&self) -> LayerSpec;
    /// Runs the op. Shapes were checked against [`Op::output_shape`] by the graph.
    fn forward(&self, inputs: Vec<Activation>) -> Activation;
    /// Runs the op as one pass of a decoder: ops that depend on positions (rotary and learned
    /// position encodings) read them from `step`, attention also its padding and cache. The
    /// rest run as [`forward`](LiveOp::forward).
    fn forward_in(&self, inputs: Vec<Activation>, _step: Step<'_>) -> Activation {
        self.forward(inputs)
    }
    /// Keeps only the input channels where `inputs` is true and the output channels where
    /// `outputs` is true (`None`: all). Per-channel ops get the same mask on both sides.
    fn select_channels(&mut self, _inputs: Option<&[bool]>, _outputs: Option<&[bool]>) {}
    /// Keeps the inner units where `keep[k][u]` is true: one mask per entry of
    /// [`Op::inner_units`], in that order.
    fn select_inner(&mut self, _keep: &[Vec<bool>]) {}
    /// Per entry of [`Op::inner_units`], which units add exactly nothing to the output for any
    /// input (removing them changes no output).
    fn silent_inner(&self) -> Vec<Vec<bool>> {
        Vec::new()
    }
    /// The value of each output channel when each input channel `c` is the constant
    /// `inputs[k][c]` over the whole image (`None`: not constant, or not known to be). This
    /// is how pruning proves that a removed channel only ever carried zeros.
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        shapes: &[&[usize]],
        output: &[usize],
    ) -> Vec<Option<f32>>;
}

/// `[a, a]` as `a`, otherwise `a×b`.
pub(crate) fn pair(p: [usize; 2]) -> String {
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("{}×{}", p[0], p[1])
    }
}

/// The single input shape of a one-input op as `[C, H, W]`.
pub(crate) fn spatial(inputs: &[&[usize]]) -> Result<[usize; 3], String> {
    inputs[0]
        .try_into()
        .map_err(|_| "expected [channels, height, width]".to_string())
}

/// Output size of a sliding window along one axis, as PyTorch computes it; `None` when the
/// window does not fit, or the sizes are degenerate or overflow.
pub(crate) fn window_out(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    if stride == 0 {
        return None;
    }
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    let padded = size.checked_add(pad.checked_mul(2)?)?;
    let steps = padded.checked_sub(span)?;
    let mut out = if ceil {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    // PyTorch drops a last window that would start inside the right padding.
    if ceil && (out - 1).checked_mul(stride)? >= size.checked_add(pad)? {
        out -= 1;
    }
    Some(out)
}

/// `a · b · …` over sizes, saturating: parameter and MAC counts, which only get compared
/// against bounds, never wrap.
pub(crate) fn count(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |n, &f| n.saturating_mul(f))
}

/// Applies `f` to each channel's constant (per-channel ops without padding effects).
pub(crate) fn map_constants(
    inputs: &[Vec<Option<f32>>],
    f: impl Fn(f32) -> f32,
) -> Vec<Option<f32>> {
    inputs[0].iter().map(|v| v.map(&f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_pytorch() {
        // conv 3x3 pad 1 keeps size; maxpool 2/2 halves; odd sizes floor, or ceil with ceil_mode.
        assert_eq!(window_out(224, 3, 1, 1, 1, false), Some(224));
        assert_eq!(window_out(7, 2, 2, 0, 1, false), Some(3));
        assert_eq!(window_out(7, 2, 2, 0, 1, true), Some(4));
        assert_eq!(window_out(5, 3, 2, 1, 2, false), Some(2));
        assert_eq!(window_out(2, 3, 1, 0, 1, false), None);
        // Sizes near the top of the range are refused, never wrapped.
        assert_eq!(window_out(8, 3, 1, usize::MAX / 2 + 1, 1, false), None);
        assert_eq!(window_out(8, 3, 1, 1, usize::MAX, false), None);
        assert_eq!(window_out(8, 0, 1, 1, 1, false), None);
        assert_eq!(window_out(8, 3, 0, 1, 1, false), None);
    }
}
