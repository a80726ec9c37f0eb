//! Buffers by liveness, and the checker that proves an assignment safe.
//!
//! Temporary values take buffers ("slots") in op order: an op's output takes a slot that no
//! later op still needs (the best-fitting free one, or a new one), or the very slot of its
//! input when the op may run in place ([`crate::ops::Op::in_place`]) and that input dies at this
//! op. A slot is freed after the last op that reads its value. Persistent values (parameters,
//! gradients, optimizer state, metrics) and the data set have buffers of their own.

use super::plan::{Plan, ValueKind};
use crate::backend::DType;
use crate::{Error, Result};

/// One buffer shared by temporaries whose lifetimes do not overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Element type of every value it holds.
    pub dtype: DType,
    /// Elements: the largest value it holds.
    pub len: usize,
    /// That largest value (its index in the plan), to name the buffer.
    pub largest: usize,
}

/// Which slot holds each temporary value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Per value of the plan: its slot, for temporaries that some op writes.
    pub slot_of: Vec<Option<usize>>,
    /// The slots, each one buffer of the program.
    pub slots: Vec<Slot>,
}

/// Assigns the plan's temporaries to slots by liveness.
pub fn assign(plan: &Plan) -> Assignment {
    let life = plan.lifetimes();
    let mut slot_of: Vec<Option<usize>> = vec![None; plan.values.len()];
    let mut slots: Vec<Slot> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        // The input this op may overwrite in place, when it dies here.
        let in_place = op.in_place().filter(|(src, dst)| {
            let (s, d) = (plan.value(*src), plan.value(*dst));
            s.kind == ValueKind::Temp
                && src.offset == 0
                && dst.offset == 0
                && life[src.id as usize].is_some_and(|(_, last)| last == i)
                && s.dtype == d.dtype
                && s.len == d.len
        });
        let mut handed_on = None;
        for (b, access) in op.operands() {
            let v = b.id as usize;
            let value = plan.value(b);
            if !access.writes() || value.kind != ValueKind::Temp || slot_of[v].is_some() {
                continue;
            }
            let slot = match in_place {
                Some((src, dst)) if dst.id == b.id => {
                    handed_on = Some(src.id as usize);
                    slot_of[src.id as usize].expect("a live input has a slot")
                }
                _ => take_slot(&mut slots, &mut free, value.dtype, value.len, v),
            };
            if value.len > slots[slot].len {
                slots[slot].len = value.len;
                slots[slot].largest = v;
            }
            slot_of[v] = Some(slot);
        }
        // Values whose last reader (or writer, if unread) was this op free their slots.
        for (v, l) in life.iter().enumerate() {
            if let Some((_, last)) = l
                && *last == i
                && handed_on != Some(v)
                && let Some(s) = slot_of[v]
                && !free.contains(&s)
            {
                free.push(s);
            }
        }
    }
    Assignment { slot_of, slots }
}

/// The free slot of `dtype` that fits `len` most tightly, else the largest free one (grown),
/// else a new slot (for value `v`).
fn take_slot(
    slots: &mut Vec<Slot>,
    free: &mut Vec<usize>,
    dtype: DType,
    len: usize,
    v: usize,
) -> usize {
    let candidates = free
        .iter()
        .enumerate()
        .filter(|(_, s)| slots[**s].dtype == dtype);
    let fit = candidates
        .clone()
        .filter(|(_, s)| slots[**s].len >= len)
        .min_by_key(|(_, s)| slots[**s].len)
        .or_else(|| candidates.max_by_key(|(_, s)| slots[**s].len));
    match fit {
        Some((pos, _)) => free.swap_remove(pos),
        None => {
            slots.push(Slot {
                dtype,
                len,
                largest: v,
            });
            slots.len() - 1
        }
    }
}

/// Proves an assignment safe by replaying the plan: every temporary is written by one op (or,
/// built in slices, by ops on disjoint views of it while its slot still holds it), its slot is
/// large enough and of its type, and no op reads a value whose slot has been overwritten
/// since the value was written. Errors name the op and the values.
pub fn verify(plan: &Plan, a: &Assignment) -> Result<()> {
    let mut holds: Vec<Option<usize>> = vec![None; a.slots.len()];
    // The views of each value written so far, as (offset, len).
    let mut written: Vec<Vec<(u32, u32)>> = vec![Vec::new(); plan.values.len()];
    let fail = |i: usize, msg: String| {
        Err(Error::Shape(format!(
            "plan op {i} ({}): {msg}",
            plan.ops[i].cost().name
        )))
    };
    for (i, op) in plan.ops.iter().enumerate() {
        let operands = op.operands();
        for (b, access) in &operands {
            let v = b.id as usize;
            if plan.value(*b).kind != ValueKind::Temp || !access.reads() {
                continue;
            }
            let name = &plan.values[v].name;
            let Some(slot) = a.slot_of[v] else {
                return fail(i, format!("reads `{name}`, which has no buffer"));
            };
            if holds[slot] != Some(v) {
                let now =
                    holds[slot].map_or("nothing".into(), |w| format!("`{}`", plan.values[w].name));
                return fail(
                    i,
                    format!("reads `{name}` but its buffer holds {now} (overwritten)"),
                );
            }
        }
        let mut wrote_slots = Vec::new();
        for (b, access) in &operands {
            let v = b.id as usize;
            let value = plan.value(*b);
            if value.kind != ValueKind::Temp || !access.writes() {
                continue;
            }
            let view = (b.offset, b.len);
            let overlaps = |&(o, l): &(u32, u32)| o < view.0 + view.1 && view.0 < o + l;
            if written[v].iter().any(overlaps) {
                return fail(i, format!("writes `{}` a second time", value.name));
            }
            let Some(slot) = a.slot_of[v] else {
                return fail(i, format!("writes `{}`, which has no buffer", value.name));
            };
            if !written[v].is_empty() && holds[slot] != Some(v) {
                return fail(
                    i,
                    format!(
                        "writes part of `{}` after its buffer went to another value",
                        value.name
                    ),
                );
            }
            written[v].push(view);
            let s = a.slots[slot];
            if s.dtype != value.dtype || s.len < value.len {
                return fail(
                    i,
                    format!(
                        "`{}` ({:?} x {}) does not fit its buffer ({:?} x {})",
                        value.name, value.dtype, value.len, s.dtype, s.len
                    ),
                );
            }
            if wrote_slots.contains(&slot) {
                return fail(
                    i,
                    format!("writes two outputs to one buffer (`{}`)", value.name),
                );
            }
            wrote_slots.push(slot);
            holds[slot] = Some(v);
        }
    }
    Ok(())
}
