//! Convolutions on NCHW host buffers, the batch norm after them folded into the weights (scale)
//! and the output pass (shift, activation, residual sum).
//!
//! Three ways to compute one, all from the same packed weights:
//! - [`ConvPath::Gemm`]: one matrix product per image and group, `W (out × in·kh·kw) ·
//!   cols (in·kh·kw × H'W')`; a 1×1, stride-1, unpadded convolution reads the image itself as
//!   `cols` (no im2col copy), any other builds the columns once per image and group (a
//!   stride-1 one on a narrow map from the zero-padded image, one copy per row, the product
//!   taken over the padded width); in a batch, images with small output planes put their
//!   columns side by side in one product;
//! - [`ConvPath::Winograd`]: F(4×4, 3×3) for stride-1 3×3 convolutions (`winograd.rs`);
//! - [`ConvPath::Depthwise`]: a direct loop per channel plane for one input channel per group
//!   (`depthwise.rs`).
//!
//! NCHW stays the layout: every op of the graph reads it, a plane per channel keeps the output
//! pass per channel contiguous, and H'W' (the GEMM's wide dimension) is long enough for the
//! micro-kernels at the image sizes models take.

use std::sync::{Arc, Mutex};

use burn::nn::conv::Conv2d;
use rayon::prelude::*;

use super::depthwise::DepthwiseGeometry;
use super::eltwise::{Act, Epilogue};
use super::gemm::{Mat, matmul, threads_for};
use super::winograd::{self, WinogradConv};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::linalg::shared_host_values as host_values;

/// How a convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvPath {
    /// im2col (skipped for 1×1 stride 1) and a GEMM.
    Gemm,
    /// Winograd F(4×4, 3×3): stride-1, ungrouped 3×3 convolutions.
    Winograd,
    /// A direct loop per channel: convolutions with one input channel per group.
    Depthwise,
}

impl ConvPath {
    /// Every path, in the order they are tried.
    pub const ALL: [ConvPath; 3] = [ConvPath::Gemm, ConvPath::Winograd, ConvPath::Depthwise];

    /// The name `FASTERAI_CONV` and reports use.
    pub fn name(self) -> &'static str {
        match self {
            ConvPath::Gemm => "gemm",
            ConvPath::Winograd => "winograd",
            ConvPath::Depthwise => "depthwise",
        }
    }
}

/// One convolution with its weights packed once.
pub(crate) struct ConvKernel {
    spec: Conv2dSpec,
    /// `[out, in/groups · kh · kw]`, each row times its batch norm scale.
    weight: Vec<f32>,
    pub epilogue: Epilogue,
    /// Whether Winograd applies; its transformed filters (4× the weights) are made on first
    /// use and dropped when the timing sends the layer elsewhere.
    winograd_applies: bool,
    winograd: Mutex<Option<Arc<WinogradConv>>>,
}

impl ConvKernel {
    /// Packs `conv`, folding a following batch norm's `scale`/`shift` and activation.
    pub fn new(conv: &Conv2d, spec: Conv2dSpec, bn: Option<(&[f32], &[f32])>, act: Act) -> Self {
        let mut weight = host_values(conv.weight.val());
        let out = spec.out_channels;
        let row = weight.len() / out.max(1);
        let bias = conv.bias.as_ref().map(|b| host_values(b.val()));
        let mut shift = bias.clone();
        if let Some((scale, bn_shift)) = bn {
            weight
                .chunks_mut(row.max(1))
                .zip(scale)
                .for_each(|(w, s)| w.iter_mut().for_each(|w| *w *= s));
            shift = Some(
                (0..out)
                    .map(|c| bias.as_ref().map_or(0.0, |b| b[c]) * scale[c] + bn_shift[c])
                    .collect(),
            );
        }
        Self {
            winograd_applies: winograd::applies(&spec),
            spec,
            weight,
            epilogue: Epilogue { shift, act },
            winograd: Mutex::default(),
        }
    }

    /// Frees the Winograd filters (a layer that takes another path).
    pub fn drop_winograd(&self) {
        *self.winograd.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The paths that can compute this convolution.
    pub fn paths(&self) -> Vec<ConvPath> {
        let mut paths = vec![ConvPath::Gemm];
        if self.winograd_applies {
            paths.push(ConvPath::Winograd);
        }
        if self.is_depthwise() {
            paths.push(ConvPath::Depthwise);
        }
        paths
    }

    /// The path taken when none is measured or forced: the depthwise loop where it applies,
    /// GEMM otherwise (Winograd wins only on some layers and CPUs: it is measured, not assumed).
    pub fn default_path(&self) -> ConvPath {
        if self.is_depthwise() {
            ConvPath::Depthwise
        } else {
            ConvPath::Gemm
        }
    }

    fn is_depthwise(&self) -> bool {
        self.spec.groups > 1 && self.spec.groups == self.spec.in_channels
    }

    /// `[N, out, H', W']` for an `[N, in, H, W]` input.
    pub fn out_dims(&self, dims: [usize; 4]) -> [usize; 4] {
        let s = &self.spec;
        let out = |i: usize, size: usize| {
            let span = s.dilation[i] * (s.kernel_size[i] - 1) + 1;
            (size + 2 * s.padding[i] - span) / s.stride[i] + 1
        };
        [dims[0], s.out_channels, out(0, dims[2]), out(1, dims[3])]
    }

    /// The convolution of `x` (`dims`) by `path` into `y` (`out_dims` long), then the epilogue
    /// with `residual` (same shape as `y`). `path` must be one of [`paths`](Self::paths).
    /// Winograd falls back to GEMM on inputs with NaN or infinities (its transforms would
    /// spread one infinity over a whole tile).
    pub fn run(
        &self,
        path: ConvPath,
        x: &[f32],
        dims: [usize; 4],
        residual: Option<&[f32]>,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let out = self.out_dims(dims);
        match path {
            ConvPath::Winograd => {
                assert!(self.winograd_applies, "a path the kernel offers");
                let s = &self.spec;
                let conv = {
                    let mut held = self.winograd.lock().unwrap_or_else(|e| e.into_inner());
                    let make = || {
                        WinogradConv::new(&self.weight, s.out_channels, s.in_channels, s.padding)
                    };
                    held.get_or_insert_with(|| Arc::new(make())).clone()
                };
                if conv.forward(x, dims, y, scratch) {
                    let plane = out[2] * out[3];
                    self.epilogue.apply_planes(y, out[1], plane, residual);
                    return;
                }
                self.gemm(x, dims, out, y, scratch);
            }
            ConvPath::Depthwise => return self.depthwise(x, dims, out, y, residual),
            ConvPath::Gemm if self.in_tasks(dims, out) => {
                return self.gemm_in_tasks(x, dims, out, y, residual);
            }
            ConvPath::Gemm => self.gemm(x, dims, out, y, scratch),
        }
        self.epilogue
            .apply_planes(y, out[1], out[2] * out[3], residual);
    }

    /// The sizes of the products that compute this convolution on a `dims` input.
    fn gemm_shape(&self, [_, cin, h, w]: [usize; 4], out: [usize; 4]) -> GemmShape {
        let s = &self.spec;
        let (cin_g, cout_g) = (cin / s.groups, s.out_channels / s.groups);
        GemmShape {
            groups: s.groups,
            plane: h * w,
            out_plane: out[2] * out[3],
            cin_g,
            cout_g,
            k: cin_g * s.kernel_size[0] * s.kernel_size[1],
            direct: s.kernel_size == [1, 1] && s.stride == [1, 1] && s.padding == [0, 0],
        }
    }

    /// Group `g`'s packed weights, `[cout_g, k]`.
    fn group_weights(&self, g: usize, cout_g: usize, k: usize) -> Mat<'_> {
        Mat::dense(&self.weight[g * cout_g * k..][..cout_g * k], cout_g, k)
    }

    fn gemm(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: [usize; 4],
        y: &mut [f32],
        cols: &mut Vec<f32>,
    ) {
        let s = &self.spec;
        let [batch, cin, h, w] = dims;
        let GemmShape {
            groups,
            plane,
            out_plane,
            cin_g,
            cout_g,
            k,
            direct,
        } = self.gemm_shape(dims, out);
        let threads = threads_for(cout_g * k * out_plane);
        // The wide product computes 2·pw extra columns per output row for each of cout_g
        // outputs, to save one short copy (a call) per output row for each of k rows.
        let extra = cout_g * 2 * s.padding[1];
        if !direct && s.stride == [1, 1] && out[3] < WIDE_BELOW && extra <= WIDE_MAX_EXTRA {
            return self.gemm_wide(x, dims, out, y, cols, threads);
        }
        if !direct {
            cols.resize(k * out_plane, 0.0);
        }
        for n in 0..batch {
            for g in 0..groups {
                let image = &x[(n * cin + g * cin_g) * plane..][..cin_g * plane];
                let rhs = if direct {
                    image
                } else {
                    im2col(
                        image,
                        [cin_g, h, w],
                        s,
                        [out[2], out[3]],
                        cols,
                        [out_plane, 0],
                        true,
                    );
                    &cols[..]
                };
                let dst =
                    &mut y[(n * s.out_channels + g * cout_g) * out_plane..][..cout_g * out_plane];
                let lhs = self.group_weights(g, cout_g, k);
                matmul(
                    dst,
                    out_plane,
                    lhs,
                    Mat::dense(rhs, k, out_plane),
                    false,
                    threads,
                );
            }
        }
    }

    /// [`gemm`](Self::gemm) for stride 1 on narrow maps, computed as if the output were as wide
    /// as the zero-padded image: row `(c, ky, kx)` of the columns is then one contiguous run of
    /// the padded plane (one copy per row, where im2col makes one per output row, each a call
    /// for a few values), and the product's extra columns are dropped as it is copied out.
    fn gemm_wide(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: [usize; 4],
        y: &mut [f32],
        scratch: &mut Vec<f32>,
        threads: usize,
    ) {
        let s = &self.spec;
        let ([batch, cin, h, w], [_, _, oh, ow]) = (dims, out);
        let ([kh, kw], [ph, pw], [dh, dw]) = (s.kernel_size, s.padding, s.dilation);
        let GemmShape {
            groups,
            plane,
            cin_g,
            cout_g,
            k,
            ..
        } = self.gemm_shape(dims, out);
        let wide = w + 2 * pw;
        // One row of slack: the last tap's run reaches (kw − 1)·dw values past the plane.
        let padded_plane = (h + 2 * ph + 1) * wide;
        let n_wide = oh * wide;
        scratch.resize(cin_g * padded_plane + k * n_wide + cout_g * n_wide, 0.0);
        let (padded, rest) = scratch.split_at_mut(cin_g * padded_plane);
        let (cols, product) = rest.split_at_mut(k * n_wide);
        for n in 0..batch {
            for g in 0..groups {
                let image = &x[(n * cin + g * cin_g) * plane..][..cin_g * plane];
                for (src, dst) in image
                    .chunks_exact(plane)
                    .zip(padded.chunks_exact_mut(padded_plane))
                {
                    dst.fill(0.0);
                    for (line, row) in src
                        .chunks_exact(w)
                        .zip(dst[ph * wide..].chunks_exact_mut(wide))
                    {
                        row[pw..pw + w].copy_from_slice(line);
                    }
                }
                for (r, row) in cols.chunks_exact_mut(n_wide).enumerate() {
                    let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                    let start = c * padded_plane + ky * dh * wide + kx * dw;
                    row.copy_from_slice(&padded[start..][..n_wide]);
                }
                let lhs = self.group_weights(g, cout_g, k);
                matmul(
                    product,
                    n_wide,
                    lhs,
                    Mat::dense(cols, k, n_wide),
                    false,
                    threads,
                );
                let dst = &mut y[(n * s.out_channels + g * cout_g) * oh * ow..][..cout_g * oh * ow];
                for (d, p) in dst.chunks_exact_mut(ow).zip(product.chunks_exact(wide)) {
                    d.copy_from_slice(&p[..ow]);
                }
            }
        }
    }

    /// Whether a GEMM convolution of `dims` runs by [`gemm_in_tasks`](Self::gemm_in_tasks): a
    /// batch of small output planes.
    fn in_tasks(&self, dims: [usize; 4], out: [usize; 4]) -> bool {
        let out_plane = out[2] * out[3];
        dims[0] > 1 && out_plane > 0 && out_plane < BATCH_COLUMNS
    }

    /// A batch of small output planes: tasks of a few images each run in parallel, each on one
    /// thread with its own columns (in cache while its product reads them) and the epilogue
    /// applied while its outputs are in cache; within a task the images' columns sit side by
    /// side in one product (a 4×4 map alone would give the micro-kernels 16 columns), whose
    /// rows are then copied to each image's planes. A product split over threads instead waits
    /// for them at every layer.
    fn gemm_in_tasks(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: [usize; 4],
        y: &mut [f32],
        residual: Option<&[f32]>,
    ) {
        let batch = dims[0];
        let out_plane = out[2] * out[3];
        let per_image = self.spec.out_channels * out_plane;
        // Enough images to fill a product, few enough for two tasks per thread.
        let spread = batch / (2 * rayon::current_num_threads()).max(1);
        let images = BATCH_COLUMNS.div_ceil(out_plane).min(spread).max(1);
        let task = |(t, ys): (usize, &mut [f32])| {
            // Taken out of the cell, not borrowed: a thread that waits inside a task may run
            // another one, which then starts from an empty buffer.
            let mut scratch = TASK_SCRATCH.take();
            let range = t * images..t * images + ys.len() / per_image;
            let r = residual.map(|r| &r[range.start * per_image..][..ys.len()]);
            self.gemm_images(x, dims, out, range, ys, &mut scratch);
            self.epilogue.apply_planes_here(ys, out[1], out_plane, r);
            TASK_SCRATCH.set(scratch);
        };
        if batch > images {
            y.par_chunks_mut(images * per_image)
                .enumerate()
                .for_each(task);
        } else {
            task((0, y));
        }
    }

    /// The GEMM convolution of images `range` of `x` into `ys` (their outputs), on this thread.
    fn gemm_images(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: [usize; 4],
        range: std::ops::Range<usize>,
        ys: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let s = &self.spec;
        let [_, cin, h, w] = dims;
        let GemmShape {
            groups,
            plane,
            out_plane,
            cin_g,
            cout_g,
            k,
            direct,
        } = self.gemm_shape(dims, out);
        let wide = range.len() * out_plane;
        scratch.resize(k * wide + cout_g * wide, 0.0);
        let (cols, product) = scratch.split_at_mut(k * wide);
        for g in 0..groups {
            for (i, n) in range.clone().enumerate() {
                let image = &x[(n * cin + g * cin_g) * plane..][..cin_g * plane];
                if direct {
                    for (row, src) in cols.chunks_mut(wide).zip(image.chunks(plane)) {
                        row[i * out_plane..][..plane].copy_from_slice(src);
                    }
                } else {
                    let (dims, out_hw) = ([cin_g, h, w], [out[2], out[3]]);
                    // On this thread: the task is one of several in parallel already.
                    im2col(image, dims, s, out_hw, cols, [wide, i * out_plane], false);
                }
            }
            let lhs = self.group_weights(g, cout_g, k);
            matmul(product, wide, lhs, Mat::dense(cols, k, wide), false, 1);
            for i in 0..range.len() {
                let first_plane = (i * s.out_channels + g * cout_g) * out_plane;
                let planes = &mut ys[first_plane..][..cout_g * out_plane];
                for (dst, row) in planes.chunks_mut(out_plane).zip(product.chunks(wide)) {
                    dst.copy_from_slice(&row[i * out_plane..][..out_plane]);
                }
            }
        }
    }

    /// One input channel per group: each output plane is a sum of `kh·kw` shifted rows of its
    /// input plane times one weight each. Rows are copied once into a zero-padded line (split
    /// into `stride` phases for strided convolutions), so every tap is a contiguous
    /// multiply-add the compiler vectorises; the planes run in a function compiled for the
    /// instruction set in use ([`Isa`](super::simd::Isa)).
    fn depthwise(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: [usize; 4],
        y: &mut [f32],
        residual: Option<&[f32]>,
    ) {
        let s = &self.spec;
        let [_, cin, h, w] = dims;
        let plane = out[2] * out[3];
        if plane == 0 {
            return;
        }
        let (mult, taps) = (s.out_channels / cin, s.kernel_size[0] * s.kernel_size[1]);
        let geo = DepthwiseGeometry::new(
            [h, w],
            [out[2], out[3]],
            s.kernel_size,
            s.stride,
            s.padding,
            s.dilation,
        );
        let run = |(no, dst): (usize, &mut [f32])| {
            let (n, o) = (no / s.out_channels, no % s.out_channels);
            let src = &x[(n * cin + o / mult) * h * w..][..h * w];
            let weights = &self.weight[o * taps..][..taps];
            let residual = residual.map(|r| &r[no * plane..][..plane]);
            // Taken, not borrowed: a rayon thread waiting inside a task may run another.
            let mut scratch = TASK_SCRATCH.take();
            scratch.resize(geo.scratch_len(), 0.0);
            super::simd::vectorize(|| {
                geo.plane(src, weights, dst, &mut scratch, &self.epilogue, o, residual)
            });
            TASK_SCRATCH.set(scratch);
        };
        if y.len() * taps < 1 << 16 {
            y.chunks_mut(plane).enumerate().for_each(run);
        } else {
            y.par_chunks_mut(plane).enumerate().for_each(run);
        }
    }
}

/// A convolution as matrix products, per image and group: `W (cout_g × k) · cols (k × out_plane)`.
struct GemmShape {
    groups: usize,
    /// Input pixels per channel.
    plane: usize,
    out_plane: usize,
    cin_g: usize,
    cout_g: usize,
    /// `cin_g · kh · kw`.
    k: usize,
    /// 1×1, stride 1, unpadded: the image itself is `cols`.
    direct: bool,
}

/// The output columns `lo..hi` whose input column `ox·stride + offset − pad` lies in `0..width`.
fn valid_range(
    out_w: usize,
    width: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    let lo = pad.saturating_sub(offset).div_ceil(stride).min(out_w);
    // Largest ox with ox·stride + offset − pad ≤ width − 1.
    let hi = match (width + pad).checked_sub(offset + 1) {
        Some(last) => (last / stride + 1).min(out_w),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// Output widths below which stride-1 convolutions take [`ConvKernel::gemm_wide`] (wider rows
/// are long copies already)...
const WIDE_BELOW: usize = 64;
/// ...when its extra multiply-adds per output row and column row, `cout · 2 · pad`, are at most
/// this: about what one short copy costs (ResNet-18 at 32², whose 256- and 512-channel layers
/// have 2×2 and 1×1 maps, ran 15 % slower with every narrow layer wide).
const WIDE_MAX_EXTRA: usize = 256;

/// Output columns below which the images of a batch are multiplied together.
const BATCH_COLUMNS: usize = 4096;

thread_local! {
    /// Each thread's scratch for [`ConvKernel::gemm_in_tasks`] and the depthwise planes, kept
    /// between calls.
    static TASK_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The columns of one image and group: row `(c, ky, kx)` of `cols` (rows `row_stride` apart,
/// starting at column `offset`) holds the input values that weight meets at each output
/// position (0 in the padding). `parallel`: rows split over the threads when there are many.
fn im2col(
    image: &[f32],
    [channels, h, w]: [usize; 3],
    s: &Conv2dSpec,
    [oh, ow]: [usize; 2],
    cols: &mut [f32],
    [row_stride, offset]: [usize; 2],
    parallel: bool,
) {
    let ([kh, kw], [sh, sw], [ph, pw], [dh, dw]) = (s.kernel_size, s.stride, s.padding, s.dilation);
    let out_plane = oh * ow;
    let run = |(r, row): (usize, &mut [f32])| {
        let row = &mut row[offset..][..out_plane];
        let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let plane = &image[c * h * w..][..h * w];
        let (lo, hi) = valid_range(ow, w, sw, kx * dw, pw);
        for oy in 0..oh {
            let dst = &mut row[oy * ow..][..ow];
            let Some(iy) = (oy * sh + ky * dh).checked_sub(ph).filter(|&iy| iy < h) else {
                dst.fill(0.0);
                continue;
            };
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if lo == hi {
                continue;
            }
            let src = &plane[iy * w..][..w];
            let start = lo * sw + kx * dw - pw;
            if sw == 1 {
                dst[lo..hi].copy_from_slice(&src[start..][..hi - lo]);
            } else {
                dst[lo..hi]
                    .iter_mut()
                    .zip(src[start..].iter().step_by(sw))
                    .for_each(|(d, v)| *d = *v);
            }
        }
    };
    let rows = channels * kh * kw;
    if out_plane == 0 || rows == 0 {
        return;
    }
    let cols = &mut cols[..(rows - 1) * row_stride + offset + out_plane];
    if !parallel || rows * out_plane < 1 << 16 {
        cols.chunks_mut(row_stride).enumerate().for_each(run);
    } else {
        cols.par_chunks_mut(row_stride).enumerate().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::valid_range;

    #[test]
    fn valid_ranges_cover_exactly_the_columns_inside_the_image() {
        for (out_w, width, stride, offset, pad) in [
            (8, 8, 1, 0, 1),
            (8, 8, 1, 2, 1),
            (4, 8, 2, 0, 1),
            (3, 7, 3, 4, 2),
            (1, 1, 1, 0, 0),
            (5, 2, 1, 0, 3),
        ] {
            let (lo, hi) = valid_range(out_w, width, stride, offset, pad);
            for ox in 0..out_w {
                let inside = (ox * stride + offset)
                    .checked_sub(pad)
                    .is_some_and(|i| i < width);
                assert_eq!(
                    inside,
                    (lo..hi).contains(&ox),
                    "{out_w} {width} {stride} {offset} {pad}: {ox}"
                );
            }
        }
    }
}
