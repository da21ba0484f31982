//! 2-D convolution on contiguous NCHW `f32` slices, with the batch folded into a few large products.
//!
//! burn-flex runs one product per image, which for a late ResNet layer (a 2×2 output at 64² input) is a
//! product four columns wide, and takes the weight gradient as a transposed convolution one to nine
//! columns wide. Here each pass is one product per group of whole images (issue 16):
//!
//! - forward: `Y = W · col(X)`, with `col(X)` the im2col matrix of the group's images side by side
//!   (`K = Ci·Kh·Kw` rows, one column per output pixel);
//! - weight gradient: `dW += dY · col(X)ᵀ`, whose inner dimension is every pixel of the group;
//! - input gradient: `dcol = Wᵀ · dY`, scattered back into the images (col2im).
//!
//! A group is as many images as keep its im2col matrix within 4 MiB; the groups are split into one
//! contiguous chunk per rayon thread, or, with fewer groups than threads, each product runs on all of
//! them. The products are `gemm`'s, the crate and kernels burn-flex multiplies with. Every output element
//! is summed in an order fixed by the shapes and the thread count, so results repeat run to run.

use std::cell::Cell;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// The shapes and options of one convolution (groups = 1), in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding before each spatial dimension (top, left).
    pub padding_begin: [usize; 2],
    /// Zero padding after each spatial dimension (bottom, right).
    pub padding_end: [usize; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
}

impl Conv2dGeometry {
    /// Output height and width, as PyTorch computes them.
    pub fn output(&self) -> [usize; 2] {
        std::array::from_fn(|axis| {
            let padded = self.input[axis] + self.padding_begin[axis] + self.padding_end[axis];
            let reach = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            assert!(
                padded >= reach,
                "convolution kernel larger than its padded input: {self:?}"
            );
            (padded - reach) / self.stride[axis] + 1
        })
    }

    /// Whether the im2col matrix of one image is the image itself: a 1×1 kernel, stride 1, no padding.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding_begin == [0, 0]
            && self.padding_end == [0, 0]
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn patch_size(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    fn output_pixels(&self) -> usize {
        let [height, width] = self.output();
        height * width
    }

    /// Columns of the im2col matrix: one per output pixel of every image.
    fn columns(&self) -> usize {
        self.batch * self.output_pixels()
    }

    fn input_len(&self) -> usize {
        self.batch * self.channels_in * self.input[0] * self.input[1]
    }

    /// Elements of the weight, `[Co, Ci, Kh, Kw]`.
    pub fn weight_len(&self) -> usize {
        self.channels_out * self.patch_size()
    }

    /// Elements of the output, `[N, Co, Ho, Wo]`.
    pub fn output_len(&self) -> usize {
        self.channels_out * self.columns()
    }

    /// For output row (or column) `out` and kernel offset `tap`: the input index it reads, if inside.
    #[inline]
    fn source(&self, axis: usize, out: usize, tap: usize) -> Option<usize> {
        let padded = out * self.stride[axis] + tap * self.dilation[axis];
        padded
            .checked_sub(self.padding_begin[axis])
            .filter(|&index| index < self.input[axis])
    }
}

/// `y = conv2d(x, w)` (no bias): `x` is `[N, Ci, H, W]`, `w` `[Co, Ci, Kh, Kw]`, the result `[N, Co, Ho, Wo]`.
pub fn forward(geometry: &Conv2dGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    check_lengths(geometry, x.len(), weight.len());
    let plan = Plan::new(geometry);
    let (out_channels, inner, pixels) = (
        geometry.channels_out,
        geometry.patch_size(),
        geometry.output_pixels(),
    );
    let mut out = vec![0.0; geometry.output_len()];
    let chunk_len = plan.chunk_images * out_channels * pixels;
    for_each_chunk(&mut out, chunk_len, plan.across_chunks(), |chunk, out| {
        let [mut columns, mut folded] = SCRATCH.take();
        for (first, images) in plan.groups(chunk) {
            let cols = images * pixels;
            let columns = image_columns(geometry, x, first, images, &mut columns, plan.within_group());
            let out = &mut out[(first - chunk * plan.chunk_images) * out_channels * pixels..]
                [..out_channels * cols];
            // out[Co, N·P] = W[Co, K] · col[K, N·P]; one image's result is already in burn's layout.
            let target = if images == 1 {
                &mut *out
            } else {
                resized(&mut folded, out_channels * cols)
            };
            product(
                target,
                Layout::RowMajor,
                [out_channels, cols, inner],
                Matrix::rows(weight, inner),
                Matrix::rows(columns, cols),
                plan.within_group(),
                false,
            );
            if images > 1 {
                unfold(&folded[..out_channels * cols], out, images, pixels);
            }
        }
        SCRATCH.set([columns, folded]);
    });
    out
}

/// The gradients of `conv2d(x, w)` with respect to `x` and `w`, given the output's gradient `dy`.
/// Either is skipped (`None`) when not asked for.
pub fn backward(
    geometry: &Conv2dGeometry,
    x: &[f32],
    weight: &[f32],
    output_grad: &[f32],
    want: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    check_lengths(geometry, x.len(), weight.len());
    assert_eq!(
        output_grad.len(),
        geometry.output_len(),
        "output gradient's length"
    );
    let plan = Plan::new(geometry);
    let (out_channels, inner, pixels) = (
        geometry.channels_out,
        geometry.patch_size(),
        geometry.output_pixels(),
    );
    let image_len = geometry.channels_in * geometry.input[0] * geometry.input[1];
    let mut input_grad = vec![0.0; if want[0] { geometry.input_len() } else { 0 }];
    // Kept column-major, dW makes gemm pack dY rather than the K/Co times larger im2col matrix (11 % of
    // the quickstart model's step), at the cost of one transpose of dW at the end: worth it where the
    // batch's pixels far outnumber the output channels (early layers), not in a late layer of a few
    // pixels and hundreds of channels.
    let weight_layout = if geometry.columns() >= TRANSPOSED_WEIGHT_GRAD * out_channels {
        Layout::ColumnMajor
    } else {
        Layout::RowMajor
    };
    // One partial weight gradient per chunk, summed in chunk order at the end: the same additions in the
    // same order whichever thread runs which chunk.
    let mut partials = vec![vec![0.0; if want[1] { geometry.weight_len() } else { 0 }]; plan.chunks()];
    let work = |chunk: usize, input_grad: &mut [f32], weight_grad: &mut [f32]| {
        let [mut columns, mut folded] = SCRATCH.take();
        for (first, images) in plan.groups(chunk) {
            let cols = images * pixels;
            let grad = &output_grad[first * out_channels * pixels..][..out_channels * cols];
            let grad: &[f32] = if images == 1 {
                grad
            } else {
                let folded = resized(&mut folded, out_channels * cols);
                fold(grad, folded, images, pixels);
                folded
            };
            if want[0] {
                // dcol[K, N·P] = Wᵀ[K, Co] · dY[Co, N·P], then each input pixel sums what read it.
                let start = (first - chunk * plan.chunk_images) * image_len;
                let target = &mut input_grad[start..][..images * image_len];
                // A pointwise convolution's column gradient of one image is its input gradient.
                let direct = images == 1 && geometry.is_pointwise();
                let column_grad = if direct {
                    &mut *target
                } else {
                    resized(&mut columns, inner * cols)
                };
                product(
                    column_grad,
                    Layout::RowMajor,
                    [inner, cols, out_channels],
                    Matrix::columns(weight, inner),
                    Matrix::rows(grad, cols),
                    plan.within_group(),
                    false,
                );
                if !direct {
                    col2im(
                        geometry,
                        &columns[..inner * cols],
                        target,
                        images,
                        plan.within_group(),
                    );
                }
            }
            if want[1] {
                // dW[Co, K] += dY[Co, N·P] · colᵀ[N·P, K]
                let columns = image_columns(geometry, x, first, images, &mut columns, plan.within_group());
                product(
                    weight_grad,
                    weight_layout,
                    [out_channels, inner, cols],
                    Matrix::rows(grad, cols),
                    Matrix::columns(columns, cols),
                    plan.within_group(),
                    true,
                );
            }
        }
        SCRATCH.set([columns, folded]);
    };
    let input_chunk = if want[0] { plan.chunk_images * image_len } else { 0 };
    if plan.across_chunks() {
        let mut input_chunks: Vec<&mut [f32]> = if want[0] {
            input_grad.chunks_mut(input_chunk).collect()
        } else {
            Vec::new()
        };
        input_chunks.resize_with(plan.chunks(), Default::default);
        input_chunks
            .into_par_iter()
            .zip(partials.par_iter_mut())
            .enumerate()
            .for_each(|(chunk, (input_grad, weight_grad))| work(chunk, input_grad, weight_grad));
    } else {
        work(0, &mut input_grad, &mut partials[0]);
    }
    let weight_grad = want[1].then(|| {
        let mut partials = partials.into_iter();
        let mut sum = partials.next().expect("one chunk at least");
        for partial in partials {
            sum.iter_mut()
                .zip(&partial)
                .for_each(|(sum, value)| *sum += value);
        }
        match weight_layout {
            Layout::RowMajor => sum,
            Layout::ColumnMajor => transposed(&sum, inner, out_channels),
        }
    });
    (want[0].then_some(input_grad), weight_grad)
}

/// Pixels of the batch per output channel from which the weight gradient is taken column-major.
const TRANSPOSED_WEIGHT_GRAD: usize = 8;

/// The `[columns, rows]` row-major transpose of the `[rows, columns]` row-major `matrix`, by tiles that
/// stay in L1 on both sides.
fn transposed(matrix: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; matrix.len()];
    for row_start in (0..rows).step_by(TILE) {
        for column_start in (0..columns).step_by(TILE) {
            for row in row_start..(row_start + TILE).min(rows) {
                for column in column_start..(column_start + TILE).min(columns) {
                    out[column * rows + row] = matrix[row * columns + column];
                }
            }
        }
    }
    out
}

/// How a convolution's batch is split: into contiguous chunks of images, one per thread, and each chunk
/// into groups of whole images, each one product (as many images as [`GROUP_ELEMENTS`] allows, at least
/// one). With fewer groups than threads there is one chunk, and each product uses every thread itself.
struct Plan {
    batch: usize,
    group_images: usize,
    chunk_images: usize,
    threads: usize,
}

/// The im2col matrix's size per product, in elements: 4 MiB, so that a group's matrix is written and
/// read back while still in the caches, and no pass allocates a matrix of the whole batch.
const GROUP_ELEMENTS: usize = 1 << 20;

impl Plan {
    fn new(geometry: &Conv2dGeometry) -> Self {
        let image_elements = geometry.patch_size() * geometry.output_pixels();
        let group_images = (GROUP_ELEMENTS / image_elements.max(1)).clamp(1, geometry.batch.max(1));
        let groups = geometry.batch.div_ceil(group_images);
        let threads = rayon::current_num_threads();
        let chunk_images = if groups >= threads && threads > 1 {
            geometry.batch.div_ceil(threads)
        } else {
            geometry.batch.max(1)
        };
        Self {
            batch: geometry.batch,
            group_images,
            chunk_images,
            threads,
        }
    }

    fn chunks(&self) -> usize {
        self.batch.div_ceil(self.chunk_images).max(1)
    }

    /// Whether chunks run on different threads (else each product runs on all of them).
    fn across_chunks(&self) -> bool {
        self.chunks() > 1 && self.threads > 1
    }

    fn within_group(&self) -> bool {
        !self.across_chunks()
    }

    /// The groups of chunk `chunk`: (first image, images).
    fn groups(&self, chunk: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let start = chunk * self.chunk_images;
        let end = (start + self.chunk_images).min(self.batch);
        (start..end)
            .step_by(self.group_images)
            .map(move |first| (first, self.group_images.min(end - first)))
    }
}

/// Runs `work(index, chunk)` over `data`'s chunks of `len`, on rayon's threads when `parallel`.
fn for_each_chunk(data: &mut [f32], len: usize, parallel: bool, work: impl Fn(usize, &mut [f32]) + Sync) {
    if data.is_empty() || len == 0 {
        return;
    }
    if parallel {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(index, chunk)| work(index, chunk));
    } else {
        data.chunks_mut(len)
            .enumerate()
            .for_each(|(index, chunk)| work(index, chunk));
    }
}

thread_local! {
    /// Each thread's im2col and fold matrices, kept from one call to the next: a fresh matrix per call
    /// was zeroed before being overwritten, 2 % of the quickstart model's step. Taken, not borrowed, so
    /// that a call nested inside another (rayon work-stealing during a product) makes its own.
    static SCRATCH: Cell<[Vec<f32>; 2]> = const { Cell::new([Vec::new(), Vec::new()]) };
}

/// `buffer`'s first `len` elements, grown (with zeros) if it is shorter; every caller overwrites them.
fn resized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

fn check_lengths(geometry: &Conv2dGeometry, x: usize, weight: usize) {
    assert_eq!(x, geometry.input_len(), "input's length for {geometry:?}");
    assert_eq!(weight, geometry.weight_len(), "weight's length for {geometry:?}");
}

/// A row-major view of a matrix, or of its transpose.
#[derive(Clone, Copy)]
struct Matrix<'a> {
    data: &'a [f32],
    row_stride: isize,
    column_stride: isize,
}

impl<'a> Matrix<'a> {
    /// A row-major matrix whose rows are `width` long.
    fn rows(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            row_stride: width as isize,
            column_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `width` long.
    fn columns(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            column_stride: width as isize,
        }
    }
}

/// How a product's destination is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    RowMajor,
    ColumnMajor,
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, on all of rayon's threads when `parallel`.
///
/// gemm keeps the destination's columns contiguous in its micro-kernels, transposing the problem when
/// `dst` is row-major, and copies ("packs") whichever operand then has non-contiguous columns. So the
/// layout of `dst` chooses which operand is packed.
fn product(
    dst: &mut [f32],
    dst_layout: Layout,
    [m, n, k]: [usize; 3],
    lhs: Matrix,
    rhs: Matrix,
    parallel: bool,
    accumulate: bool,
) {
    assert_eq!(dst.len(), m * n);
    assert!(lhs.data.len() >= m * k && rhs.data.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let (dst_row_stride, dst_column_stride) = match dst_layout {
        Layout::RowMajor => (n as isize, 1),
        Layout::ColumnMajor => (1, m as isize),
    };
    // SAFETY: the three matrices lie inside their slices (asserted above: a Matrix is either row-major
    // over its whole slice or its transpose, and so is `dst`) and `dst` is not aliased.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_column_stride,
            dst_row_stride,
            accumulate,
            lhs.data.as_ptr(),
            lhs.column_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.column_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The im2col matrix of images `first..first + images`: for one image of a pointwise convolution its
/// input itself, else built in `buffer` by [`im2col`].
fn image_columns<'a>(
    geometry: &Conv2dGeometry,
    x: &'a [f32],
    first: usize,
    images: usize,
    buffer: &'a mut Vec<f32>,
    parallel: bool,
) -> &'a [f32] {
    if images == 1 && geometry.is_pointwise() {
        return &x[first * geometry.input_len() / geometry.batch..][..geometry.input_len() / geometry.batch];
    }
    im2col(geometry, x, first, images, buffer, parallel)
}

/// The im2col matrix of images `first..first + images` into `columns`: row `(ci, kh, kw)`, column
/// `(n, oh, ow)`, zero where the kernel reads padding.
fn im2col<'a>(
    geometry: &Conv2dGeometry,
    x: &[f32],
    first: usize,
    images: usize,
    columns: &'a mut Vec<f32>,
    parallel: bool,
) -> &'a [f32] {
    let [out_height, out_width] = geometry.output();
    let [height, width] = geometry.input;
    let [kernel_height, kernel_width] = geometry.kernel;
    let pixels = out_height * out_width;
    let plane = height * width;
    let cols = images * pixels;
    let columns = resized(columns, geometry.patch_size() * cols);
    let taps = kernel_height * kernel_width;
    if let Some(offsets) = TapOffsets::for_narrow(geometry) {
        for_each_chunk(columns, cols, parallel, |row, out| {
            let (channel, offsets) = (row / taps, offsets.of(row % taps));
            for (image, out) in out.chunks_exact_mut(pixels).enumerate() {
                let source = &x[((first + image) * geometry.channels_in + channel) * plane..][..plane];
                for (value, &offset) in out.iter_mut().zip(offsets) {
                    *value = source.get(offset as usize).copied().unwrap_or(0.0);
                }
            }
        });
        return columns;
    }
    for_each_chunk(columns, cols, parallel, |row, out| {
        let channel = row / taps;
        let tap_row = row / kernel_width % kernel_height;
        let tap_column = row % kernel_width;
        for (image, out) in out.chunks_exact_mut(pixels).enumerate() {
            let source = &x[((first + image) * geometry.channels_in + channel) * plane..][..plane];
            for (out_row, out) in out.chunks_exact_mut(out_width).enumerate() {
                match geometry.source(0, out_row, tap_row) {
                    Some(in_row) => gather_row(geometry, &source[in_row * width..][..width], out, tap_column),
                    None => out.fill(0.0),
                }
            }
        }
    });
    columns
}

/// Below this output width, im2col and col2im go by [`TapOffsets`]: their rows are too short for a copy
/// call each (ResNet-18 at 64² ends at 2×2 planes, where row copies were a third of a step's im2col).
const NARROW: usize = 32;

/// Marks an output pixel whose kernel tap reads padding: past the end of any plane.
const PADDING: u32 = u32::MAX;

/// For each kernel tap `(kh, kw)` and output pixel `(oh, ow)`, the input pixel it reads, as an offset
/// in its plane, or [`PADDING`]: im2col and col2im as one gather or scatter loop per tap, for any stride,
/// padding and dilation.
struct TapOffsets {
    pixels: usize,
    offsets: Vec<u32>,
}

impl TapOffsets {
    /// The offsets, for a geometry whose rows are narrow or strided; `None` for wide stride-1 rows,
    /// which copy faster as runs.
    fn for_narrow(geometry: &Conv2dGeometry) -> Option<Self> {
        let [out_height, out_width] = geometry.output();
        if geometry.stride[1] == 1 && out_width >= NARROW {
            return None;
        }
        let [kernel_height, kernel_width] = geometry.kernel;
        let mut offsets = Vec::with_capacity(kernel_height * kernel_width * out_height * out_width);
        for tap_row in 0..kernel_height {
            for tap_column in 0..kernel_width {
                for out_row in 0..out_height {
                    let in_row = geometry.source(0, out_row, tap_row);
                    offsets.extend((0..out_width).map(|out_column| {
                        match (in_row, geometry.source(1, out_column, tap_column)) {
                            (Some(in_row), Some(in_column)) => {
                                (in_row * geometry.input[1] + in_column) as u32
                            }
                            _ => PADDING,
                        }
                    }));
                }
            }
        }
        Some(Self {
            pixels: out_height * out_width,
            offsets,
        })
    }

    /// Tap `tap`'s offsets, one per output pixel.
    fn of(&self, tap: usize) -> &[u32] {
        &self.offsets[tap * self.pixels..][..self.pixels]
    }
}

/// One output row of im2col: `out[ow] = source[ow·stride + tap·dilation − padding]`, 0 outside.
#[inline]
fn gather_row(geometry: &Conv2dGeometry, source: &[f32], out: &mut [f32], tap: usize) {
    // A contiguous run of the source row between two stretches of padding.
    let (first, last) = valid_run(geometry, out.len(), tap);
    out[..first].fill(0.0);
    out[last..].fill(0.0);
    if first < last {
        let start = first + tap * geometry.dilation[1] - geometry.padding_begin[1];
        out[first..last].copy_from_slice(&source[start..start + (last - first)]);
    }
}

/// For stride 1 along the width: the output columns `first..last` whose input column is inside.
fn valid_run(geometry: &Conv2dGeometry, out_width: usize, tap: usize) -> (usize, usize) {
    let offset = tap * geometry.dilation[1];
    let first = geometry.padding_begin[1].saturating_sub(offset).min(out_width);
    let last = (geometry.input[1] + geometry.padding_begin[1])
        .saturating_sub(offset)
        .min(out_width);
    (first, last.max(first))
}

/// The inverse of im2col's gather for `images` images: each input pixel of `input_grad` (those images'
/// part of the input gradient) sums the entries of `column_grad` that read it.
fn col2im(
    geometry: &Conv2dGeometry,
    column_grad: &[f32],
    input_grad: &mut [f32],
    images: usize,
    parallel: bool,
) {
    let [out_height, out_width] = geometry.output();
    let [height, width] = geometry.input;
    let [kernel_height, kernel_width] = geometry.kernel;
    let pixels = out_height * out_width;
    let plane = height * width;
    let cols = images * pixels;
    // One task per (image, input channel) plane: the rows it reads are its channel's, so no two tasks
    // write the same element and each element's sum runs in (kh, kw, oh, ow) order.
    let taps = kernel_height * kernel_width;
    let offsets = TapOffsets::for_narrow(geometry);
    for_each_chunk(input_grad, plane, parallel, |index, target| {
        let (image, channel) = (index / geometry.channels_in, index % geometry.channels_in);
        target.fill(0.0);
        for tap in 0..taps {
            let row = channel * taps + tap;
            let source = &column_grad[row * cols + image * pixels..][..pixels];
            if let Some(offsets) = &offsets {
                for (value, &offset) in source.iter().zip(offsets.of(tap)) {
                    if let Some(target) = target.get_mut(offset as usize) {
                        *target += value;
                    }
                }
                continue;
            }
            let (tap_row, tap_column) = (tap / kernel_width, tap % kernel_width);
            for (out_row, source) in source.chunks_exact(out_width).enumerate() {
                let Some(in_row) = geometry.source(0, out_row, tap_row) else {
                    continue;
                };
                let target = &mut target[in_row * width..][..width];
                scatter_row(geometry, source, target, tap_column);
            }
        }
    });
}

#[inline]
fn scatter_row(geometry: &Conv2dGeometry, source: &[f32], target: &mut [f32], tap: usize) {
    let (first, last) = valid_run(geometry, source.len(), tap);
    if first < last {
        let start = first + tap * geometry.dilation[1] - geometry.padding_begin[1];
        for (target, source) in target[start..start + (last - first)]
            .iter_mut()
            .zip(&source[first..last])
        {
            *target += source;
        }
    }
}

/// `[N, Co, P]` → `[Co, N·P]`: a group's output gradient as the product's left operand.
fn fold(batched: &[f32], folded: &mut [f32], images: usize, pixels: usize) {
    let channels = batched.len() / (images * pixels);
    for (channel, out) in folded.chunks_exact_mut(images * pixels).enumerate() {
        for (image, out) in out.chunks_exact_mut(pixels).enumerate() {
            out.copy_from_slice(&batched[(image * channels + channel) * pixels..][..pixels]);
        }
    }
}

/// `[Co, N·P]` → `[N, Co, P]`: a group's product in burn's layout.
fn unfold(folded: &[f32], batched: &mut [f32], images: usize, pixels: usize) {
    let channels = batched.len() / (images * pixels);
    for (channel, source) in folded.chunks_exact(images * pixels).enumerate() {
        for (image, source) in source.chunks_exact(pixels).enumerate() {
            batched[(image * channels + channel) * pixels..][..pixels].copy_from_slice(source);
        }
    }
}
