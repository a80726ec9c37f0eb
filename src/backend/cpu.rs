//! The CPU backend: allocations are plain vectors in host memory, and each op runs its CPU
//! reference (in `src/ops/`), the readable specification every GPU kernel is tested against.

use super::{Backend, Buf, DType};
use crate::ops::Op;
use crate::{Error, Result};

enum Store {
    F32(Vec<f32>),
    U32(Vec<u32>),
    U8(Vec<u8>),
}

/// The CPU backend's memory: one vector per allocation. The ops' CPU references read and
/// write it through views.
#[derive(Default)]
pub struct CpuMem {
    stores: Vec<Store>,
}

impl CpuMem {
    /// The element range of a view in its allocation.
    pub(crate) fn range(b: Buf) -> std::ops::Range<usize> {
        b.offset as usize..(b.offset + b.len) as usize
    }

    pub(crate) fn f32s(&self, b: Buf) -> &[f32] {
        match &self.stores[b.id as usize] {
            Store::F32(v) => &v[Self::range(b)],
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    pub(crate) fn u32s(&self, b: Buf) -> &[u32] {
        match &self.stores[b.id as usize] {
            Store::U32(v) => &v[Self::range(b)],
            _ => panic!("buffer {} is not u32", b.id),
        }
    }

    pub(crate) fn u8s(&self, b: Buf) -> &[u8] {
        match &self.stores[b.id as usize] {
            Store::U8(v) => &v[Self::range(b)],
            _ => panic!("buffer {} is not u8", b.id),
        }
    }

    pub(crate) fn f32s_mut(&mut self, b: Buf) -> &mut [f32] {
        match &mut self.stores[b.id as usize] {
            Store::F32(v) => &mut v[Self::range(b)],
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    pub(crate) fn u32s_mut(&mut self, b: Buf) -> &mut [u32] {
        match &mut self.stores[b.id as usize] {
            Store::U32(v) => &mut v[Self::range(b)],
            _ => panic!("buffer {} is not u32", b.id),
        }
    }

    fn u8s_mut(&mut self, b: Buf) -> &mut [u8] {
        match &mut self.stores[b.id as usize] {
            Store::U8(v) => &mut v[Self::range(b)],
            _ => panic!("buffer {} is not u8", b.id),
        }
    }

    /// Takes the f32 allocation behind `b` out of the arena so it can be written while other
    /// allocations are read; [`Self::put`] returns it. An op's destinations never share an
    /// allocation with its sources (each op's shape rule says so).
    pub(crate) fn take(&mut self, b: Buf) -> Vec<f32> {
        match std::mem::replace(&mut self.stores[b.id as usize], Store::F32(Vec::new())) {
            Store::F32(v) => v,
            _ => panic!("buffer {} is not f32", b.id),
        }
    }

    pub(crate) fn put(&mut self, b: Buf, v: Vec<f32>) {
        self.stores[b.id as usize] = Store::F32(v);
    }

    /// [`Self::with_dst`] for an op with a second, u32 destination (max pooling's positions).
    pub(crate) fn with_dsts<R>(
        &mut self,
        dst: Buf,
        dst_u32: Buf,
        f: impl FnOnce(&Self, &mut [f32], &mut [u32]) -> R,
    ) -> R {
        let mut v = self.take(dst);
        let mut u = match std::mem::replace(
            &mut self.stores[dst_u32.id as usize],
            Store::U32(Vec::new()),
        ) {
            Store::U32(u) => u,
            _ => panic!("buffer {} is not u32", dst_u32.id),
        };
        let r = f(self, &mut v[Self::range(dst)], &mut u[Self::range(dst_u32)]);
        self.stores[dst_u32.id as usize] = Store::U32(u);
        self.put(dst, v);
        r
    }

    /// Runs `f(memory, destination view)` with the destination's allocation taken out, so `f`
    /// can read the sources while it writes.
    pub(crate) fn with_dst<R>(&mut self, dst: Buf, f: impl FnOnce(&Self, &mut [f32]) -> R) -> R {
        let mut v = self.take(dst);
        let r = f(self, &mut v[Self::range(dst)]);
        self.put(dst, v);
        r
    }
}

/// The CPU backend: the reference the GPU backend is tested against, and the fallback where
/// there is no GPU.
#[derive(Default)]
pub struct CpuBackend {
    mem: CpuMem,
    /// A cap on [`Backend::max_buffer_bytes`] (unbounded by default), so tests can run the
    /// plans a small GPU binding gets.
    max_buffer: Option<u64>,
}

impl CpuBackend {
    /// A backend with no allocations. It cannot fail: memory is claimed per allocation.
    pub fn new() -> Self {
        CpuBackend::default()
    }

    /// Plans on this backend keep their values within `bytes` as on a GPU whose largest
    /// binding it is (tests compare those plans on both backends).
    #[doc(hidden)]
    pub fn set_max_buffer_bytes(&mut self, bytes: Option<u64>) {
        self.max_buffer = bytes;
    }
}

/// A zeroed vector, or an error when memory runs out: sizes come from flags (--batch-size,
/// --hidden) and data files, and a refusal with a hint beats an abort.
fn zeroed<T: Clone + Default>(len: usize, label: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::Config(format!(
            "not enough memory for {label} ({} MiB); use a smaller --batch-size or --hidden",
            (len as u64).saturating_mul(std::mem::size_of::<T>() as u64) >> 20
        ))
    })?;
    v.resize(len, T::default());
    Ok(v)
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer.unwrap_or(u64::MAX)
    }

    fn adapter(&self) -> Option<String> {
        None
    }

    fn alloc(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf> {
        // Checked before allocating: a `Buf` addresses at most u32::MAX elements.
        let len32 = u32::try_from(len).map_err(|_| {
            Error::Config(format!(
                "{label} needs {len} values, more than one buffer can hold ({}); use a smaller \
                 --batch-size or --hidden",
                u32::MAX
            ))
        })?;
        let stores = &mut self.mem.stores;
        let id = stores.len() as u32;
        stores.push(match dtype {
            DType::F32 => Store::F32(zeroed(len, label)?),
            DType::U32 => Store::U32(zeroed(len, label)?),
            DType::U8 => Store::U8(zeroed(len, label)?),
        });
        Ok(Buf {
            id,
            offset: 0,
            len: len32,
            dtype,
        })
    }

    fn write_f32(&mut self, dst: Buf, data: &[f32]) -> Result<()> {
        super::check_write(dst, data.len(), DType::F32)?;
        self.mem.f32s_mut(dst)[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write_u32(&mut self, dst: Buf, data: &[u32]) -> Result<()> {
        super::check_write(dst, data.len(), DType::U32)?;
        self.mem.u32s_mut(dst)[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write_u8(&mut self, dst: Buf, data: &[u8]) -> Result<()> {
        super::check_write(dst, data.len(), DType::U8)?;
        self.mem.u8s_mut(dst)[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read_f32(&mut self, src: Buf) -> Result<Vec<f32>> {
        Ok(self.mem.f32s(src).to_vec())
    }

    fn read_u32(&mut self, src: Buf) -> Result<Vec<u32>> {
        Ok(self.mem.u32s(src).to_vec())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<()> {
        op.cpu(&mut self.mem);
        Ok(())
    }
}
