//! Recording and submission: allocations, the uniform arena, the bind-group cache and the
//! queue of recorded dispatches.
//!
//! Ops append a `Dispatch` to `pending`; nothing reaches the device until `Backend::flush`, a
//! read or a write, which encode every pending dispatch into one compute pass (wgpu inserts
//! the barriers between dependent dispatches) and submit it. Writes go through
//! `Queue::write_buffer`, which lands before the *next* submission, so pending dispatches are
//! submitted first: a write never overtakes an op recorded before it.
//!
//! While kernel timing is on (`timing.rs`) each dispatch gets a pass of its own instead, between
//! two timestamps.
//!
//! Each kernel's shapes and offsets live in a small uniform block. Blocks are cached by content
//! in slots of one uniform buffer, written once when first seen and bound with a dynamic
//! offset, so a training step writes only the few blocks that changed since the last step (the
//! batch's offset into the row order, dropout streams, Adam's bias corrections: 128 bytes
//! each). The blocks new since the last submission go up in one write right before it (a
//! write per block allocated a staging buffer each). Bind groups bind whole buffers (views
//! reach the kernels as element offsets in the uniform block, so no binding needs an aligned
//! offset) and are cached by the buffers they bind: after the first step a step creates none.
//! A binding the launch leaves unused (a product without bias) takes a buffer it binds anyway
//! with the same access, so wgpu tracks no extra buffer at each launch.
//!
//! A compiled program's step is a replay (`Backend::set_replay`): each launch is remembered by
//! its place in the program, and where the next replay launches the same kernel on the same
//! buffers with the same uniform block there, it takes the remembered pipeline, bind group and
//! uniform offset after comparing them, with no hashing; the few launches whose block changed
//! since the last step (the batch offset, the update's scalars) keep the pipeline and bind
//! group remembered there and look up only their block's slot.

use super::GpuBackend;
use super::context::{Count, Kernel, KernelSpec, UNIFORM_BYTES};
use super::timing::{MAX_TIMED, Timer};
use crate::backend::{Buf, DType};
use crate::ops::OpLabel;
use crate::{Error, Result};
use foldhash::HashMap;
use foldhash::HashMapExt;
use std::collections::VecDeque;
use std::sync::Arc;

/// The most storage buffers a kernel binds.
const MAX_STORAGE: usize = 8;
/// Bind-group key for "no buffer": one of the backend's dummy buffers.
const NONE: u32 = u32::MAX;
/// Uniform slots in the arena; when all are used, pending work is submitted and the slots reused.
const UNIFORM_SLOTS: u32 = 2048;
/// Submissions the host may run ahead of the device.
const MAX_IN_FLIGHT: usize = 3;
/// Dispatches recorded before an automatic submission (bounds host memory in long loops that
/// never read, such as evaluation over a large set).
const MAX_PENDING: usize = 4096;

pub(super) struct Alloc {
    pub buffer: wgpu::Buffer,
    pub dtype: DType,
    /// Elements.
    pub len: usize,
}

/// One recorded kernel launch.
struct Dispatch {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    uniform_offset: u32,
    groups: [u32; 3],
    /// The op and its shape, while kernel timing is on (see `timing.rs`).
    name: Option<OpLabel>,
}

/// A launch as a program's replay made it at one place in the program: what the next replay
/// reuses there when it launches the same kernel on the same buffers with the same uniform
/// block (compared, not hashed).
struct Memo {
    spec: &'static KernelSpec,
    key: [u32; MAX_STORAGE],
    block: [u8; UNIFORM_BYTES as usize],
    /// The uniform arena's generation the offset belongs to.
    generation: u64,
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    uniform_offset: u32,
}

/// The program being replayed, the place in it of the next launch, and its launches as the
/// last replay made them.
struct Replay {
    program: u64,
    cursor: usize,
    memo: Vec<Memo>,
}

/// Programs whose launches are remembered (training, evaluation and a last partial batch's
/// programs alternate); the least recently replayed goes first.
const REPLAYS_KEPT: usize = 8;

pub(super) struct Recorder {
    pub allocs: Vec<Alloc>,
    /// Bound in place of an absent read-only buffer (a matmul's bias) where the launch binds no
    /// other read-only buffer to stand in.
    dummy: wgpu::Buffer,
    /// Bound in place of an absent writable buffer (a loss's gradient in evaluation) where the
    /// launch binds no other writable buffer: one buffer bound both read-only and writable in
    /// one dispatch would be a usage conflict.
    dummy_rw: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    /// Bytes between uniform slots: the block size rounded up to the adapter's alignment.
    stride: u64,
    slots: HashMap<[u8; UNIFORM_BYTES as usize], u32>,
    /// Bumped whenever the slots are handed out afresh, which makes remembered offsets stale.
    generation: u64,
    /// The replay in progress, and the remembered launches of other programs.
    replay: Option<Replay>,
    parked: Vec<Replay>,
    /// The uniform arena as the host last wrote it. Slots are handed out in order, so those
    /// written since the last submission are `uploaded..slots.len()`, sent in one write right
    /// before the next.
    uniform_mirror: Vec<u8>,
    uploaded: u32,
    bind_groups: HashMap<(&'static str, [u32; MAX_STORAGE]), wgpu::BindGroup>,
    pending: Vec<Dispatch>,
    /// MAP_READ staging buffer for reads, grown as needed.
    readback: Option<wgpu::Buffer>,
    /// Submissions not yet waited for, oldest first.
    in_flight: VecDeque<wgpu::SubmissionIndex>,
    /// Workgroups per grid dimension (the adapter's limit; tests lower it).
    pub max_groups: u32,
    /// The timestamp queries, while kernel timing is on.
    pub timer: Option<Timer>,
    /// What this backend has launched (the device's `Traffic` counts every backend on it).
    pub launched: crate::backend::Launches,
}

impl Recorder {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, limits: &wgpu::Limits) -> Recorder {
        let align = u64::from(limits.min_uniform_buffer_offset_alignment.max(1));
        let stride = UNIFORM_BYTES.div_ceil(align) * align;
        Recorder {
            allocs: Vec::new(),
            dummy: zeroed(
                device,
                queue,
                "unused binding",
                16,
                wgpu::BufferUsages::STORAGE,
            ),
            dummy_rw: zeroed(
                device,
                queue,
                "unused writable binding",
                16,
                wgpu::BufferUsages::STORAGE,
            ),
            uniforms: zeroed(
                device,
                queue,
                "kernel uniforms",
                stride * u64::from(UNIFORM_SLOTS),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            stride,
            // Full size from the start: growing it rehashes every block so far.
            slots: HashMap::with_capacity(UNIFORM_SLOTS as usize),
            generation: 0,
            replay: None,
            parked: Vec::new(),
            uniform_mirror: vec![0; (stride * u64::from(UNIFORM_SLOTS)) as usize],
            uploaded: 0,
            bind_groups: HashMap::new(),
            pending: Vec::new(),
            readback: None,
            in_flight: VecDeque::new(),
            max_groups: limits.max_compute_workgroups_per_dimension,
            timer: None,
            launched: Default::default(),
        }
    }

    /// Nothing is recorded and waiting for submission.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A new buffer of `size` bytes (a multiple of 4), zeroed, and known to wgpu as initialized by
/// the time this returns: cleared on the device (`clear_buffer`, a fill the device does) in a
/// submission of its own, whose submission marks it initialized.
///
/// Why not leave it to wgpu: a buffer wgpu has not seen initialized is zeroed on its first use,
/// and every bind group made before that (ours are made while the first step is recorded,
/// before it is submitted) keeps an initialization check for each of its bindings, which wgpu
/// then runs at every launch: measured on lavapipe, 1.1 us of host time per step of the
/// standard MLP (10%). Why not create it mapped (which also marks it initialized): wgpu then
/// allocates a host staging buffer of the buffer's size, zeroed, and copies it in, so set-up
/// would hold host memory as large as the model's and the batch's device memory (hundreds of
/// MB for the CNN), and on a discrete GPU copy it over the bus.
fn zeroed(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("zeroing a new buffer"),
    });
    enc.clear_buffer(&buffer, 0, None);
    queue.submit([enc.finish()]);
    buffer
}

fn elem_bytes(dtype: DType) -> usize {
    match dtype {
        DType::F32 | DType::U32 => 4,
        DType::U8 => 1,
    }
}

impl GpuBackend {
    /// A zeroed buffer of `len` elements of `dtype`, rounded up to whole words.
    pub(super) fn allocate(&mut self, dtype: DType, len: usize, label: &str) -> Result<Buf> {
        let len32 = u32::try_from(len)
            .map_err(|_| Error::Shape(format!("allocation of {len} elements ({label})")))?;
        let bytes = ((len * elem_bytes(dtype)).div_ceil(4) * 4).max(4) as u64;
        let l = &self.ctx.limits;
        let limit = if bytes > l.max_storage_buffer_binding_size {
            Some((
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size,
            ))
        } else if bytes > l.max_buffer_size {
            Some(("max_buffer_size", l.max_buffer_size))
        } else {
            None
        };
        if let Some((limit, max)) = limit {
            return Err(Error::DeviceLimit {
                what: format!("buffer `{label}` ({len} elements of {dtype:?})"),
                limit,
                needed: bytes,
                max,
            });
        }
        let ctx = self.ctx.clone();
        let buffer = ctx.scoped(&format!("allocating `{label}` ({bytes} bytes)"), || {
            zeroed(
                &ctx.device,
                &ctx.queue,
                label,
                bytes,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            )
        })?;
        let id = self.rec.allocs.len() as u32;
        self.rec.allocs.push(Alloc { buffer, dtype, len });
        Ok(Buf {
            id,
            offset: 0,
            len: len32,
            dtype,
        })
    }

    pub(super) fn alloc_of(&self, b: Buf) -> &Alloc {
        let a = self
            .rec
            .allocs
            .get(b.id as usize)
            .unwrap_or_else(|| panic!("buffer {} was not allocated on this backend", b.id));
        assert_eq!(a.dtype, b.dtype, "buffer {} is {:?}", b.id, a.dtype);
        assert!(
            b.offset as usize + b.len() <= a.len,
            "view {}+{} of buffer {} with {} elements",
            b.offset,
            b.len,
            b.id,
            a.len
        );
        a
    }

    /// Writes `bytes` at byte `offset` of allocation `id`, after everything recorded so far.
    pub(super) fn write_bytes(&mut self, id: u32, offset: u64, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        debug_assert!(offset.is_multiple_of(4) && bytes.len().is_multiple_of(4));
        if !self.rec.pending.is_empty() {
            self.submit(None)?;
        }
        let buffer = &self.rec.allocs[id as usize].buffer;
        self.ctx.queue.write_buffer(buffer, offset, bytes);
        self.ctx.count(Count::BytesWritten, bytes.len() as u64);
        self.ctx.check()
    }

    /// Runs everything recorded so far and returns `len` bytes at byte `offset` of allocation
    /// `id` (both multiples of 4).
    pub(super) fn read_bytes(&mut self, id: u32, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if self.rec.readback.as_ref().is_none_or(|b| b.size() < len) {
            self.rec.readback = Some(self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: len.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let index = self.submit(Some((id, offset, len)))?;
        // The staging buffer goes back only after a clean read: one left mapped or pending by
        // an error would fail every later copy into it.
        let staging = self.rec.readback.take().expect("created above");
        let data = self.map_read(&staging, len, index)?;
        self.rec.readback = Some(staging);
        self.ctx.count(Count::BytesRead, len);
        Ok(data)
    }

    /// Waits for submission `index` and returns the first `len` bytes of `staging`.
    pub(super) fn map_read(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
        index: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>> {
        let slice = staging.slice(0..len);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait_for(index)?;
        // The map callback runs in whichever thread's poll completes the mapping: with another
        // backend polling the same device it may still be on its way when our poll returns.
        let started = std::time::Instant::now();
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(1)) {
                Ok(Ok(())) => break,
                Ok(Err(e)) => return Err(Error::Device(format!("reading a buffer back: {e}"))),
                Err(_) if started.elapsed() > std::time::Duration::from_secs(60) => {
                    return Err(Error::Device("a buffer read never completed".into()));
                }
                Err(_) => {
                    self.ctx
                        .device
                        .poll(wgpu::PollType::Poll)
                        .map_err(|e| Error::Device(format!("waiting for the device: {e}")))?;
                }
            }
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("reading a buffer back: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Submits anything recorded and blocks until the device has run everything submitted.
    pub(super) fn wait_idle(&mut self) -> Result<()> {
        if !self.rec.pending.is_empty() {
            self.submit(None)?;
        }
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("waiting for the device: {e}")))?;
        self.ctx.check()
    }

    /// Blocks until submission `index` has run.
    fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("waiting for the device: {e}")))?;
        self.ctx.check()
    }

    /// Encodes the pending dispatches into one compute pass (one each, between timestamps,
    /// while kernel timing is on), then the copy of `(id, offset, len)` into the readback
    /// buffer if given, and submits.
    pub(super) fn submit(
        &mut self,
        copy: Option<(u32, u64, u64)>,
    ) -> Result<wgpu::SubmissionIndex> {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgtrain ops"),
            });
        // The timed dispatches' ops, in the order of their queries.
        let mut timed: Vec<(OpLabel, u64)> = Vec::new();
        let mut passes = 0;
        let rec = &mut self.rec;
        match &rec.timer {
            _ if rec.pending.is_empty() => {}
            None => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("wgtrain ops"),
                    timestamp_writes: None,
                });
                passes = 1;
                let mut last: Option<Arc<Kernel>> = None;
                for d in rec.pending.drain(..) {
                    if last.as_ref().is_none_or(|k| !Arc::ptr_eq(k, &d.kernel)) {
                        pass.set_pipeline(&d.kernel.pipeline);
                    }
                    pass.set_bind_group(0, &d.bind_group, &[d.uniform_offset]);
                    let [x, y, z] = d.groups;
                    pass.dispatch_workgroups(x, y, z);
                    last = Some(d.kernel);
                }
            }
            Some(timer) => {
                for d in rec.pending.drain(..) {
                    // Dispatches recorded before timing started carry no name and no queries.
                    let timestamp_writes = d.name.as_ref().map(|_| timer.writes(timed.len()));
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: d.name.as_ref().map(|l| l.name.as_str()),
                        timestamp_writes,
                    });
                    pass.set_pipeline(&d.kernel.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[d.uniform_offset]);
                    let [x, y, z] = d.groups;
                    pass.dispatch_workgroups(x, y, z);
                    drop(pass);
                    passes += 1;
                    let workgroups = [x, y, z].iter().map(|&g| u64::from(g)).product();
                    timed.extend(d.name.map(|n| (n, workgroups)));
                }
                if !timed.is_empty() {
                    timer.resolve(&mut enc, timed.len());
                }
            }
        }
        if let Some((id, offset, len)) = copy {
            let src = &self.rec.allocs[id as usize].buffer;
            let dst = self.rec.readback.as_ref().expect("readback buffer exists");
            enc.copy_buffer_to_buffer(src, offset, dst, 0, len);
        }
        // The uniform blocks new since the last submission, in one upload; it lands before
        // the commands below.
        let (lo, hi) = (self.rec.uploaded, self.rec.slots.len() as u32);
        if hi > lo {
            let (from, to) = (
                u64::from(lo) * self.rec.stride,
                u64::from(hi - 1) * self.rec.stride + UNIFORM_BYTES,
            );
            self.ctx.queue.write_buffer(
                &self.rec.uniforms,
                from,
                &self.rec.uniform_mirror[from as usize..to as usize],
            );
            self.rec.uploaded = hi;
        }
        let index = self.ctx.queue.submit([enc.finish()]);
        self.ctx.count(Count::Submissions, 1);
        self.ctx.count(Count::ComputePasses, passes);
        self.ctx.check()?;
        if !timed.is_empty() {
            self.read_times(timed, index.clone())?;
        }
        // Bounded run-ahead: a loop that only flushes (training without progress reads) waits
        // for the submission MAX_IN_FLIGHT back, so the host never queues more than that.
        self.rec.in_flight.push_back(index.clone());
        while self.rec.in_flight.len() > MAX_IN_FLIGHT {
            let oldest = self.rec.in_flight.pop_front().expect("non-empty");
            self.wait_for(oldest)?;
        }
        Ok(index)
    }

    /// A 1-D grid of `threads` invocations in workgroups of `per_group`, wrapped into a second
    /// dimension past the adapter's per-dimension limit (kernels index it with `flat()`).
    pub(super) fn grid(&self, threads: usize, per_group: usize) -> Result<[u32; 3]> {
        let groups = threads.div_ceil(per_group);
        let max = self.rec.max_groups as usize;
        let x = groups.min(max);
        let y = groups.div_ceil(x.max(1));
        if y > max {
            return Err(Error::DeviceLimit {
                what: format!("a dispatch of {threads} invocations"),
                limit: "max_compute_workgroups_per_dimension",
                needed: y as u64,
                max: max as u64,
            });
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Workgroups along one dimension of a tiled kernel that loops over the tiles past the grid.
    pub(super) fn tiles(&self, tiles: usize) -> u32 {
        tiles.min(self.rec.max_groups as usize) as u32
    }

    /// Records one dispatch of `spec` binding `bufs` (in the order of `spec.storage`; for `None`
    /// the kernel reads and writes nothing there) with the uniform block `dims`. `name` names
    /// the op and its shape for kernel timing ([`crate::ops::Op::cost`]); it is called only
    /// while timing is on.
    pub(super) fn record<D: bytemuck::Pod>(
        &mut self,
        spec: &'static KernelSpec,
        bufs: &[Option<Buf>],
        dims: &D,
        groups: [u32; 3],
        name: impl FnOnce() -> OpLabel,
    ) -> Result<()> {
        assert_eq!(bufs.len(), spec.storage.len(), "{}: buffers", spec.label);
        assert!(bufs.len() <= MAX_STORAGE);
        // Names cost an allocation per op: built only while timing reads them.
        let name = self.rec.timer.is_some().then(name);
        if groups.contains(&0) {
            return Ok(());
        }
        let mut key = [NONE; MAX_STORAGE];
        for (k, b) in key.iter_mut().zip(bufs) {
            if let Some(b) = b {
                self.alloc_of(*b);
                *k = b.id;
            }
        }
        let mut block = [0u8; UNIFORM_BYTES as usize];
        let bytes = bytemuck::bytes_of(dims);
        block[..bytes.len()].copy_from_slice(bytes);
        let (kernel, bind_group, uniform_offset) = match self.remembered(spec, &key) {
            Some(m) if m.generation == self.rec.generation && m.block == block => {
                self.ctx.count(Count::Remembered, 1);
                (m.kernel.clone(), m.bind_group.clone(), m.uniform_offset)
            }
            Some(m) => {
                // The same launch with a new uniform block (the batch's offset, the update's
                // scalars): only the block's slot is looked up.
                let (kernel, bind_group) = (m.kernel.clone(), m.bind_group.clone());
                let uniform_offset = self.uniform_slot(&block)?;
                let generation = self.rec.generation;
                if let Some(m) = self.remembered_mut() {
                    m.block = block;
                    m.generation = generation;
                    m.uniform_offset = uniform_offset;
                }
                (kernel, bind_group, uniform_offset)
            }
            None => {
                let kernel = self.ctx.kernel(spec)?;
                let uniform_offset = self.uniform_slot(&block)?;
                let bind_group = match self.rec.bind_groups.get(&(spec.label, key)) {
                    Some(bg) => bg.clone(),
                    None => {
                        let bg = self.create_bind_group(spec, &kernel, &key);
                        self.rec.bind_groups.insert((spec.label, key), bg.clone());
                        bg
                    }
                };
                self.remember(Memo {
                    spec,
                    key,
                    block,
                    generation: self.rec.generation,
                    kernel: kernel.clone(),
                    bind_group: bind_group.clone(),
                    uniform_offset,
                });
                (kernel, bind_group, uniform_offset)
            }
        };
        if let Some(r) = &mut self.rec.replay {
            r.cursor += 1;
        }
        let workgroups: u64 = groups.iter().map(|&g| u64::from(g)).product();
        self.ctx.count(Count::Dispatches, 1);
        self.rec.launched.dispatches += 1;
        self.rec.launched.workgroups += workgroups;
        self.rec.pending.push(Dispatch {
            kernel,
            bind_group,
            uniform_offset,
            groups,
            name,
        });
        let limit = if self.rec.timer.is_some() {
            MAX_TIMED
        } else {
            MAX_PENDING
        };
        if self.rec.pending.len() >= limit {
            self.submit(None)?;
        }
        Ok(())
    }

    fn create_bind_group(
        &self,
        spec: &'static KernelSpec,
        kernel: &Kernel,
        key: &[u32; MAX_STORAGE],
    ) -> wgpu::BindGroup {
        self.ctx.count(Count::BindGroups, 1);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.rec.uniforms,
                offset: 0,
                size: wgpu::BufferSize::new(UNIFORM_BYTES),
            }),
        }];
        // An absent buffer binds one that the launch binds anyway with the same access, where
        // there is one, instead of a dummy: one buffer fewer for wgpu to track at each launch,
        // and no barrier for a dummy that nothing writes. (The kernel leaves it alone.)
        let bound = |read_only: bool| {
            spec.storage
                .iter()
                .zip(key)
                .find(|&(&(_, r), &id)| r == read_only && id != NONE)
                .map(|(_, &id)| &self.rec.allocs[id as usize].buffer)
        };
        for (&(binding, read_only), &id) in spec.storage.iter().zip(key) {
            let buffer = match id {
                NONE => bound(read_only).unwrap_or(if read_only {
                    &self.rec.dummy
                } else {
                    &self.rec.dummy_rw
                }),
                id => &self.rec.allocs[id as usize].buffer,
            };
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            });
        }
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(spec.label),
                layout: &kernel.layout,
                entries: &entries,
            })
    }

    /// The arena offset of a uniform block with these contents, written on first use.
    fn uniform_slot(&mut self, block: &[u8; UNIFORM_BYTES as usize]) -> Result<u32> {
        let block = *block;
        let slot = match self.rec.slots.get(&block) {
            Some(&s) => s,
            None => {
                if self.rec.slots.len() as u32 == UNIFORM_SLOTS {
                    // Every slot may be read by pending work: submit it before reusing any.
                    self.submit(None)?;
                    self.rec.slots.clear();
                    self.rec.uploaded = 0;
                    self.rec.generation += 1;
                }
                let s = self.rec.slots.len() as u32;
                // Uploaded with the other new blocks by the next submission, which is the
                // first to read it.
                let at = (u64::from(s) * self.rec.stride) as usize;
                self.rec.uniform_mirror[at..at + block.len()].copy_from_slice(&block);
                self.ctx.count(Count::UniformBlocks, 1);
                self.rec.slots.insert(block, s);
                s
            }
        };
        Ok((u64::from(slot) * self.rec.stride) as u32)
    }
}

impl GpuBackend {
    /// Starts the replay of program `program` (see [`crate::backend::Backend::set_replay`]), or
    /// ends the one in progress with `None`.
    pub(super) fn replay(&mut self, program: Option<u64>) {
        let rec = &mut self.rec;
        if let Some(done) = rec.replay.take() {
            rec.parked.push(done);
        }
        let Some(program) = program else { return };
        let memo = match rec.parked.iter().position(|r| r.program == program) {
            Some(i) => rec.parked.remove(i).memo,
            None => {
                if rec.parked.len() >= REPLAYS_KEPT {
                    rec.parked.remove(0);
                }
                Vec::new()
            }
        };
        rec.replay = Some(Replay {
            program,
            cursor: 0,
            memo,
        });
    }

    /// What the last replay launched at this place, where it launched the same kernel on the
    /// same buffers (its uniform block may differ, or its slot may have been handed out again).
    fn remembered(&self, spec: &'static KernelSpec, key: &[u32; MAX_STORAGE]) -> Option<&Memo> {
        let r = self.rec.replay.as_ref()?;
        let m = r.memo.get(r.cursor)?;
        (std::ptr::eq(m.spec, spec) && m.key == *key).then_some(m)
    }

    /// The launch remembered at the replay's current place.
    fn remembered_mut(&mut self) -> Option<&mut Memo> {
        let r = self.rec.replay.as_mut()?;
        r.memo.get_mut(r.cursor)
    }

    /// Keeps `m` as the launch at the replay's current place.
    fn remember(&mut self, m: Memo) {
        let Some(r) = &mut self.rec.replay else {
            return;
        };
        // The cursor moves one launch at a time, so it is never past the end by more than one.
        if r.cursor < r.memo.len() {
            r.memo[r.cursor] = m;
        } else if r.cursor == r.memo.len() {
            r.memo.push(m);
        }
    }
}
