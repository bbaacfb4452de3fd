"""The CUDA path: same objective values and gradients, same metrics, a full run. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest
import torch

from ssmrec.cli import main
from ssmrec.eval import Evaluator
from ssmrec.losses import LOSSES
from ssmrec.models import build_model
from ssmrec.train import TrainConfig, build_objective

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("model_name", ["mf", "svdpp", "lightgcn"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_objective_on_cuda_matches_cpu(tiny, model_name, loss):
    cfg = TrainConfig.from_dict({"model": model_name, "loss": loss, "dim": 8, "batch_size": 64, "negatives": 3,
                                 "layers": 2, "reg": 1e-4, "mask_seen": loss == "ssm", "logq": loss == "ssm",
                                 "extra_negatives": 16 if loss == "ssm" else 0})
    out = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model(model_name, tiny.train, 8, layers=2).to(dev)
        objective, sampler = build_objective(cfg, tiny.train)
        objective.to(torch.device(dev))
        batch = next(iter(sampler.epoch(0))).to(dev)
        value = objective(model, batch)
        value.backward()
        out[dev] = (value.item(), model.user_emb.grad.cpu(), model.item_emb.grad.cpu())
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-4)
    assert torch.allclose(out["cuda"][1], out["cpu"][1], atol=1e-5)
    assert torch.allclose(out["cuda"][2], out["cpu"][2], atol=1e-5)


def test_evaluation_on_cuda_matches_cpu(tiny):
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(tiny.n_users, 16, generator=g), torch.randn(tiny.n_items, 16, generator=g)
    cpu = Evaluator(tiny.test, [tiny.train], ks=(10, 20)).evaluate(u, i)
    gpu = Evaluator(tiny.test, [tiny.train], ks=(10, 20), device="cuda", chunk_size=50).evaluate(u, i)
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], abs=1e-9)


def test_cli_on_cuda(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--device", "cuda", "--epochs", "2", "--dim", "16",
                 "--batch-size", "256", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["env"]["cuda"]
    assert main(["evaluate", str(out), "--device", "cuda", "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads((out / "metrics.json").read_text())["test"]
    assert main(["recommend", str(out), "--device", "cuda", "--all", "--out", str(tmp_path / "r.tsv")]) == 0
