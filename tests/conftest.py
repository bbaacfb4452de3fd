from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ssmrec.data import Dataset, ratio_split, synthetic, write_lightgcn

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(autouse=True)
def _torch_defaults():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    """300 users x 200 items with latent structure, split 80/20 per user."""
    inter = synthetic(300, 200, seed=1)
    train, _, test = ratio_split(inter, (0.8, 0.0, 0.2), seed=0)
    return Dataset("tiny", train, test, source="synthetic")


@pytest.fixture
def tiny_dir(tmp_path, tiny):
    d = tmp_path / "tiny"
    d.mkdir()
    write_lightgcn(tiny.train, d / "train.txt")
    write_lightgcn(tiny.test, d / "test.txt.gz")
    return d


def pytest_configure(config):
    np.set_printoptions(precision=5, suppress=True)
