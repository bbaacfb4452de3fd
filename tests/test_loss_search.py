"""SEARCH_SPACES: every built-in loss has one, every entry is a grid ``parse_grid`` and the settings
accept, and no space leaves a loss only where it is another loss."""

from __future__ import annotations

import pytest

from ssmrec.losses import BEYOND, LOSSES, SEARCH_SPACES, build_loss, canonical
from ssmrec.losses.search import DEGENERATE
from ssmrec.sweeps.members import DIFFERING
from ssmrec.sweeps.tuning import parse_grid
from ssmrec.train.config import TrainConfig


def test_every_built_in_loss_has_a_search_space():
    assert set(SEARCH_SPACES) == set(LOSSES)
    for name, space in SEARCH_SPACES.items():
        assert canonical(name) == name
        for values in space.values():
            assert values and len(values) == len(set(values)), (name, values)


@pytest.mark.parametrize("loss", sorted(SEARCH_SPACES))
def test_every_entry_is_accepted_by_parse_grid(loss):
    space = SEARCH_SPACES[loss]
    if not space:
        return
    # as a user would type it: --grid name=v1,v2,... (text), typed back to the values
    specs = [f"{name}={','.join(str(v) for v in values)}" for name, values in space.items()]
    assert parse_grid(specs, loss=loss) == space
    own = BEYOND[loss].params if loss in BEYOND else {}
    for name, values in space.items():
        assert name in DIFFERING or name in own, (loss, name)
        for v in values:  # each value is a valid setting and builds the loss
            over = {"loss_params": {name: v}} if name in own else {name: v}
            cfg = TrainConfig.from_dict({"loss": loss, **over})
            built = build_loss(cfg.loss, tau=cfg.tau, margin=cfg.margin, weight=cfg.neg_weight,
                               mask_duplicates=True, params=cfg.loss_params)
            if name in own:
                assert getattr(built, name) == v


def test_no_space_holds_only_a_degenerate_value():
    """BSL at tau2 = 1 is SL (both forms), PSL with exp is SL: a space may not sit only there."""
    for loss, where in DEGENERATE.items():
        for name, value in where.items():
            values = SEARCH_SPACES[loss].get(name, [BEYOND[loss].params[name]])
            assert any(v != value for v in values), (loss, name, values)
    # BSL's weight of the negative term is searched on both sides of 1, and never at 1
    tau2 = SEARCH_SPACES["bsl"]["tau2"]
    assert 1.0 not in tau2 and min(tau2) < 1.0 < max(tau2)
