//! Launcher of `shaders/gather.wgsl`: batch assembly from the resident data set through the
//! row-order index.

use super::WG;
use super::context::{KernelSpec, Shader};
use super::{GpuBackend, check_len, distinct, expect_dtype};
use crate::Result;
use crate::backend::{Buf, DType, op_name};

static SHADER: Shader = Shader {
    name: "gather.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/gather.wgsl")
    ),
};

/// src, idx (read), dst (written).
const ROWS_STORAGE: &[(u32, bool)] = &[(1, true), (2, true), (3, false)];

static ROWS_U8: KernelSpec = KernelSpec {
    label: "gather_rows_u8",
    shader: &SHADER,
    entry: "gather_rows_u8",
    constants: &[],
    storage: ROWS_STORAGE,
};
static ROWS_F32: KernelSpec = KernelSpec {
    label: "gather_rows_f32",
    shader: &SHADER,
    entry: "gather_rows_f32",
    constants: &[],
    storage: ROWS_STORAGE,
};
static LABELS: KernelSpec = KernelSpec {
    label: "gather_labels",
    shader: &SHADER,
    entry: "gather_labels",
    constants: &[],
    // src, idx (read), labels (written)
    storage: &[(1, true), (2, true), (4, false)],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    n: u32,
    src_off: u32,
    idx_off: u32,
    dst_off: u32,
    a: f32,
    b: f32,
}

// src: (_, cols) U8 or F32, idx: (rows,) -> dst: (rows, cols)
pub(super) fn gather_rows(
    g: &mut GpuBackend,
    src: Buf,
    idx: Buf,
    rows: usize,
    cols: usize,
    (a, b): (f32, f32),
    dst: Buf,
) -> Result<()> {
    check_len("gather index", idx, rows)?;
    check_len("gather destination", dst, rows * cols)?;
    expect_dtype("gather index", idx, DType::U32);
    expect_dtype("gather destination", dst, DType::F32);
    distinct(dst, &[src, idx]);
    let spec = match src.dtype {
        DType::U8 => &ROWS_U8,
        DType::F32 => &ROWS_F32,
        DType::U32 => panic!("gather_rows from a u32 buffer"),
    };
    let n = rows * cols;
    if n == 0 {
        return Ok(());
    }
    let dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        n: n as u32,
        src_off: src.offset,
        idx_off: idx.offset,
        dst_off: dst.offset,
        a,
        b,
    };
    let groups = g.grid(n, WG)?;
    let name = || op_name::gather_rows(rows, cols, src.dtype);
    g.record(
        spec,
        &[Some(src), Some(idx), Some(dst)],
        &dims,
        groups,
        name,
    )
}

// src: (_,) idx: (rows,) -> dst: (rows,)
pub(super) fn gather_labels(
    g: &mut GpuBackend,
    src: Buf,
    idx: Buf,
    rows: usize,
    dst: Buf,
) -> Result<()> {
    check_len("gather index", idx, rows)?;
    check_len("label destination", dst, rows)?;
    for (what, x) in [
        ("labels", src),
        ("gather index", idx),
        ("label destination", dst),
    ] {
        expect_dtype(what, x, DType::U32);
    }
    distinct(dst, &[src, idx]);
    if rows == 0 {
        return Ok(());
    }
    let dims = Dims {
        rows: rows as u32,
        cols: 1,
        n: rows as u32,
        src_off: src.offset,
        idx_off: idx.offset,
        dst_off: dst.offset,
        a: 1.0,
        b: 0.0,
    };
    let groups = g.grid(rows, WG)?;
    let name = || op_name::gather_labels(rows);
    g.record(
        &LABELS,
        &[Some(src), Some(idx), Some(dst)],
        &dims,
        groups,
        name,
    )
}
