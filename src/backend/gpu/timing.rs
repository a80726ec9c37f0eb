//! Per-kernel timing with timestamp queries, where the adapter has them.
//!
//! While timing is on, each dispatch runs in a compute pass of its own whose start and end
//! write a timestamp (`ComputePassTimestampWrites`, which needs only `TIMESTAMP_QUERY`; writes
//! inside one pass need `TIMESTAMP_QUERY_INSIDE_PASSES`, which fewer adapters have). The extra
//! pass boundaries cost a little device time, acceptable while profiling. A submission resolves
//! its queries and copies them to a staging buffer, which is read as soon as the submission is
//! done, so timing also makes every submission wait for the device. With timing off nothing of
//! this exists: dispatches carry no names and share one pass.

use super::GpuBackend;
use crate::Result;
use crate::backend::KernelTime;
use crate::ops::OpLabel;

/// Dispatches timed in one submission: each takes two of the query set's slots.
pub(super) const MAX_TIMED: usize = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;

/// Bytes of the two timestamps of one dispatch.
const PAIR_BYTES: u64 = 2 * wgpu::QUERY_SIZE as u64;

pub(super) struct Timer {
    queries: wgpu::QuerySet,
    /// Where the queries resolve (QUERY_RESOLVE), then copied to `staging` (MAP_READ).
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    /// Accumulated per name, in the order names first ran.
    times: Vec<KernelTime>,
}

impl Timer {
    /// The timestamp writes bracketing the pass of timed dispatch `i` of a submission.
    pub fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = i as u32;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Encodes the resolution of the first `timed` dispatches' timestamps into `staging`.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, timed: usize) {
        debug_assert!(timed > 0 && timed <= MAX_TIMED);
        enc.resolve_query_set(&self.queries, 0..2 * timed as u32, &self.resolved, 0);
        enc.copy_buffer_to_buffer(
            &self.resolved,
            0,
            &self.staging,
            0,
            timed as u64 * PAIR_BYTES,
        );
    }

    /// Adds the resolved timestamps `bytes` of the dispatches `ops` (each with its
    /// workgroups), in query order.
    fn add(&mut self, ops: Vec<(OpLabel, u64)>, bytes: &[u8]) {
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(bytes);
        for ((op, workgroups), pair) in ops.into_iter().zip(ticks.chunks_exact(2)) {
            // A timestamp is monotonic on one queue; a driver that breaks that gets zero, not
            // a wrapped-around eternity.
            let seconds = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns * 1e-9;
            match self.times.iter_mut().find(|t| t.name == op.name) {
                Some(t) => {
                    t.calls += 1;
                    t.seconds += seconds;
                    t.workgroups += workgroups;
                }
                None => self.times.push(KernelTime {
                    name: op.name,
                    calls: 1,
                    seconds,
                    flops: op.flops,
                    bytes: op.bytes,
                    workgroups,
                }),
            }
        }
    }
}

impl GpuBackend {
    /// Whether the device was opened with timestamp queries.
    pub fn has_timestamp_queries(&self) -> bool {
        self.ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    pub(super) fn start_timing(&mut self) -> bool {
        if !self.has_timestamp_queries() {
            return false;
        }
        if self.rec.timer.is_some() {
            return true;
        }
        let ctx = self.ctx.clone();
        let bytes = MAX_TIMED as u64 * PAIR_BYTES;
        let made = ctx.scoped("creating the timestamp queries", || {
            let buffer = |label, usage| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            Timer {
                queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * MAX_TIMED as u32,
                }),
                resolved: buffer(
                    "resolved timestamps",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                staging: buffer(
                    "timestamp readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                period_ns: f64::from(ctx.queue.get_timestamp_period()),
                times: Vec::new(),
            }
        });
        match made {
            Ok(timer) => {
                self.rec.timer = Some(timer);
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn take_times(&mut self) -> Result<Vec<KernelTime>> {
        let flushed = if self.rec.is_idle() {
            Ok(())
        } else {
            self.submit(None).map(|_| ())
        };
        let timer = self.rec.timer.take();
        flushed?;
        Ok(timer.map_or_else(Vec::new, |t| t.times))
    }

    /// Waits for submission `index` and adds the times of its timed dispatches `ops` (each
    /// with its workgroups). An error ends timing (the staging buffer may be left mapped).
    pub(super) fn read_times(
        &mut self,
        ops: Vec<(OpLabel, u64)>,
        index: wgpu::SubmissionIndex,
    ) -> Result<()> {
        let mut timer = self.rec.timer.take().expect("timing is on");
        let bytes = self.map_read(&timer.staging, ops.len() as u64 * PAIR_BYTES, index)?;
        timer.add(ops, &bytes);
        self.rec.timer = Some(timer);
        Ok(())
    }
}
