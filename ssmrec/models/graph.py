"""The one builder of normalised user-item propagation matrices, and sparse propagation.

``propagation_matrix(train, side, a0, a1)`` gives the weights of one message-passing step on the
bipartite graph: on the user side ``W[u, i] = 1 / (|P_u|^a0 |P_i|^a1)`` for ``i in P_u`` (an
``M x N`` matrix, SVD++ eq. 23), on the item side ``W[i, u] = 1 / (|P_i|^a0 |P_u|^a1)``
(``N x M``, eq. 31). LightGCN's symmetric normalisation is ``a0 = a1 = 0.5`` on both sides.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ssmrec.data.interactions import Interactions

SIDES = ("user", "item")


def _inv_pow(degree: np.ndarray, a: float) -> np.ndarray:
    d = degree.astype(np.float64)
    out = np.zeros_like(d)
    np.power(d, -a, out=out, where=d > 0)
    return out


def propagation_matrix(
    train: Interactions, side: str = "user", a0: float = 0.5, a1: float = 0.5
) -> sp.csr_matrix:
    """Normalised propagation weights as a scipy CSR matrix (float32); see the module docstring."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    r = train.to_scipy().astype(np.float64)
    du, di = train.user_degree, train.item_degree
    if side == "user":
        w = sp.diags(_inv_pow(du, a0)) @ r @ sp.diags(_inv_pow(di, a1))
    else:
        w = sp.diags(_inv_pow(di, a0)) @ r.T @ sp.diags(_inv_pow(du, a1))
    w = sp.csr_matrix(w, dtype=np.float32)
    w.sort_indices()
    return w


def to_torch_csr(m: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    m = sp.csr_matrix(m)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            device=device,
            check_invariants=False,
        )


def to_torch_csr_raw(m: sp.csr_matrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Wrap a scipy CSR matrix's arrays as a CPU torch CSR tensor without checks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64, copy=False)),
            torch.from_numpy(m.indices.astype(np.int64, copy=False)),
            torch.from_numpy(m.data).to(dtype), size=m.shape, check_invariants=False,
        )


def sparse_mm(w: torch.Tensor, x: torch.Tensor, block: int = 0, out: torch.Tensor | None = None) -> torch.Tensor:
    """``w @ x`` (plus ``out`` when given), in column blocks of ``block`` when ``x`` is wider.

    Stacked models (:mod:`ssmrec.sweeps.stacked`) hold K members' columns side by side: one
    product over ``K * d`` columns reads whole wide rows of ``x`` from memory for every non-zero,
    while K products over ``d`` columns each keep their ``x`` block in cache (measured twice as
    fast on a CPU, Gowalla, K = 8, d = 64) and compute exactly a solo model's product."""
    if not block or x.shape[1] <= block:
        if out is None:
            return torch.sparse.mm(w, x)
        return torch.sparse.addmm(out, w, x)
    parts = []
    for s in range(0, x.shape[1], block):
        xs = x[:, s:s + block].contiguous()
        parts.append(torch.sparse.mm(w, xs) if out is None
                     else torch.sparse.addmm(out[:, s:s + block].contiguous(), w, xs))
    return torch.cat(parts, dim=1)


class _SparseMM(torch.autograd.Function):
    """``W @ x`` whose backward is ``W^T @ grad`` with a stored CSR transpose.

    torch's own backward of a CSR product is several times slower than the forward product;
    keeping ``W^T`` as a second CSR matrix makes the backward cost the same as the forward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, wt: torch.Tensor, block: int = 0) -> torch.Tensor:
        ctx.wt, ctx.block = wt, block
        return sparse_mm(w, x, block)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return sparse_mm(ctx.wt, grad.contiguous(), ctx.block), None, None, None


class Propagation(torch.nn.Module):
    """A fixed sparse operator ``x -> W x`` (``W`` from :func:`propagation_matrix`).

    Args:
        w: the weights (scipy CSR).
        fast_backward: use the stored transpose for the backward pass (default: True); False
            uses torch's autograd through ``torch.sparse.mm`` (the plain path, for checks).

    ``forward(x)`` is the whole product; :meth:`rows` computes only selected rows of it.
    ``block`` (attribute, default 0 = off): products with a wider ``x`` run in column blocks of
    this width (see :func:`sparse_mm`; set by stacked models to the embedding size).
    """

    def __init__(self, w: sp.csr_matrix, *, fast_backward: bool = True):
        super().__init__()
        self.shape = w.shape
        self.fast_backward = fast_backward
        self.block = 0
        self.register_buffer("w", to_torch_csr(w), persistent=False)
        self.register_buffer("wt", to_torch_csr(sp.csr_matrix(w.T)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_backward and torch.is_grad_enabled() and x.requires_grad:
            return _SparseMM.apply(x, self.w, self.wt, self.block)
        return sparse_mm(self.w, x, self.block)

    def gather(self, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(W @ x)[index]`` by whichever is cheaper: the selected rows, or the whole product
        when the request covers a large part of the rows (e.g. thousands of negatives per positive)."""
        if not self.worth_rows(index):
            return self(x)[index]
        return self.rows(index, x)

    def worth_rows(self, index: torch.Tensor) -> bool:
        return index.numel() * 2 < self.shape[0]

    def row_block(self, index: torch.Tensor) -> RowBlock:
        """The rows ``index`` of ``W`` as a small CSR block (rows may repeat)."""
        crow, col, val = self.w.crow_indices(), self.w.col_indices(), self.w.values()
        start = crow[index]
        counts = crow[index + 1] - start
        ends = torch.cumsum(counts, 0)
        total = int(ends[-1]) if ends.numel() else 0
        owner = torch.repeat_interleave(torch.arange(index.numel(), device=index.device), counts,
                                        output_size=total)
        pos = torch.arange(total, device=index.device) - (ends - counts)[owner] + start[owner]
        return RowBlock(torch.cat([ends.new_zeros(1), ends]), col[pos], val[pos], owner, self.shape[1],
                        self.block)

    def rows(self, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(W @ x)[index]`` computed from the needed rows of ``W`` only.

        A batch of a few thousand nodes touches a fraction of the graph: the selected rows form a
        small CSR matrix, and the backward pass scatters into ``x`` only where they point.
        """
        return _RowsMM.apply(x, self.row_block(index))


class RowBlock:
    """Selected rows of a sparse matrix: CSR ``(crow, col, val)``, the row each non-zero came
    from (``owner``), the number of columns ``n``, and the column block of products (see
    :func:`sparse_mm`; 0 = none)."""

    def __init__(self, crow, col, val, owner, n, block: int = 0):
        self.crow, self.col, self.val, self.owner, self.n, self.block = crow, col, val, owner, n, block

    def mm(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``block @ x``, added to ``out`` when given."""
        w = torch.sparse_csr_tensor(self.crow, self.col, self.val.to(x.dtype), size=(self.crow.numel() - 1, self.n),
                                    check_invariants=False)
        return sparse_mm(w, x, self.block, out)

    def t_mm(self, grad: torch.Tensor) -> torch.Tensor:
        """``block^T @ grad`` (a dense ``n x d`` result)."""
        return self._t_product(self.col, self.n, grad)

    def _t_product(self, cols: torch.Tensor, n: int, grad: torch.Tensor) -> torch.Tensor:
        """``block^T @ grad`` with the block's column indices ``cols`` (of ``n`` columns)."""
        grad = grad.contiguous()
        if grad.device.type == "cpu":
            # scipy transposes CSR by a counting sort, much faster than coalescing a COO tensor
            wt = sp.csr_matrix((self.val.numpy(), cols.numpy(), self.crow.numpy()),
                               shape=(self.crow.numel() - 1, n)).T.tocsr()
            return torch.sparse.mm(to_torch_csr_raw(wt, grad.dtype), grad)
        wt = torch.sparse_coo_tensor(torch.stack([cols, self.owner]), self.val.to(grad.dtype),
                                     (n, grad.shape[0]), check_invariants=False)
        return torch.sparse.mm(wt, grad)

    def t_rows(self, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``block^T @ grad`` as rows: ``(index, values)``, the distinct columns the block reaches
        (ascending) and those rows of the product (``k x d``), zero rows left out.

        Only the ``k`` reached rows are built: a compact ``k x B`` transpose (columns relabelled
        by ``torch.unique``), so the cost follows the block's non-zeros, not ``n``. Each row is the
        same sum, in the same order, as the row of :meth:`t_mm`."""
        index, inv = torch.unique(self.col, sorted=True, return_inverse=True)
        if not index.numel():
            return index, grad.new_zeros((0, grad.shape[1]))
        return index, self._t_product(inv, index.numel(), grad)


class _RowsMM(torch.autograd.Function):
    """``W_b @ x`` for a small row block ``W_b``; backward ``W_b^T @ grad``."""

    @staticmethod
    def forward(ctx, x, block: RowBlock):
        ctx.block = block
        return block.mm(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.block.t_mm(grad), None


class _OneHop(torch.autograd.Function):
    """One message-passing step for a batch, both sides at once:
    ``(a[ia] + Wa_b @ b,  b[ib] + Wb_b @ a)`` with either block optional.

    Each table's gradient is built in one buffer (the transposed block product, then the
    scatter of the self term into it), instead of one full-size buffer per path plus a sum.
    """

    @staticmethod
    def forward(ctx, a, b, ia, ib, wa, wb):
        ctx.save_for_backward(ia, ib)
        ctx.wa, ctx.wb, ctx.shapes = wa, wb, (a.shape, b.shape)
        out_a, out_b = a[ia], b[ib]
        if wa is not None:
            out_a = wa.mm(b, out_a)
        if wb is not None:
            out_b = wb.mm(a, out_b)
        return out_a, out_b

    @staticmethod
    def backward(ctx, ga, gb):
        ia, ib = ctx.saved_tensors
        grad_a = ctx.wb.t_mm(gb) if ctx.wb is not None else ga.new_zeros(ctx.shapes[0])
        grad_b = ctx.wa.t_mm(ga) if ctx.wa is not None else gb.new_zeros(ctx.shapes[1])
        grad_a.index_add_(0, ia, ga)
        grad_b.index_add_(0, ib, gb)
        return grad_a, grad_b, None, None, None, None


class _OneHopRows(torch.autograd.Function):
    """:class:`_OneHop` for the sparse optimizers: each table's gradient is a COO row gradient
    (the rows its messages came from, then the batch's own rows), never an ``n x d`` buffer.

    The blocks hold the batch's *distinct* rows (``(block, inverse)``: row ``k`` of the batch is
    row ``inverse[k]`` of the block): a popular item drawn a hundred times in a batch is one
    row of the graph, not a hundred copies of its thousands of non-zeros, so a step's graph work
    is bounded by the non-zeros of the batch's distinct rows (at most the whole graph's)."""

    @staticmethod
    def forward(ctx, a, b, ia, ib, wa, wb):
        ctx.save_for_backward(ia, ib)
        ctx.wa, ctx.wb, ctx.shapes = wa, wb, (a.shape, b.shape)
        out_a, out_b = a[ia], b[ib]
        if wa is not None:
            out_a = out_a + wa[0].mm(b)[wa[1]]
        if wb is not None:
            out_b = out_b + wb[0].mm(a)[wb[1]]
        return out_a, out_b

    @staticmethod
    def backward(ctx, ga, gb):
        ia, ib = ctx.saved_tensors
        return (_row_grad(ctx.wb, gb, ia, ga, ctx.shapes[0]), _row_grad(ctx.wa, ga, ib, gb, ctx.shapes[1]),
                None, None, None, None)


def _row_grad(block: tuple[RowBlock, torch.Tensor] | None, g_in: torch.Tensor, index: torch.Tensor,
              g_self: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A table's row gradient from one hop: the rows of ``block^T @ g`` (the messages it sent;
    ``g`` is ``g_in`` summed over the batch's copies of each distinct row) followed by the self
    term ``g_self`` at ``index``, as one uncoalesced COO tensor (duplicate rows are summed by
    whoever coalesces it: the optimizer)."""
    if block is not None:
        rows_block, inverse = block
        g = g_in.new_zeros((rows_block.crow.numel() - 1, g_in.shape[1])).index_add_(0, inverse, g_in)
        rows, values = rows_block.t_rows(g)
        index, g_self = torch.cat([rows, index]), torch.cat([values, g_self])
    return torch.sparse_coo_tensor(index.unsqueeze(0), g_self, shape, check_invariants=False)


def _distinct_block(w: Propagation | None, index: torch.Tensor) -> tuple[RowBlock, torch.Tensor] | None:
    """The block of ``index``'s distinct rows of ``w`` and where each of ``index`` sits in it."""
    if w is None:
        return None
    rows, inverse = torch.unique(index, return_inverse=True)
    return w.row_block(rows), inverse


def one_hop(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor,
            wa: Propagation | None, wb: Propagation | None, *,
            sparse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a[ia] + (Wa @ b)[ia],  b[ib] + (Wb @ a)[ib])``: the batch rows of one propagation step with
    self connections, e.g. 1-layer LightGCN (times 1/2) or SVD++ (one side only).

    Falls back to whole-graph products when a batch asks for a large part of the rows, unless
    ``sparse``: then ``a`` and ``b`` get row gradients (COO: the rows the batch's blocks reach
    and the batch's own rows), always from the batch's rows of the graph."""
    if sparse:
        return _OneHopRows.apply(a, b, ia, ib, _distinct_block(wa, ia), _distinct_block(wb, ib))
    if (wa is None or wa.worth_rows(ia)) and (wb is None or wb.worth_rows(ib)):
        return _OneHop.apply(a, b, ia, ib, wa.row_block(ia) if wa is not None else None,
                             wb.row_block(ib) if wb is not None else None)
    out_a = a[ia] + (wa.gather(ia, b) if wa is not None else 0)
    out_b = b[ib] + (wb.gather(ib, a) if wb is not None else 0)
    return out_a, out_b
