//! Flat sharding's machinery: the slices of parameters a rank steps (a tempo-optim
//! [`Param`] over part of a tensor, whose gradient lives in the rank's reduced range),
//! the bucketed layout of the reduce-scatter buffer, and the cutting and stitching of
//! per-parameter state.

use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use ndarray::{ArrayD, IxDyn};
use tempo_optim::{LockScope, OptimError, Param, ParamState, Slot, StateValue, WithSlots};
use tempo_tensor::{Float, Tensor, TensorData};

use crate::DistError;

/// The reduced gradient of a rank's range, and which of its slices take part in the
/// current step; shared by the rank's [`SliceParam`]s.
#[derive(Debug, Default)]
pub(crate) struct Grads<T> {
    /// The range's combined gradient.
    pub(crate) values: Vec<T>,
    /// By slice index: whether its parameter has a gradient on any rank.
    pub(crate) present: Vec<bool>,
}

pub(crate) type SharedGrads<T> = Arc<RwLock<Grads<T>>>;

/// Elements `range` of `tensor`, stepped in place by the rank's optimizer, with their
/// gradient at `offset` in the shared [`Grads`]. A slice covering its whole tensor keeps
/// the tensor's shape (so its state is the single-process state as it is); a part of a
/// tensor is one-dimensional.
#[derive(Clone)]
pub(crate) struct SliceParam<T: Float> {
    tensor: Tensor<T>,
    range: Range<usize>,
    whole: bool,
    offset: usize,
    index: usize,
    grads: SharedGrads<T>,
}

impl<T: Float> std::fmt::Debug for SliceParam<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceParam")
            .field("shape", &self.tensor.shape())
            .field("range", &self.range)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<T: Float> SliceParam<T> {
    pub(crate) fn new(
        tensor: Tensor<T>,
        range: Range<usize>,
        offset: usize,
        index: usize,
        grads: SharedGrads<T>,
    ) -> Self {
        let whole = range.start == 0 && range.end == tensor.numel();
        Self {
            tensor,
            range,
            whole,
            offset,
            index,
            grads,
        }
    }
}

impl<T: Float> Param<T> for SliceParam<T> {
    type Scratch = ();

    fn shape(&self) -> Vec<usize> {
        if self.whole {
            self.tensor.shape()
        } else {
            vec![self.range.len()]
        }
    }

    fn numel(&self) -> usize {
        self.range.len()
    }

    fn same(&self, other: &Self) -> bool {
        self.tensor.ptr_eq(&other.tensor) && self.range == other.range
    }

    fn has_grad(&self) -> bool {
        let grads = self.grads.read().unwrap_or_else(PoisonError::into_inner);
        grads.present.get(self.index).copied().unwrap_or(false)
    }

    fn zero_grad(&self) {
        let mut grads = self.grads.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = grads.present.get_mut(self.index) {
            *p = false;
        }
    }

    fn lock(
        params: &[Self],
        scope: LockScope,
        _scratch: &mut (),
        f: &mut WithSlots<'_, T>,
    ) -> Result<(), OptimError> {
        let Some(first) = params.first() else {
            return f(&mut []);
        };
        let grads = first.grads.read().unwrap_or_else(PoisonError::into_inner);
        let mut locked = Vec::with_capacity(params.len());
        for (id, p) in params.iter().enumerate() {
            let present = grads.present.get(p.index).copied().unwrap_or(false);
            if !present && scope == LockScope::WithGrad {
                continue;
            }
            let grad = if present {
                let g = grads.values.get(p.offset..p.offset + p.range.len());
                Some(g.ok_or_else(|| OptimError::Storage {
                    param: id,
                    reason: format!(
                        "its gradient, elements {}..{}, lies beyond the {} reduced elements",
                        p.offset,
                        p.offset + p.range.len(),
                        grads.values.len()
                    ),
                })?)
            } else {
                None
            };
            let mut data = p.tensor.data_mut();
            if data.as_slice().is_none() {
                *data = data.as_standard_layout().into_owned();
            }
            if data.len() < p.range.end {
                return Err(OptimError::Storage {
                    param: id,
                    reason: format!(
                        "a slice of elements {:?} of a tensor of {}",
                        p.range,
                        data.len()
                    ),
                });
            }
            locked.push((id, p.range.clone(), data, grad));
        }
        let mut slots: Vec<Slot<'_, T>> = locked
            .iter_mut()
            .map(|(id, range, data, grad)| Slot {
                id: *id,
                data: data
                    .as_slice_mut()
                    .and_then(|s| s.get_mut(range.clone()))
                    .unwrap_or(&mut []),
                grad: *grad,
            })
            .collect();
        f(&mut slots)
    }
}

/// Where the flattened gradients sit in the buffer of the reduce-scatter. Rank `r`'s
/// range is `block` elements from `r * block` (the last one padded with zeros). The
/// reduce-scatter runs in rounds: round `k` moves, for every rank, the
/// `k`-th piece of its range (`piece` elements, fewer in the last round), so a round's
/// buffer is the rounds' pieces side by side in rank order, and the whole buffer is the
/// rounds one after another. Flattening writes each element straight to its place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) ranks: usize,
    pub(crate) block: usize,
    pub(crate) piece: usize,
}

impl Layout {
    /// For `ranks` ranges of `block` elements, in messages of at most `bucket` elements.
    pub(crate) fn new(ranks: usize, block: usize, bucket: usize) -> Self {
        Self {
            ranks,
            block,
            piece: (bucket / ranks.max(1)).max(1),
        }
    }

    /// The buffer length: every rank's padded range.
    pub(crate) fn len(&self) -> usize {
        self.ranks * self.block
    }

    /// The rounds: (offset in each rank's range, elements per rank).
    pub(crate) fn rounds(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.block)
            .step_by(self.piece)
            .map(|at| (at, self.piece.min(self.block - at)))
    }

    /// Calls `f(element, position, len, rank)` for each run of flattened elements
    /// `elements` that sit next to each other in the buffer: `len` elements from
    /// `element` are at `position..position + len`, in rank `rank`'s range.
    pub(crate) fn runs(
        &self,
        elements: Range<usize>,
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        let mut e = elements.start;
        while e < elements.end {
            let rank = e / self.block;
            let within = e % self.block;
            let round = within / self.piece;
            let round_start = round * self.piece;
            let piece = self.piece.min(self.block - round_start);
            let end = elements.end.min(rank * self.block + round_start + piece);
            let position = self.ranks * round_start + rank * piece + (within - round_start);
            f(e, position, end - e, rank);
            e = end;
        }
    }
}

/// Cuts a saved state of parameter `param` (of `shape`) to the elements `range`, for a
/// slice that does not cover the whole parameter: every tensor of the parameter's shape
/// becomes its slice (one-dimensional); scalars (0-dimensional tensors, numbers) stay.
pub(crate) fn cut(
    state: &ParamState,
    param: usize,
    shape: &[usize],
    range: &Range<usize>,
) -> Result<ParamState, DistError> {
    let mut out = ParamState::new();
    for (key, value) in &state.entries {
        let value = match value {
            StateValue::Tensor(t) if t.shape().is_empty() => value.clone(),
            StateValue::Tensor(t) if t.shape() == shape => StateValue::Tensor(match t {
                TensorData::F32(a) => TensorData::F32(slice_of(a, range)),
                TensorData::F64(a) => TensorData::F64(slice_of(a, range)),
            }),
            StateValue::Tensor(t) => {
                return Err(DistError::InvalidArgument {
                    what: "optimizer state",
                    expected: format!("`{key}` of parameter {param} of shape {shape:?}"),
                    found: format!("shape {:?}", t.shape()),
                })
            }
            other => other.clone(),
        };
        out.entries.push((key.clone(), value));
    }
    Ok(out)
}

fn slice_of<X: Copy>(a: &ArrayD<X>, range: &Range<usize>) -> ArrayD<X> {
    let values: Vec<X> = match a.as_slice() {
        Some(s) => s[range.clone()].to_vec(),
        None => a
            .iter()
            .skip(range.start)
            .take(range.len())
            .copied()
            .collect(),
    };
    ndarray::Array1::from_vec(values).into_dyn()
}

/// Stitches the states of a parameter's slices (in element order, `lens` elements each)
/// back into the parameter's state of shape `shape`: one-dimensional tensors of a
/// slice's length are joined, everything else must be the same in every slice.
/// `ranks` name the slices' ranks in errors.
pub(crate) fn stitch(
    pieces: &[ParamState],
    lens: &[usize],
    ranks: &[usize],
    param: usize,
    shape: &[usize],
) -> Result<ParamState, DistError> {
    let malformed = |rank: usize, reason: String| DistError::Malformed { rank, reason };
    let Some(first) = pieces.first() else {
        return Ok(ParamState::new());
    };
    if pieces.len() == 1 {
        return Ok(first.clone());
    }
    let mut out = ParamState::new();
    for (i, (key, value)) in first.entries.iter().enumerate() {
        let mut values = Vec::with_capacity(pieces.len());
        for (k, piece) in pieces.iter().enumerate() {
            match piece.entries.get(i) {
                Some((other, v)) if other == key => values.push(v),
                _ => {
                    return Err(malformed(
                        ranks[k],
                        format!(
                            "parameter {param}'s state has no `{key}` where rank {}'s has",
                            ranks[0]
                        ),
                    ))
                }
            }
        }
        let elementwise = matches!(value, StateValue::Tensor(t) if t.shape() == [lens[0]]);
        let joined = if elementwise {
            join(&values, lens, shape).ok_or_else(|| {
                malformed(
                    ranks[0],
                    format!("parameter {param}'s `{key}` slices do not join into shape {shape:?}"),
                )
            })?
        } else {
            if let Some(k) = values.iter().position(|v| *v != value) {
                return Err(malformed(
                    ranks[k],
                    format!(
                        "parameter {param}'s `{key}` differs from rank {}'s",
                        ranks[0]
                    ),
                ));
            }
            value.clone()
        };
        out.entries.push((key.clone(), joined));
    }
    if let Some(k) = pieces
        .iter()
        .position(|p| p.entries.len() != first.entries.len())
    {
        return Err(malformed(
            ranks[k],
            format!(
                "parameter {param}'s state has other entries than rank {}'s",
                ranks[0]
            ),
        ));
    }
    Ok(out)
}

/// The one-dimensional tensors `values` (of `lens` elements, one element type) end to
/// end, in `shape`.
fn join(values: &[&StateValue], lens: &[usize], shape: &[usize]) -> Option<StateValue> {
    fn cat<X: Copy>(
        arrays: impl Iterator<Item = Option<(usize, ArrayD<X>)>>,
        lens: &[usize],
        shape: &[usize],
    ) -> Option<ArrayD<X>> {
        let mut all = Vec::with_capacity(lens.iter().sum());
        for (a, &len) in arrays.zip(lens) {
            let (n, a) = a?;
            if n != len || a.ndim() != 1 {
                return None;
            }
            all.extend(a.iter().copied());
        }
        ArrayD::from_shape_vec(IxDyn(shape), all).ok()
    }
    match values.first()? {
        StateValue::Tensor(TensorData::F32(_)) => {
            let arrays = values.iter().map(|v| match v {
                StateValue::Tensor(TensorData::F32(a)) => Some((a.len(), a.clone())),
                _ => None,
            });
            cat(arrays, lens, shape).map(|a| StateValue::Tensor(TensorData::F32(a)))
        }
        StateValue::Tensor(TensorData::F64(_)) => {
            let arrays = values.iter().map(|v| match v {
                StateValue::Tensor(TensorData::F64(a)) => Some((a.len(), a.clone())),
                _ => None,
            });
            cat(arrays, lens, shape).map(|a| StateValue::Tensor(TensorData::F64(a)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_place_every_element_once_and_rounds_cover_the_buffer() {
        for (ranks, block, bucket) in [(1, 7, 3), (2, 5, 4), (3, 4, 5), (3, 4, 100), (4, 1, 1)] {
            let layout = Layout::new(ranks, block, bucket);
            let mut seen = vec![usize::MAX; layout.len()];
            // Elements in pieces that do not line up with the runs.
            for part in [0..3, 3..4, 4..layout.len()] {
                layout.runs(part.clone(), |e, pos, len, rank| {
                    assert!(e >= part.start && e + len <= part.end);
                    for i in 0..len {
                        assert_eq!(seen[pos + i], usize::MAX);
                        seen[pos + i] = e + i;
                        assert_eq!((e + i) / block, rank);
                    }
                });
            }
            assert!(seen.iter().all(|&e| e != usize::MAX));
            // Round by round, the buffer holds each rank's piece in rank order.
            let mut at = 0;
            for (offset, len) in layout.rounds() {
                for rank in 0..ranks {
                    for i in 0..len {
                        assert_eq!(
                            seen[at],
                            rank * block + offset + i,
                            "{ranks} {block} {bucket}"
                        );
                        at += 1;
                    }
                }
            }
            assert_eq!(at, layout.len());
        }
    }

    #[test]
    fn cut_then_stitch_gives_the_state_back() {
        let mut state = ParamState::new();
        state.insert("step", StateValue::scalar(4.0f32));
        state.insert(
            "exp_avg",
            StateValue::tensor(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]),
        );
        state.insert("n", StateValue::Int(2));
        let ranges = [0..2, 2..5, 5..6];
        let pieces: Vec<ParamState> = ranges
            .iter()
            .map(|r| cut(&state, 0, &[2, 3], r).unwrap())
            .collect();
        assert_eq!(
            pieces[1].get("exp_avg"),
            Some(&StateValue::tensor(&[3], &[3.0f32, 4.0, 5.0]))
        );
        let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(
            stitch(&pieces, &lens, &[0, 1, 2], 0, &[2, 3]).unwrap(),
            state
        );
        // A scalar that differs between slices is an error naming the rank.
        let mut bad = pieces.clone();
        bad[2].insert("n", StateValue::Int(3));
        assert!(matches!(
            stitch(&bad, &lens, &[0, 1, 2], 0, &[2, 3]),
            Err(DistError::Malformed { rank: 2, .. })
        ));
        // A tensor of another shape is refused when cutting.
        let mut wrong = state.clone();
        wrong.insert("exp_avg", StateValue::tensor(&[5], &[0.0f32; 5]));
        assert!(cut(&wrong, 0, &[2, 3], &(0..2)).is_err());
    }
}
