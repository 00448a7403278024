//! Depthwise convolutions (one input channel per group) by a direct loop per channel plane.
//!
//! The zero-padded plane is split into `stride_h × stride_w` phase planes (phase `(r, s)` holds
//! the padded pixels whose row is `≡ r` and column `≡ s`), so every tap reads one phase at a
//! fixed offset from the output's flat index. The output is computed over rows as wide as a
//! phase, whatever the stride, the columns past the image discarded, in chunks of [`CHUNK`]
//! values that stay in registers across all taps and are stored once. A 7×7 map with a 5×5
//! filter is then 25 taps over 77 contiguous values instead of 175 rows of seven.

use super::eltwise::Epilogue;

/// Output values accumulated together over every tap (four AVX-512 registers).
const CHUNK: usize = 64;
/// The chunk of the last outputs of a plane (one AVX-512 register): tiny maps (a 1×1 map with a
/// 5×5 filter has 5 outputs per phase row) would otherwise compute a whole [`CHUNK`].
const TAIL: usize = 16;

/// Where a depthwise convolution's windows lie on one plane.
pub(crate) struct DepthwiseGeometry {
    h: usize,
    w: usize,
    out: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    /// Rows and columns of one phase plane.
    phase: [usize; 2],
    /// Per tap (row-major over the filter): where it reads, relative to the output's flat index.
    offsets: Vec<usize>,
    /// Output values computed per plane: output rows × phase columns, rounded up to [`TAIL`].
    wide_len: usize,
    /// Length of the phase buffer, slack for the discarded columns' reads included.
    phases_len: usize,
}

impl DepthwiseGeometry {
    /// The geometry of a `kernel` with `stride`, `pad` and `dilation` on an `h × w` plane whose
    /// output is `out` (as the convolution's output size formula gives).
    pub fn new(
        [h, w]: [usize; 2],
        out: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
    ) -> Self {
        let (tall, wide) = (h + 2 * pad[0], w + 2 * pad[1]);
        let phase = [tall.div_ceil(stride[0]), wide.div_ceil(stride[1])];
        let phase_len = phase[0] * phase[1];
        let mut offsets = Vec::with_capacity(kernel[0] * kernel[1]);
        for ky in 0..kernel[0] {
            for kx in 0..kernel[1] {
                let (a, b) = (ky * dilation[0], kx * dilation[1]);
                let which = (a % stride[0]) * stride[1] + b % stride[1];
                offsets.push(which * phase_len + (a / stride[0]) * phase[1] + b / stride[1]);
            }
        }
        let wide_len = (out[0] * phase[1]).next_multiple_of(TAIL);
        let furthest = offsets.iter().max().copied().unwrap_or(0) + wide_len;
        Self {
            h,
            w,
            out,
            stride,
            pad,
            phase,
            offsets,
            wide_len,
            phases_len: furthest.max(stride[0] * stride[1] * phase_len),
        }
    }

    /// Scratch one plane needs: the phases and the wide output.
    pub fn scratch_len(&self) -> usize {
        self.phases_len + self.wide_len
    }

    /// Convolves one channel plane `src` (`h × w`) with `weights` (`kh · kw`) into `dst`
    /// (`out_h × out_w`), then applies `epilogue` for `channel` with its `residual` plane.
    /// `scratch` must hold [`scratch_len`](Self::scratch_len) values.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn plane(
        &self,
        src: &[f32],
        weights: &[f32],
        dst: &mut [f32],
        scratch: &mut [f32],
        epilogue: &Epilogue,
        channel: usize,
        residual: Option<&[f32]>,
    ) {
        let (phases, wide) = scratch.split_at_mut(self.phases_len);
        self.split_into_phases(src, phases);
        let wide = &mut wide[..self.wide_len];
        let full = wide.len() / CHUNK * CHUNK;
        let (head, tail) = wide.split_at_mut(full);
        self.accumulate::<CHUNK>(phases, weights, head, 0);
        self.accumulate::<TAIL>(phases, weights, tail, full);
        let ow = self.out[1];
        for (row, line) in dst.chunks_exact_mut(ow).zip(wide.chunks(self.phase[1])) {
            row.copy_from_slice(&line[..ow]);
        }
        epilogue.apply(channel, dst, residual);
    }

    /// `out` (whole chunks of `N`, the wide output from `start` on) summed over every tap.
    #[inline(always)]
    fn accumulate<const N: usize>(
        &self,
        phases: &[f32],
        weights: &[f32],
        out: &mut [f32],
        start: usize,
    ) {
        for (chunk, out) in out.chunks_exact_mut(N).enumerate() {
            let first = start + chunk * N;
            let mut acc = [0f32; N];
            for (&offset, &wv) in self.offsets.iter().zip(weights) {
                let input: &[f32; N] = phases[first + offset..][..N].try_into().expect("N values");
                for (a, v) in acc.iter_mut().zip(input) {
                    *a += wv * v;
                }
            }
            out.copy_from_slice(&acc);
        }
    }

    /// Writes the zero-padded plane into its phase planes.
    #[inline(always)]
    fn split_into_phases(&self, src: &[f32], phases: &mut [f32]) {
        let ([sh, sw], [ph, pw]) = (self.stride, self.pad);
        let [rows, cols] = self.phase;
        phases.fill(0.0);
        for (iy, line) in src.chunks_exact(self.w).take(self.h).enumerate() {
            let py = iy + ph;
            let row_base = (py % sh) * sw * rows * cols + (py / sh) * cols;
            if sw == 1 {
                phases[row_base + pw..][..self.w].copy_from_slice(line);
                continue;
            }
            if sw == 2 {
                // Input column 2k + t is padded column 2k + t + pw: phase (t + pw) % 2, column
                // k + (t + pw) / 2. Both phases written in one pass over pairs (it vectorises).
                let plane = rows * cols;
                let first = row_base + (pw % 2) * plane + pw / 2;
                let second = row_base + (1 - pw % 2) * plane + pw.div_ceil(2);
                let (low, high) = phases.split_at_mut(row_base + plane);
                let (a, b) = if first < second {
                    (&mut low[first..], &mut high[second - row_base - plane..])
                } else {
                    (&mut high[first - row_base - plane..], &mut low[second..])
                };
                let pairs = line.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    a[self.w / 2] = *last;
                }
                for ((pair, x), y) in pairs.zip(a.iter_mut()).zip(b.iter_mut()) {
                    *x = pair[0];
                    *y = pair[1];
                }
                continue;
            }
            // Phase column j of phase s holds padded column s + j·sw, input column s + j·sw − pw.
            for s in 0..sw {
                let first = pw.saturating_sub(s).div_ceil(sw);
                let Some(ix) = (s + first * sw).checked_sub(pw).filter(|&ix| ix < self.w) else {
                    continue;
                };
                let dst = &mut phases[row_base + s * rows * cols..][first..cols];
                for (d, &v) in dst.iter_mut().zip(line[ix..].iter().step_by(sw)) {
                    *d = v;
                }
            }
        }
    }
}
