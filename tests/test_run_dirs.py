"""A run directory is never overwritten, and it travels: evaluate / recommend work from any working
directory, without the data's original relative path or $SSMREC_DATA, and a single-user
recommend answers from the run's export with numpy alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssmrec.cli import main
from ssmrec.serve import load_export
from ssmrec.train import TrainConfig
from ssmrec.train.run import RunDir

FAST = ["--model", "lightgcn", "--dim", "8", "--batch-size", "256", "--no-progress", "--epochs", "2",
        "--threads", "1"]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def relative_run(tiny_dir, tmp_path, monkeypatch):
    """A run trained from tmp_path with the relative dataset path 'tiny' and run dir 'runs/r'."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "tiny", *FAST, "--out", "runs/r"]) == 0
    return tmp_path / "runs" / "r"


def test_training_into_an_existing_run_is_refused_and_changes_nothing(relative_run, capsys):
    before = digest(relative_run)
    capsys.readouterr()
    assert main(["train", "--dataset", "tiny", *FAST, "--dim", "16", "--out", "runs/r"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume runs/r" in err[0]
    assert digest(relative_run) == before
    assert main(["evaluate", "runs/r"]) == 0  # still loads: same config, same weights


def test_out_naming_a_file_or_an_impossible_place_is_refused(tiny_dir, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--out", "/proc/ssmrec-run"]) == 2
    assert "cannot create /proc/ssmrec-run" in capsys.readouterr().err
    assert f.read_text() == "x"


def test_a_run_directory_works_from_another_working_directory(relative_run, tmp_path, monkeypatch, capsys):
    assert main(["evaluate", "runs/r", "--json", "m1.json"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # 'tiny' means nothing here
    capsys.readouterr()
    assert main(["evaluate", str(relative_run), "--json", "m2.json"]) == 0
    assert json.loads(Path("m2.json").read_text()) == json.loads((tmp_path / "m1.json").read_text())
    assert main(["recommend", str(relative_run), "--user", "3", "-k", "5"]) == 0
    assert main(["train", "--resume", str(relative_run), "--epochs", "3"]) == 0
    assert len(RunDir(relative_run).history()) == 3


def test_registry_data_found_where_it_was_at_training_time(tmp_path):
    run = RunDir(tmp_path)
    cfg = TrainConfig(dataset="gowalla")
    run.create(cfg, {"data": {"location": {"data_dir": str(tmp_path)}}})
    assert run.data_config(cfg).data_dir == str(tmp_path)
    assert run.data_config(TrainConfig(dataset="gowalla", data_dir="/x")).data_dir == "/x"  # explicit wins


def test_a_finished_run_writes_an_export_that_recommend_reads_without_torch(relative_run, capsys):
    ex = load_export(relative_run / "export")
    metrics = json.loads((relative_run / "metrics.json").read_text())
    assert ex.manifest["epoch"] == metrics["best_epoch"] and ex.manifest["similarity"] == "ip"
    assert ex.manifest["training_similarity"] == "cos" and ex.user_factors.dtype == np.float32
    # the export's answer is the model's answer
    capsys.readouterr()
    assert main(["recommend", str(relative_run), "--user", "3", "-k", "5"]) == 0
    fast = capsys.readouterr().out
    os.rename(relative_run / "export", relative_run / "export.off")
    assert main(["recommend", str(relative_run), "--user", "3", "-k", "5"]) == 0
    slow = capsys.readouterr().out
    os.rename(relative_run / "export.off", relative_run / "export")
    assert [line.split()[:2] for line in fast.splitlines()] == [line.split()[:2] for line in slow.splitlines()]
    code = ("import sys; from ssmrec.cli import main; rc = main(['recommend', sys.argv[1], '--user', '3', "
            "'-k', '5']); print('torch' in sys.modules, 'pandas' in sys.modules); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(relative_run)], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "SSMREC_DATA"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_resuming_a_finished_run_says_so(relative_run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(relative_run)]) == 0
    assert "has finished" in capsys.readouterr().out
