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


@pytest.fixture
def rated_file(tmp_path):
    """120 users rate 60 items 1-5: a user likes items of her own parity class and dislikes the others."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):
        for i in rng.choice(60, size=25, replace=False):
            liked = (i % 2) == (u % 2)
            rating = rng.integers(4, 6) if liked else rng.integers(1, 3)
            if rng.random() < 0.15:
                rating = 3
            rows.append(f"{u}\t{i}\t{rating}\t{1000 + len(rows)}")
    p = tmp_path / "rated.tsv"
    p.write_text("user\titem\trating\ttimestamp\n" + "\n".join(rows) + "\n")
    return p
