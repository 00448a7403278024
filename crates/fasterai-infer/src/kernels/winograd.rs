//! Winograd convolution F(4×4, 3×3) (Lavin & Gray, 2016) for stride-1 3×3 convolutions on the
//! CPU.
//!
//! A 3×3 filter over a 6×6 input tile gives a 4×4 output tile with 36 multiplications instead of
//! 144: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the element-wise products
//! become 36 independent matrix products `U[ξ] (out × in) · V[ξ] (in × tiles)` (the `gemm`
//! crate, one task each). The transforms are host loops over contiguous rows with the matrices
//! as constants (their zeros and ones cost nothing), one rayon task per channel, compiled for
//! the instruction set in use ([`Isa`](super::simd::Isa): AVX-512, AVX2 or the baseline).

use rayon::prelude::*;

use super::gemm::{Mat, matmul};
use fasterai_core::graph::ops::Conv2dSpec;

/// Outputs per tile side.
const M: usize = 4;
/// Inputs per tile side (`M + 2`).
const A: usize = 6;

/// Input transform `Bᵀ` (`V = Bᵀ d B`), interpolation points 0, ±1, ±2 and ∞.
const BT: [[f32; A]; A] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// Filter transform `G` (`U = G g Gᵀ`), in f64 so that `U` is rounded once.
const G: [[f64; 3]; A] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Output transform `Aᵀ` (`Y = Aᵀ M A`).
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Whether F(4×4, 3×3) computes this convolution: 3×3, stride 1, dilation 1, ungrouped.
pub(crate) fn applies(spec: &Conv2dSpec) -> bool {
    spec.kernel_size == [3, 3]
        && spec.stride == [1, 1]
        && spec.dilation == [1, 1]
        && spec.groups == 1
}

/// Where the tiles of one convolution lie.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    pad: [usize; 2],
    out_h: usize,
    out_w: usize,
    tiles_h: usize,
    tiles_w: usize,
}

impl Geometry {
    fn tiles(&self) -> usize {
        self.batch * self.tiles_h * self.tiles_w
    }
}

/// A stride-1, dilation-1, ungrouped 3×3 convolution with its filters transformed once.
pub(crate) struct WinogradConv {
    /// `U`, `[36, out, in]`.
    u: Vec<f32>,
    out_channels: usize,
    in_channels: usize,
    pad: [usize; 2],
}

impl WinogradConv {
    /// Transforms `weight` (`[out, in, 3, 3]`, row-major) once.
    pub(crate) fn new(
        weight: &[f32],
        out_channels: usize,
        in_channels: usize,
        pad: [usize; 2],
    ) -> Self {
        let w = weight;
        let mut u = vec![0f32; A * A * out_channels * in_channels];
        u.par_chunks_mut(in_channels.max(1))
            .enumerate()
            .for_each(|(row, out)| {
                let (xi, k) = (row / out_channels, row % out_channels);
                let (gi, gj) = (&G[xi / A], &G[xi % A]);
                for (c, value) in out.iter_mut().enumerate() {
                    let f = &w[(k * in_channels + c) * 9..][..9];
                    let mut acc = 0f64;
                    for a in 0..3 {
                        for b in 0..3 {
                            acc += gi[a] * f64::from(f[a * 3 + b]) * gj[b];
                        }
                    }
                    *value = acc as f32;
                }
            });
        Self {
            u,
            out_channels,
            in_channels,
            pad,
        }
    }

    /// The convolution of `x` (`[N, in, H, W]` = `dims`) into `y` (`[N, out, H', W']`), without
    /// bias or epilogue; `scratch` holds the transformed tiles.
    ///
    /// `false` (and `y` untouched) when `x` holds a NaN or an infinity: the transforms subtract
    /// neighbouring values, so one infinity would turn its whole tile into NaN where the direct
    /// convolution keeps it to the outputs whose window holds it.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        dims: [usize; 4],
        y: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> bool {
        let [batch, channels, height, width] = dims;
        assert_eq!(channels, self.in_channels, "shape checked by the graph");
        let (out_h, out_w) = (height + 2 * self.pad[0] - 2, width + 2 * self.pad[1] - 2);
        let geo = Geometry {
            batch,
            channels,
            height,
            width,
            pad: self.pad,
            out_h,
            out_w,
            tiles_h: out_h.div_ceil(M),
            tiles_w: out_w.div_ceil(M),
        };
        if !x
            .par_chunks(1 << 14)
            .all(|p| p.iter().all(|v| v.is_finite()))
        {
            return false;
        }
        let tiles = geo.tiles();
        let (v_len, m_len) = (A * A * channels * tiles, A * A * self.out_channels * tiles);
        scratch.resize(v_len + m_len, 0.0);
        let (v, m) = scratch.split_at_mut(v_len);
        transform_input(x, &geo, v);
        let (out, inp) = (self.out_channels, self.in_channels);
        m.par_chunks_mut(out * tiles)
            .zip(v.par_chunks(inp * tiles))
            .zip(self.u.par_chunks(out * inp))
            .for_each(|((m, v), u)| {
                matmul(
                    m,
                    tiles,
                    Mat::dense(u, out, inp),
                    Mat::dense(v, inp, tiles),
                    false,
                    1,
                );
            });
        transform_output(m, &geo, self.out_channels, y);
        true
    }
}

/// Tiles a transform handles at once: whole tile rows, about this many tiles, so that every
/// loop runs over a long contiguous row (a 14×14 map has tile rows of four) and the rows in
/// flight (36 or 40 of them) stay in L2.
const CHUNK_TILES: usize = 512;

/// Tile rows per chunk of [`CHUNK_TILES`].
fn chunk_rows(geo: &Geometry) -> usize {
    (CHUNK_TILES / geo.tiles_w.max(1)).clamp(1, geo.tiles_h.max(1))
}

/// `V[ξ][c][t] = (Bᵀ d B)[ξ]` for the 6×6 input tile `d` of channel `c` at tile `t`.
///
/// Per channel and chunk of tile rows: the tiles' values gathered as `D[r][k]` (row `r`,
/// column `k` of every tile side by side), then `Bᵀ` down and `B` across as sums of those
/// rows, the last written straight into `V`.
fn transform_input(x: &[f32], geo: &Geometry, v: &mut [f32]) {
    let tiles = geo.tiles();
    // One task per input channel, each writing its row of every V[ξ].
    let mut rows: Vec<Vec<&mut [f32]>> = (0..geo.channels)
        .map(|_| Vec::with_capacity(A * A))
        .collect();
    for plane in v.chunks_mut(geo.channels * tiles) {
        for (c, row) in plane.chunks_mut(tiles).enumerate() {
            rows[c].push(row);
        }
    }
    // A zero-padded input row covers every tile of a tile row: 4·tiles_w + 2 columns, rounded
    // up to whole groups of 4.
    let (tiles_w, wide) = (geo.tiles_w, (geo.tiles_w + 1) * M);
    let plane = geo.height * geo.width;
    let chunk = chunk_rows(geo);
    let span = chunk * tiles_w;
    rows.into_par_iter().enumerate().for_each(|(c, mut out)| {
        super::simd::dispatch(|| {
            let mut padded = vec![0f32; wide];
            let mut phases: [Vec<f32>; M] = std::array::from_fn(|_| vec![0f32; tiles_w + 1]);
            let mut d = vec![0f32; A * A * span];
            let mut e = vec![0f32; A * A * span];
            for n in 0..geo.batch {
                let image = &x[(n * geo.channels + c) * plane..][..plane];
                for ty0 in (0..geo.tiles_h).step_by(chunk) {
                    let ty1 = (ty0 + chunk).min(geo.tiles_h);
                    let len = (ty1 - ty0) * tiles_w;
                    for ty in ty0..ty1 {
                        let at = (ty - ty0) * tiles_w;
                        for r in 0..A {
                            let y = (ty * M + r).checked_sub(geo.pad[0]);
                            padded.fill(0.0);
                            if let Some(y) = y.filter(|&y| y < geo.height) {
                                let len = geo.width.min(wide - geo.pad[1]);
                                padded[geo.pad[1]..geo.pad[1] + len]
                                    .copy_from_slice(&image[y * geo.width..][..len]);
                            }
                            // Column k of tile tx is column k % 4 of group tx + k / 4.
                            let [p0, p1, p2, p3] = &mut phases;
                            for (g, group) in padded.chunks_exact(M).enumerate() {
                                (p0[g], p1[g], p2[g], p3[g]) =
                                    (group[0], group[1], group[2], group[3]);
                            }
                            for k in 0..A {
                                let phase = &phases[k % M][k / M..][..tiles_w];
                                d[(r * A + k) * span + at..][..tiles_w].copy_from_slice(phase);
                            }
                        }
                    }
                    // Bᵀ down: E[i][k] = Σ_r Bᵀ[i][r] D[r][k].
                    for (ik, dst) in e.chunks_exact_mut(span).enumerate() {
                        let (i, k) = (ik / A, ik % A);
                        let src: [&[f32]; A] =
                            std::array::from_fn(|r| &d[(r * A + k) * span..][..len]);
                        combine(&mut dst[..len], &BT[i], src);
                    }
                    // B across: V[6i + j] = Σ_k Bᵀ[j][k] E[i][k].
                    let base = (n * geo.tiles_h + ty0) * tiles_w;
                    for i in 0..A {
                        let src: [&[f32]; A] =
                            std::array::from_fn(|k| &e[(i * A + k) * span..][..len]);
                        for (j, bt) in BT.iter().enumerate() {
                            combine(&mut out[i * A + j][base..base + len], bt, src);
                        }
                    }
                }
            }
        })
    });
}

/// `dst = Σ_i c[i] · src[i]` element-wise, skipping zero coefficients (loops the compiler
/// vectorises).
#[inline(always)]
fn combine(dst: &mut [f32], c: &[f32; A], src: [&[f32]; A]) {
    let mut terms = c.iter().zip(src).filter(|(ci, _)| **ci != 0.0);
    let (&c0, s0) = terms.next().expect("every transform row has a non-zero");
    dst.iter_mut().zip(s0).for_each(|(d, x)| *d = c0 * x);
    for (&ci, s) in terms {
        dst.iter_mut().zip(s).for_each(|(d, x)| *d += ci * x);
    }
}

/// `Y = Aᵀ M A` per tile into `y`, `[N, out, H', W']`: per output plane and chunk of tile
/// rows, both halves of the transform over rows as long as the chunk, then the 4×4 blocks into
/// the plane.
fn transform_output(m: &[f32], geo: &Geometry, out_channels: usize, y: &mut [f32]) {
    let tiles = geo.tiles();
    let (out_h, out_w, tiles_w) = (geo.out_h, geo.out_w, geo.tiles_w);
    let chunk = chunk_rows(geo);
    let span = chunk * tiles_w;
    y.par_chunks_mut(out_h * out_w)
        .enumerate()
        .for_each(|(nk, plane)| {
            super::simd::dispatch(|| {
                let (n, k) = (nk / out_channels, nk % out_channels);
                // z[r][j] = Σ_i Aᵀ[r][i] M[6i + j], w[r][s] = Σ_j Aᵀ[s][j] z[r][j].
                let mut z = vec![0f32; M * A * span];
                let mut w = vec![0f32; M * M * span];
                let mut line = vec![0f32; M * tiles_w];
                for ty0 in (0..geo.tiles_h).step_by(chunk) {
                    let ty1 = (ty0 + chunk).min(geo.tiles_h);
                    let len = (ty1 - ty0) * tiles_w;
                    let base = (n * geo.tiles_h + ty0) * tiles_w;
                    for (rj, dst) in z.chunks_exact_mut(span).enumerate() {
                        let (r, j) = (rj / A, rj % A);
                        let src: [&[f32]; A] = std::array::from_fn(|i| {
                            &m[((i * A + j) * out_channels + k) * tiles + base..][..len]
                        });
                        combine(&mut dst[..len], &AT[r], src);
                    }
                    for (rs, dst) in w.chunks_exact_mut(span).enumerate() {
                        let (r, s) = (rs / M, rs % M);
                        let src: [&[f32]; A] =
                            std::array::from_fn(|j| &z[(r * A + j) * span..][..len]);
                        combine(&mut dst[..len], &AT[s], src);
                    }
                    for ty in ty0..ty1 {
                        let at = (ty - ty0) * tiles_w;
                        for r in 0..(out_h - ty * M).min(M) {
                            let [w0, w1, w2, w3]: [&[f32]; M] =
                                std::array::from_fn(|s| &w[(r * M + s) * span + at..][..tiles_w]);
                            for (tx, group) in line.chunks_exact_mut(M).enumerate() {
                                group.copy_from_slice(&[w0[tx], w1[tx], w2[tx], w3[tx]]);
                            }
                            plane[(ty * M + r) * out_w..][..out_w].copy_from_slice(&line[..out_w]);
                        }
                    }
                }
            })
        });
}
