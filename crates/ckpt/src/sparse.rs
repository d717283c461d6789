//! Sparse tensors as `torch.save` writes them: COO (indices and values) and the
//! compressed layouts CSR, CSC, BSR and BSC (compressed indices, plain indices and
//! values), each with the dense size.
//!
//! PyTorch pickles a sparse tensor as `torch._utils._rebuild_sparse_tensor(layout,
//! data)`, the layout as `torch.serialization._get_layout("torch.sparse_coo")`, and
//! `data` as `(indices, values, size, is_coalesced)` for COO (before PyTorch 2.1 without
//! `is_coalesced`) or `(compressed_indices, plain_indices, values, size)` for the
//! compressed layouts; the parts are ordinary tensors. tempo keeps the parts as they
//! are, bit for bit, after checking the invariants `torch.load` checks
//! (`_validate_loaded_sparse_tensors`): shapes that fit together and indices within the
//! size (and, for the compressed layouts, sorted).

use crate::{AnyTensor, CkptError, DType, Elements};

/// The layout of a sparse tensor, as PyTorch names it (`torch.sparse_coo`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SparseLayout {
    /// `torch.sparse_coo`: an index per stored value.
    Coo,
    /// `torch.sparse_csr`: compressed rows.
    Csr,
    /// `torch.sparse_csc`: compressed columns.
    Csc,
    /// `torch.sparse_bsr`: compressed rows of blocks.
    Bsr,
    /// `torch.sparse_bsc`: compressed columns of blocks.
    Bsc,
}

const LAYOUTS: [SparseLayout; 5] = [
    SparseLayout::Coo,
    SparseLayout::Csr,
    SparseLayout::Csc,
    SparseLayout::Bsr,
    SparseLayout::Bsc,
];

impl SparseLayout {
    /// PyTorch's name without the `torch.` prefix (`sparse_coo`).
    pub fn torch_name(self) -> &'static str {
        match self {
            SparseLayout::Coo => "sparse_coo",
            SparseLayout::Csr => "sparse_csr",
            SparseLayout::Csc => "sparse_csc",
            SparseLayout::Bsr => "sparse_bsr",
            SparseLayout::Bsc => "sparse_bsc",
        }
    }

    /// The layout of a name, with or without the `torch.` prefix; `None` for another
    /// name (`torch.strided`).
    pub fn from_torch_name(name: &str) -> Option<SparseLayout> {
        let name = name.strip_prefix("torch.").unwrap_or(name);
        LAYOUTS.into_iter().find(|l| l.torch_name() == name)
    }

    /// Whether the layout compresses one dimension (every layout but COO).
    pub fn is_compressed(self) -> bool {
        self != SparseLayout::Coo
    }

    fn is_block(self) -> bool {
        matches!(self, SparseLayout::Bsr | SparseLayout::Bsc)
    }

    /// Whether rows are compressed (CSR, BSR), else columns (CSC, BSC).
    fn compresses_rows(self) -> bool {
        matches!(self, SparseLayout::Csr | SparseLayout::Bsr)
    }
}

impl std::fmt::Display for SparseLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "torch.{}", self.torch_name())
    }
}

/// A sparse tensor: its layout, dense size and parts, as `torch.save` writes them.
///
/// Invariant: the parts fit the layout and the size, and every index is within the size
/// (checked by [`SparseTensor::coo`] and [`SparseTensor::compressed`], the only
/// constructors).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseTensor {
    layout: SparseLayout,
    size: Vec<usize>,
    indices: AnyTensor,
    plain_indices: Option<AnyTensor>,
    values: AnyTensor,
    is_coalesced: Option<bool>,
}

fn invalid(layout: SparseLayout, detail: impl Into<String>) -> CkptError {
    CkptError::InvalidTensor {
        path: String::new(),
        what: format!("a {layout} tensor"),
        detail: detail.into(),
    }
}

/// The indices of an int64 or int32 tensor, widened.
fn index_values(t: &AnyTensor) -> Option<Vec<i64>> {
    match t.elements() {
        Elements::I64(v) => Some(v.clone()),
        Elements::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
        _ => None,
    }
}

impl SparseTensor {
    /// A COO tensor: `indices` (int64, `[sparse_dims, nnz]`), `values` (`[nnz, *dense
    /// dims]`), the dense `size`, and PyTorch's `is_coalesced` flag (`None` for files
    /// written before PyTorch 2.1, which did not record it).
    pub fn coo(
        indices: AnyTensor,
        values: AnyTensor,
        size: Vec<usize>,
        is_coalesced: Option<bool>,
    ) -> Result<SparseTensor, CkptError> {
        let layout = SparseLayout::Coo;
        let bad = |d: String| invalid(layout, d);
        if indices.dtype() != DType::I64 {
            return Err(bad(format!(
                "its indices must be int64, found {}",
                indices.dtype()
            )));
        }
        let [sparse_dims, nnz] = *indices.shape() else {
            return Err(bad(format!(
                "its indices must be 2-D ([sparse dims, nnz]), found shape {:?}",
                indices.shape()
            )));
        };
        let vshape = values.shape();
        if vshape.first() != Some(&nnz) {
            return Err(bad(format!(
                "its values must have shape [nnz = {nnz}, ...], found {vshape:?}"
            )));
        }
        let dense = &vshape[1..];
        if sparse_dims.checked_add(dense.len()) != Some(size.len()) || &size[sparse_dims..] != dense
        {
            return Err(bad(format!(
                "size {size:?} does not match {sparse_dims} sparse dims and values of shape {vshape:?}"
            )));
        }
        let idx = index_values(&indices).unwrap_or_default();
        for (d, row) in idx.chunks(nnz.max(1)).take(sparse_dims).enumerate() {
            if let Some(&i) = row.iter().find(|&&i| i < 0 || i as u64 >= size[d] as u64) {
                return Err(bad(format!(
                    "index {i} in dimension {d} is outside the size {size:?}"
                )));
            }
        }
        Ok(SparseTensor {
            layout,
            size,
            indices,
            plain_indices: None,
            values,
            is_coalesced,
        })
    }

    /// A CSR, CSC, BSR or BSC tensor: compressed indices (`crow_indices` for CSR and
    /// BSR, `ccol_indices` for CSC and BSC; `[*batch, n + 1]`), plain indices
    /// (`col_indices` or `row_indices`; `[*batch, nnz]`), both int32 or both int64,
    /// `values` (`[*batch, nnz, *block, *dense dims]`) and the dense `size`.
    pub fn compressed(
        layout: SparseLayout,
        compressed_indices: AnyTensor,
        plain_indices: AnyTensor,
        values: AnyTensor,
        size: Vec<usize>,
    ) -> Result<SparseTensor, CkptError> {
        let bad = |d: String| invalid(layout, d);
        if !layout.is_compressed() {
            return Err(bad("COO is not a compressed layout".into()));
        }
        let (ct, pt) = (compressed_indices.dtype(), plain_indices.dtype());
        if ct != pt || !matches!(ct, DType::I32 | DType::I64) {
            return Err(bad(format!(
                "its compressed and plain indices must both be int32 or both int64, found {ct} and {pt}"
            )));
        }
        let (cs, ps, vs) = (
            compressed_indices.shape(),
            plain_indices.shape(),
            values.shape(),
        );
        let Some((&n_plus_1, batch)) = cs.split_last() else {
            return Err(bad("its compressed indices are 0-D".into()));
        };
        let b = batch.len();
        let block = if layout.is_block() { 2 } else { 0 };
        if ps.len() != b + 1 || &ps[..b] != batch || vs.len() < b + 1 + block || &vs[..b] != batch {
            return Err(bad(format!(
                "compressed indices {cs:?}, plain indices {ps:?} and values {vs:?} do not share batch dimensions"
            )));
        }
        let nnz = ps[b];
        if vs[b] != nnz {
            return Err(bad(format!("{nnz} plain indices but {} values", vs[b])));
        }
        let dense = &vs[b + 1 + block..];
        if size.len() != b + 2 + dense.len() || &size[..b] != batch || &size[b + 2..] != dense {
            return Err(bad(format!(
                "size {size:?} does not match values of shape {vs:?}"
            )));
        }
        let (bh, bw) = if layout.is_block() {
            (vs[b + 1], vs[b + 2])
        } else {
            (1, 1)
        };
        if bh == 0 || bw == 0 || !size[b].is_multiple_of(bh) || !size[b + 1].is_multiple_of(bw) {
            return Err(bad(format!(
                "blocks of {bh}x{bw} do not tile the size {size:?}"
            )));
        }
        let (rows, cols) = (size[b] / bh, size[b + 1] / bw);
        let (n, plain_n) = if layout.compresses_rows() {
            (rows, cols)
        } else {
            (cols, rows)
        };
        if n_plus_1 != n + 1 {
            return Err(bad(format!(
                "{n_plus_1} compressed indices for {n} compressed rows or columns (expected {})",
                n + 1
            )));
        }
        let c = index_values(&compressed_indices).unwrap_or_default();
        let p = index_values(&plain_indices).unwrap_or_default();
        for (bi, (cb, pb)) in c
            .chunks(n_plus_1.max(1))
            .zip(p.chunks(nnz.max(1)).chain(std::iter::repeat(&[][..])))
            .enumerate()
        {
            if cb.first() != Some(&0) || cb.last().map(|&l| l as u64) != Some(nnz as u64) {
                return Err(bad(format!(
                    "batch {bi}: compressed indices must run from 0 to nnz = {nnz}, found {:?} to {:?}",
                    cb.first(),
                    cb.last()
                )));
            }
            if let Some(w) = cb.windows(2).find(|w| w[1] < w[0]) {
                return Err(bad(format!(
                    "batch {bi}: compressed indices decrease ({} then {})",
                    w[0], w[1]
                )));
            }
            // From 0 to nnz without decreasing: every run is within the plain indices.
            for w in cb.windows(2) {
                let run = &pb[w[0] as usize..w[1] as usize];
                if let Some(&i) = run.iter().find(|&&i| i < 0 || i as u64 >= plain_n as u64) {
                    return Err(bad(format!(
                        "batch {bi}: plain index {i} is outside 0..{plain_n}"
                    )));
                }
                if run.windows(2).any(|r| r[1] <= r[0]) {
                    return Err(bad(format!(
                        "batch {bi}: plain indices within a compressed row or column must be sorted and distinct, found {run:?}"
                    )));
                }
            }
        }
        Ok(SparseTensor {
            layout,
            size,
            indices: compressed_indices,
            plain_indices: Some(plain_indices),
            values,
            is_coalesced: None,
        })
    }

    /// The layout.
    pub fn layout(&self) -> SparseLayout {
        self.layout
    }

    /// The dense size.
    pub fn size(&self) -> &[usize] {
        &self.size
    }

    /// COO: the indices. Compressed layouts: the compressed indices (`crow_indices` or
    /// `ccol_indices`).
    pub fn indices(&self) -> &AnyTensor {
        &self.indices
    }

    /// Compressed layouts: the plain indices (`col_indices` or `row_indices`).
    pub fn plain_indices(&self) -> Option<&AnyTensor> {
        self.plain_indices.as_ref()
    }

    /// The stored values.
    pub fn values(&self) -> &AnyTensor {
        &self.values
    }

    /// COO: PyTorch's `is_coalesced` flag as the file records it.
    pub fn is_coalesced(&self) -> Option<bool> {
        self.is_coalesced
    }

    /// The number of stored values (blocks for BSR and BSC).
    pub fn nnz(&self) -> usize {
        match &self.plain_indices {
            Some(p) => p.shape().last().copied().unwrap_or(0),
            None => self.indices.shape().get(1).copied().unwrap_or(0),
        }
    }

    /// The parts by the names PyTorch's accessors give them, in the order `torch.save`
    /// writes them.
    pub fn parts(&self) -> Vec<(&'static str, &AnyTensor)> {
        let (first, second) = match self.layout {
            SparseLayout::Coo => ("indices", ""),
            SparseLayout::Csr | SparseLayout::Bsr => ("crow_indices", "col_indices"),
            SparseLayout::Csc | SparseLayout::Bsc => ("ccol_indices", "row_indices"),
        };
        let mut out = vec![(first, &self.indices)];
        if let Some(p) = &self.plain_indices {
            out.push((second, p));
        }
        out.push(("values", &self.values));
        out
    }

    /// What differs between `self` and `other`, bit for bit; `None` if they are
    /// identical.
    pub fn first_difference(&self, other: &SparseTensor) -> Option<String> {
        if self.layout != other.layout {
            return Some(format!("layout {}, then {}", self.layout, other.layout));
        }
        if self.size != other.size {
            return Some(format!("size {:?}, then {:?}", self.size, other.size));
        }
        if self.is_coalesced != other.is_coalesced {
            return Some(format!(
                "is_coalesced {:?}, then {:?}",
                self.is_coalesced, other.is_coalesced
            ));
        }
        self.parts()
            .into_iter()
            .zip(other.parts())
            .find_map(|((name, a), (_, b))| a.first_difference(b).map(|d| format!("{name}: {d}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64s(shape: &[usize], v: &[i64]) -> AnyTensor {
        AnyTensor::new(shape.to_vec(), Elements::I64(v.to_vec())).unwrap()
    }

    fn f32s(shape: &[usize], n: usize) -> AnyTensor {
        AnyTensor::new(
            shape.to_vec(),
            Elements::F32((0..n).map(|i| i as f32).collect()),
        )
        .unwrap()
    }

    #[test]
    fn coo_parts_must_fit_the_size() {
        let ok = SparseTensor::coo(
            i64s(&[2, 3], &[0, 1, 3, 2, 0, 4]),
            f32s(&[3], 3),
            vec![4, 5],
            Some(true),
        );
        assert_eq!(ok.unwrap().nnz(), 3);
        // A dense dimension: values [nnz, 2], size [4, 2].
        assert!(
            SparseTensor::coo(i64s(&[1, 2], &[0, 3]), f32s(&[2, 2], 4), vec![4, 2], None).is_ok()
        );
        for (indices, values, size) in [
            (
                i64s(&[2, 3], &[0, 1, 4, 2, 0, 4]),
                f32s(&[3], 3),
                vec![4, 5],
            ), // row 4 of 4
            (
                i64s(&[2, 3], &[0, 1, 3, 2, 0, -1]),
                f32s(&[3], 3),
                vec![4, 5],
            ),
            (
                i64s(&[2, 3], &[0, 1, 3, 2, 0, 4]),
                f32s(&[2], 2),
                vec![4, 5],
            ),
            (
                i64s(&[2, 3], &[0, 1, 3, 2, 0, 4]),
                f32s(&[3], 3),
                vec![4, 5, 6],
            ),
            (i64s(&[6], &[0, 1, 3, 2, 0, 4]), f32s(&[3], 3), vec![4, 5]),
        ] {
            let err = SparseTensor::coo(indices, values, size, None).unwrap_err();
            assert!(
                matches!(err, CkptError::InvalidTensor { ref what, .. } if what.contains("sparse_coo")),
                "{err}"
            );
        }
        // Shapes from a file can be anything: a huge empty indices tensor is an error.
        let huge = AnyTensor::new(vec![usize::MAX, 0], Elements::I64(vec![])).unwrap();
        let empty = AnyTensor::new(vec![0, 1], Elements::F32(vec![])).unwrap();
        assert!(SparseTensor::coo(huge, empty, vec![1], None).is_err());
        let int32 = AnyTensor::new(vec![1, 1], Elements::I32(vec![0])).unwrap();
        assert!(SparseTensor::coo(int32, f32s(&[1], 1), vec![1], None).is_err());
    }

    #[test]
    fn compressed_indices_are_checked_as_torch_load_checks_them() {
        // [[0, 1, 0], [2, 0, 3]] in CSR.
        let csr = |crow: &[i64], col: &[i64]| {
            SparseTensor::compressed(
                SparseLayout::Csr,
                i64s(&[crow.len()], crow),
                i64s(&[col.len()], col),
                f32s(&[col.len()], col.len()),
                vec![2, 3],
            )
        };
        let t = csr(&[0, 1, 3], &[1, 0, 2]).unwrap();
        assert_eq!(t.nnz(), 3);
        assert_eq!(t.parts()[0].0, "crow_indices");
        assert!(csr(&[0, 1, 3], &[1, 2, 0]).is_err()); // unsorted in row 1
        assert!(csr(&[0, 1, 3], &[1, 0, 3]).is_err()); // column 3 of 3
        assert!(csr(&[0, 2, 1], &[1, 0, 2]).is_err()); // decreasing
        assert!(csr(&[1, 1, 3], &[1, 0, 2]).is_err()); // not from 0
        assert!(csr(&[0, 1], &[1, 0, 2]).is_err()); // 2 rows need 3 entries
                                                    // BSR: a 4x4 matrix of 2x2 blocks, blocks (0, 1) and (1, 0).
        let bsr = SparseTensor::compressed(
            SparseLayout::Bsr,
            i64s(&[3], &[0, 1, 2]),
            i64s(&[2], &[1, 0]),
            f32s(&[2, 2, 2], 8),
            vec![4, 4],
        );
        assert!(bsr.is_ok(), "{bsr:?}");
        let bad_blocks = SparseTensor::compressed(
            SparseLayout::Bsc,
            i64s(&[3], &[0, 1, 2]),
            i64s(&[2], &[1, 0]),
            f32s(&[2, 3, 2], 12),
            vec![4, 4],
        );
        assert!(bad_blocks.is_err());
        assert_eq!(
            SparseLayout::from_torch_name("torch.sparse_bsc"),
            Some(SparseLayout::Bsc)
        );
        assert_eq!(SparseLayout::from_torch_name("torch.strided"), None);
    }
}
