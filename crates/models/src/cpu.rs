//! Direct CPU paths for the transformer's matrix products: one `gemm` call for a linear layer
//! that also adds the bias and the residual (candle would run a matmul, then one broadcast add
//! per term, each a pass over the output and a new buffer). Other devices and dtypes go
//! through candle ops.

use candle_core::{CpuStorage, Result, Storage, StorageRef, Tensor};

/// Read access to the values of a contiguous f32 tensor on the CPU.
pub(crate) struct F32Values<'a> {
    /// Keeps the storage locked for reading while `values` is in use.
    _storage: StorageRef<'a>,
    values: *const f32,
    len: usize,
}

impl<'a> F32Values<'a> {
    /// `None` for a tensor on another device, of another dtype, or not contiguous.
    pub fn of(x: &'a Tensor) -> Option<Self> {
        let (storage, layout) = x.storage_and_layout();
        let (start, end) = layout.contiguous_offsets()?;
        let values = match &*storage {
            Storage::Cpu(CpuStorage::F32(data)) => data[start..end].as_ptr(),
            _ => return None,
        };
        Some(Self {
            _storage: storage,
            values,
            len: end - start,
        })
    }

    pub fn get(&self) -> &[f32] {
        // SAFETY: the pointer and length were taken from the storage this guard keeps locked.
        unsafe { std::slice::from_raw_parts(self.values, self.len) }
    }
}

/// How `gemm` may split one product: over the rayon pool when candle uses several threads.
pub(crate) fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    }
}

/// A matrix operand of [`gemm`]: element `(i, j)` at `ptr + i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    ptr: P,
    row_stride: usize,
    col_stride: usize,
}

impl<P> Strided<P> {
    /// A row-major matrix whose rows start `row_stride` values apart.
    pub fn rows(ptr: P, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows start `row_stride` values apart.
    pub fn transposed(ptr: P, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: row_stride,
        }
    }
}

/// `dst = lhs rhs * scale`, or `dst += lhs rhs * scale` with `accumulate`, for `lhs` `m x k`,
/// `rhs` `k x n` and `dst` `m x n`.
///
/// # Safety
/// The three operands must be valid for their extents and strides, and `dst` must not overlap
/// the others nor be written by anyone else meanwhile.
pub(crate) unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    accumulate: bool,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    scale: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.ptr,
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `residual + scale * (x W^T + bias)` for `x` `[rows, in]`, `weight` `[out, in]`, `bias`
/// `[out]`, `residual` `[rows, out]` (zero when absent). `None` unless all are contiguous f32
/// tensors on the CPU.
pub(crate) fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<(&Tensor, f32)>,
) -> Result<Option<Tensor>> {
    let (rows, in_dim) = x.dims2()?;
    let out_dim = weight.dim(0)?;
    if weight.dims() != [out_dim, in_dim]
        || bias.dims() != [out_dim]
        || residual.is_some_and(|(residual, _)| residual.dims() != [rows, out_dim])
    {
        candle_core::bail!(
            "linear layer {:?} cannot take input {:?} and residual {:?}",
            weight.shape(),
            x.shape(),
            residual.map(|(residual, _)| residual.shape())
        )
    }
    let (Some(x_values), Some(weight_values), Some(bias_values)) =
        (F32Values::of(x), F32Values::of(weight), F32Values::of(bias))
    else {
        return Ok(None);
    };
    let scale = residual.map_or(1.0, |(_, scale)| scale);
    let bias: Vec<f32> = bias_values.get().iter().map(|b| b * scale).collect();
    let mut out = match residual {
        Some((residual, _)) => {
            let Some(residual) = F32Values::of(residual) else {
                return Ok(None);
            };
            let mut out = residual.get().to_vec();
            for row in out.chunks_exact_mut(out_dim) {
                row.iter_mut().zip(&bias).for_each(|(o, b)| *o += b);
            }
            out
        }
        None => bias.repeat(rows),
    };
    // SAFETY: `out` is `rows x out_dim`, `x` `rows x in_dim`, `weight` `out_dim x in_dim`, all
    // row-major (checked above).
    unsafe {
        gemm(
            (rows, out_dim, in_dim),
            Strided::rows(out.as_mut_ptr(), out_dim),
            true,
            Strided::rows(x_values.get().as_ptr(), in_dim),
            Strided::transposed(weight_values.get().as_ptr(), in_dim),
            scale,
            parallelism(),
        )
    }
    Ok(Some(Tensor::from_vec(out, (rows, out_dim), x.device())?))
}
