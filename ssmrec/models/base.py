"""What every recommender provides: ID embeddings in, final representations out, no loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.errors import ConfigError

INITS = ("xavier", "normal")
"""The initialisations of :func:`init_table` (the ``init`` setting)."""


def init_table(table: torch.Tensor, init: str = "xavier", std: float = 0.01) -> torch.Tensor:
    """Fill an ID table ``[rows, dim]`` in place, as the ``init`` setting says, and return it.

    ``xavier``
        Uniform on ``[-b, b]`` with ``b = sqrt(6 / (rows + dim))`` (``nn.init.xavier_uniform_``,
        the study's): the table is treated as a linear layer's weight, so its scale shrinks as
        ``1/sqrt(rows)``: bound 0.012 (standard deviation 0.0070) on Gowalla's 40,981 items x 64,
        bound 0.0017 (standard deviation 0.0010) at 2M rows.
    ``normal``
        ``N(0, std^2)`` whatever the number of rows: the scale of a row does not depend on the
        catalogue. ``std`` 0.01 by default: LightGCN-PyTorch (gusye1234) draws its tables with 0.1
        (for dense Adam over ~1,000 epochs), but with Adam's fixed step size a row's relative step
        is ``lr / std``, and in ``benchmarks/init_scale.py`` (MF, sparse-adam, lr 1e-3, 4 epochs) 0.1
        learnt nothing at 50k or 1M items, 0.01 about as fast as Xavier at 50k and a little slower
        at 1M (where Xavier's rows start 7x smaller, and the rows training never reaches score
        near zero). It is for runs that must not depend on the catalogue's size. implicit's
        BPR draws uniform ``(-0.5, 0.5) / dim`` (std 0.0045 at dim 64), also catalogue-free;
        TorchRec's default, uniform ``+-sqrt(1 / rows)``, shrinks like Xavier's.

    The draw is one call on the table (users, then items, in :class:`Recommender`), so a seed gives
    the same tables as before for ``xavier``."""
    if init == "xavier":
        return nn.init.xavier_uniform_(table)
    if init == "normal":
        if not (std > 0 and std < float("inf")):
            raise ConfigError(f"init_std must be a finite number > 0, got {std}")
        return nn.init.normal_(table, std=std)
    raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")


class Recommender(nn.Module):
    """Base class: user/item ID embeddings (layer 0), initialised by :func:`init_table`
    (Xavier-uniform by default, the study's).

    Subclasses implement :meth:`forward`, returning the final ``(user_reps, item_reps)`` of all
    users and items, and may override :meth:`batch_reps` to compute only the rows a batch needs.
    Their constructors pass ``init`` and ``init_std`` through unchanged: this is the one place
    where tables are drawn.

    Args:
        n_users, n_items: table sizes.
        dim: embedding size (default: 64).
        init: ``xavier`` or ``normal`` (default: ``xavier``), see :func:`init_table`.
        init_std: the standard deviation of ``normal`` (default: 0.01).
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, *, init: str = "xavier", init_std: float = 0.01):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.init, self.init_std = init, init_std
        self.user_emb = nn.Parameter(torch.empty(n_users, dim))
        self.item_emb = nn.Parameter(torch.empty(n_items, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw both tables afresh (users first, then items) with this model's ``init``."""
        init_table(self.user_emb, self.init, self.init_std)
        init_table(self.item_emb, self.init, self.init_std)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """In eval mode, ``model()`` gives the representations as scored, detached (ready for
        ``.numpy()``); in train mode it builds the autograd graph as usual."""
        if self.training or args or kwargs:
            return super().__call__(*args, **kwargs)
        with torch.no_grad():
            return super().__call__()

    def batch_reps(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final representations of the given users and items (rows may repeat)."""
        if self.sparse_grads:  # the whole-table path would give every row a (dense) gradient
            raise ConfigError(f"optimizer: {type(self).__name__}'s batch path computes every row's representation; "
                              "it cannot train with a sparse optimizer (use optimizer adam)")
        u, i = self.forward()
        return u[users], i[items]

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 (ID) embeddings of the given users and items, for L2 regularisation."""
        if self.sparse_grads:
            return self.rows(self.user_emb, users), self.rows(self.item_emb, items)
        return self.user_emb[users], self.item_emb[items]

    # ------------------------------------------------------------------ row gradients
    sparse_grads = False
    """Whether the batch paths (:meth:`batch_reps`, :meth:`ego`) give the tables row gradients
    (COO sparse tensors over the rows a batch reached) instead of dense table-sized ones, for
    the sparse optimizers of :mod:`ssmrec.train.optim`; set by :meth:`use_sparse_grads`."""

    def use_sparse_grads(self, on: bool = True) -> None:
        """Build row gradients from now on (``on``), or dense gradients again.

        A table must never receive a mix of the two (a dense gradient would make the step read
        every row), so a model whose batch path reads whole tables refuses with a
        :class:`ConfigError` naming the setting at fault."""
        if on:
            self.check_sparse_grads()
        self.sparse_grads = on

    def check_sparse_grads(self) -> None:
        """Raise a :class:`ConfigError` when this model's batch path cannot build row gradients.
        The base class's :meth:`batch_reps` computes every row's representation first, so a
        subclass that keeps it (and any other path reading whole tables) refuses here."""
        if type(self).batch_reps is Recommender.batch_reps:
            raise ConfigError(f"optimizer: {type(self).__name__} computes every row's representation at each step; "
                              "it cannot train with a sparse optimizer (use optimizer adam)")

    @staticmethod
    def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``table[index]`` whose gradient is a COO row gradient over ``index``'s rows."""
        return F.embedding(index, table, sparse=True)

    def extra_repr(self) -> str:
        init = "" if self.init == "xavier" else f", init={self.init}(std={self.init_std:g})"
        return f"users={self.n_users}, items={self.n_items}, dim={self.dim}{init}"
