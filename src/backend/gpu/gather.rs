//! Launcher of `shaders/gather.wgsl`: batch assembly from the resident data set through the
//! row-order index, with augmentation's random shifts.

use super::GpuBackend;
use super::WG;
use super::context::{KernelSpec, Shader};
use crate::Result;
use crate::backend::DType;
use crate::ops::{Gather, GatherLabels, Rules};

static SHADER: Shader = Shader {
    name: "gather.wgsl",
    source: concat!(
        include_str!("../../../shaders/grid.wgsl"),
        include_str!("../../../shaders/hash.wgsl"),
        include_str!("../../../shaders/gather.wgsl")
    ),
};

/// src, idx (read), dst, labels (written), label_src (read).
const STORAGE: &[(u32, bool)] = &[(1, true), (2, true), (3, false), (4, false), (5, true)];

static ROWS_U8: KernelSpec = KernelSpec {
    label: "gather_rows_u8",
    shader: &SHADER,
    entry: "gather_rows_u8",
    constants: &[],
    storage: STORAGE,
};
static ROWS_F32: KernelSpec = KernelSpec {
    label: "gather_rows_f32",
    shader: &SHADER,
    entry: "gather_rows_f32",
    constants: &[],
    storage: STORAGE,
};
static LABELS: KernelSpec = KernelSpec {
    label: "gather_labels",
    shader: &SHADER,
    entry: "gather_labels",
    constants: &[],
    // src, idx (read), labels (written)
    storage: STORAGE,
};

/// Every kernel this launcher records (the tests check each against WebGPU's limits).
pub(super) static KERNELS: &[&KernelSpec] = &[&ROWS_U8, &ROWS_F32, &LABELS];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    cols: u32,
    n: u32,
    src_off: u32,
    idx_off: u32,
    dst_off: u32,
    a: f32,
    b: f32,
    has_labels: u32,
    label_src_off: u32,
    labels_off: u32,
    shift_max: u32,
    height: u32,
    width: u32,
    channels: u32,
    seed: u32,
    stream: u32,
}

// src: (_, cols) U8 or F32, idx: (start + rows,) -> dst: (rows, cols) (+ labels: (rows,))
pub(super) fn gather(g: &mut GpuBackend, op: &Gather) -> Result<()> {
    let spec = match op.src.dtype {
        DType::U8 => &ROWS_U8,
        _ => &ROWS_F32,
    };
    let (rows, cols) = (op.rows, op.cols);
    let n = rows * cols;
    if n == 0 {
        return Ok(());
    }
    let idx = op.idx.slice(op.start, rows);
    let labels = op.labels;
    let dims = Dims {
        rows: rows as u32,
        cols: cols as u32,
        n: n as u32,
        src_off: op.src.offset,
        idx_off: idx.offset,
        dst_off: op.dst.offset,
        a: op.affine.0,
        b: op.affine.1,
        has_labels: labels.is_some() as u32,
        label_src_off: labels.map_or(0, |l| l.src.offset),
        labels_off: labels.map_or(0, |l| l.dst.offset),
        shift_max: op.shift.map_or(0, |s| s.max),
        height: op.shift.map_or(0, |s| s.height as u32),
        width: op.shift.map_or(0, |s| s.width as u32),
        channels: op.shift.map_or(0, |s| s.channels as u32),
        seed: op.shift.map_or(0, |s| s.seed),
        stream: op.shift.map_or(0, |s| s.stream),
    };
    let groups = g.grid(n, WG)?;
    g.record(
        spec,
        &[
            Some(op.src),
            Some(idx),
            Some(op.dst),
            labels.map(|l| l.dst),
            labels.map(|l| l.src),
        ],
        &dims,
        groups,
        || op.cost(),
    )
}

// src: (_,), idx: (start + rows,) -> dst: (rows,)
pub(super) fn gather_labels(g: &mut GpuBackend, op: &GatherLabels) -> Result<()> {
    let rows = op.rows;
    if rows == 0 {
        return Ok(());
    }
    let idx = op.idx.slice(op.start, rows);
    let dims = Dims {
        rows: rows as u32,
        cols: 1,
        n: rows as u32,
        idx_off: idx.offset,
        label_src_off: op.src.offset,
        labels_off: op.dst.offset,
        ..Dims::default()
    };
    let groups = g.grid(rows, WG)?;
    g.record(
        &LABELS,
        &[None, Some(idx), None, Some(op.dst), Some(op.src)],
        &dims,
        groups,
        || op.cost(),
    )
}
