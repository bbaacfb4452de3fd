"""The command line's edges, through the real command: no abbreviated flags, "did you mean" for a
mistyped one, bad values refused before torch is imported, INFO lines only with -v, results
labelled test-selected, the thread count of --threads 0 said once."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time

import pytest

from ssmrec import cli
from ssmrec.cli import build_parser, common, main
from ssmrec.errors import ConfigError
from ssmrec.train import setup
from ssmrec.train.config import TrainConfig

FAST = ["--dim", "8", "--batch-size", "256", "--epochs", "1", "--no-progress", "--lr", "0.01", "--model", "mf"]


def ssmrec(*args: str, cwd=None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """The command as a user runs it, and the seconds it took."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssmrec", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)
    return done, time.perf_counter() - t0


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        for sub in getattr(action, "_name_parser_map", {}).values():
            yield from _parsers(sub)


# ------------------------------------------------------------------ flags

def test_no_parser_takes_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 10 and all(not p.allow_abbrev for p in parsers)


def test_an_abbreviated_or_mistyped_flag_is_refused_with_a_suggestion(tmp_path):
    done, seconds = ssmrec("train", "--epoch", "1", cwd=tmp_path)
    assert done.returncode == 2, done
    assert "usage: ssmrec train" in done.stderr  # the subcommand's usage, not the top-level one
    assert "unrecognized arguments: --epoch 1; did you mean --epochs?" in done.stderr
    assert seconds < 2.0 and not list(tmp_path.iterdir())
    done, _ = ssmrec("evaluate", "RUN", "--simlarity", "cos", cwd=tmp_path)
    assert done.returncode == 2 and "usage: ssmrec evaluate" in done.stderr
    assert "did you mean --similarity?" in done.stderr
    done, _ = ssmrec("trian", cwd=tmp_path)
    assert done.returncode == 2 and "did you mean 'train'?" in done.stderr


def test_verbose_flag_after_the_command(capsys):
    args = build_parser().parse_args(["train", "--epochs", "2", "-v"])
    assert args.verbose and args.epochs == 2
    assert build_parser().parse_args(["-v", "train"]).verbose
    assert not build_parser().parse_args(["train"]).verbose


# ------------------------------------------------------------------ bad values before torch

BAD = [  # (flags, the message's end)
    (["train", "--dim", "-3"], "command line: dim must be positive, got -3"),
    (["train", "--tau", "abc"], "command line: tau cannot be 'abc' (expected a number)"),
    (["train", "--loss", "warp"], "command line: loss unknown loss 'warp'"),
    (["train", "--protocol", "holdot"], "command line: protocol must be one of ('paper', 'holdout'), got 'holdot'"),
    (["train", "--device", "tpu"], "command line: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["train", "--metric", "recal@20"], "command line: metric must look like 'recall@20'"),
    (["train", "--ratios", "0.5", "0.5"], "command line: ratios must be three numbers"),
    (["train", "--threads", "-1"], "command line: threads must be >= 0, got -1"),
    (["train", "--config", "missing.toml"], "--config missing.toml: no such file"),
    (["train", "--resume", "nowhere"], "nowhere: not a run directory (no config.json)"),
    (["sweep", "--member", "lr=0.1"], "--member lr=0.1: lr cannot differ between members"),
    (["tune", "--grid", "lr=0.1,0.01"], "--grid lr: only settings that sweep members may differ in"),
    (["tune", "--grid", "a0=0.5,1.0"], "--grid a0: SVD++'s a0 and a1 cannot differ between the members"),
    (["tune", "--grid", "reg=1,2", "--members", "0"], "--members must be positive, got 0"),
    (["evaluate", "nowhere"], "nowhere: not a run directory (no config.json)"),
    (["recommend", "nowhere", "--user", "1"], "nowhere: not a run directory (no config.json)"),
    (["experiment", "missing.toml"], "grid missing.toml: no such file"),
]


def test_bad_values_are_refused_before_torch_is_imported(tmp_path):
    """Each case in a fresh interpreter (one for all): refused with exit code 2, torch never loaded."""
    script = (
        "import json, sys\n"
        "from ssmrec.cli import main\n"
        "out = []\n"
        f"for argv in {[flags for flags, _ in BAD]!r}:\n"
        "    out.append([main(argv), 'torch' in sys.modules])\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(BAD), done.stderr
    for (flags, message), (code, torch_loaded), line in zip(BAD, results, errors):
        assert code == 2 and message in line, (flags, line)
        assert not torch_loaded, f"{flags}: torch was imported before the refusal"


def test_a_bad_value_is_refused_in_well_under_a_second(tmp_path):
    done, seconds = ssmrec("train", "--dataset", "ml-100k", "--dim", "0", cwd=tmp_path)
    assert done.returncode == 2 and "dim must be positive, got 0" in done.stderr
    assert seconds < 2.0  # ~0.2 s on an idle machine; torch alone takes 2-5 s to import


def test_help_imports_nothing_heavy():
    script = ("import sys\nfrom ssmrec.cli import build_parser\nbuild_parser().format_help()\n"
              "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done


CASES = [  # (setting, a bad value, a good one): the light check and TrainConfig agree on both
    ("dim", 0, 8), ("epochs", -1, 1), ("batch_size", 0, 1), ("eval_every", 0, 2), ("eval_chunk", 0, 10),
    ("nproc", 0, 1), ("patience", -1, 0), ("layers", -1, 0), ("extra_negatives", -2, 0), ("threads", -1, 0),
    ("kcore", -1, 0), ("tau", 0.0, 0.2), ("tau", math.inf, 1.0), ("lr", -1e-3, 1e-3), ("reg", -1.0, 0.0),
    ("neg_weight", math.nan, 1.0), ("max_seconds", -1.0, 0.0), ("checkpoint_every", -1.0, 0.0),
    ("a0", math.inf, 0.5), ("negative_beta", math.nan, 0.0), ("margin", 1.0, -1.0), ("valid_fraction", 1.0, 0.0),
    ("seed", -1, 0), ("split_seed", 2**63, 2**63 - 1), ("negatives", 0, 1), ("ratios", (0.5, 0.5), (0.7, 0.1, 0.2)),
    ("ratios", (0.0, 0.5, 0.5), (0.5, 0.0, 0.5)), ("ks", (0,), (1, 20)), ("metric", "ndcg@0", "ndcg@10"),
    ("metric", "auc@20", "mrr@5"), ("model", "gcn", "LightGCN"), ("model", "svd", "svd++"), ("loss", "warp", "InfoNCE"),
    ("loss", "adaptau2", "sl@k"), ("protocol", "valid", "holdout"), ("side", "both", "item"),
    ("similarity", "dot", "ip"), ("test_similarity", "l2", "cos"), ("device", "gpu", "cuda:1"),
    ("sampler", "gpu", "device"), ("optimizer", "sgd", "sparse-adam"), ("sync_every", -1, 0), ("eval_users", -1, 100),
    ("dataset", "", "ml-100k"), ("dim", "abc", 16),
]


@pytest.mark.parametrize(("name", "bad", "good"), CASES)
def test_the_early_checks_say_what_trainconfig_says(name, bad, good):
    with pytest.raises(ConfigError) as full:
        TrainConfig().replace({name: bad}, source="command line")
    with pytest.raises(ConfigError) as early:
        common.check_settings({name: bad})
    assert str(early.value) == str(full.value)
    TrainConfig().replace({name: good}, source="command line")
    common.check_settings({name: good})


def test_the_early_checks_know_every_model_loss_and_metric():
    from ssmrec.eval.metrics import METRICS
    from ssmrec.losses import ALIASES, LOSSES
    from ssmrec.models import MODELS
    from ssmrec.train.config import MODEL_SETTINGS

    assert set(common.LOSS_NAMES) == set(LOSSES) | set(ALIASES) and set(MODEL_SETTINGS) == set(MODELS)
    assert common.METRIC_NAMES == METRICS


def test_an_unknown_loss_is_left_to_the_registry_when_plugins_may_add_it():
    common.check_settings({"loss": "mine", "plugins": ("some_plugin",)})  # the plugin may register it


# ------------------------------------------------------------------ what is printed

def test_info_lines_only_with_verbose_and_the_result_says_test_selected(rated_file, tmp_path):
    done, _ = ssmrec("train", "--dataset", str(rated_file), "--min-rating", "2", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("INFO")], done.stderr
    # what the data steps did and the thread count are said, once each, as plain lines
    assert any(line.startswith("min_rating 2: ") for line in done.stderr.splitlines()), done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("threads: ")]
    assert len(said) == 1 and said[0].startswith("threads: 1 (auto: small data, "), done.stderr
    final = [line for line in done.stdout.splitlines() if line.startswith("best epoch")]
    assert len(final) == 1 and "test (test-selected):" in final[0]


def test_verbose_shows_every_line_with_its_level_and_logger():
    def record(name, level):
        return logging.LogRecord(name, level, __file__, 1, "min_rating 2: 10 -> 8 rows", None, None)

    quiet, loud = cli._ConsoleFormatter(False), cli._ConsoleFormatter(True)
    assert quiet.format(record("ssmrec.data.dataset", logging.INFO)) == "min_rating 2: 10 -> 8 rows"
    assert quiet.format(record("ssmrec.data.dataset", logging.WARNING)) == "warning: min_rating 2: 10 -> 8 rows"
    assert loud.format(record("ssmrec.data.dataset", logging.INFO)) == \
        "INFO ssmrec.data.dataset: min_rating 2: 10 -> 8 rows"


def test_results_say_how_their_epoch_was_chosen(tiny_dir, tmp_path, capsys):
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--out", str(tmp_path / "paper")]) == 0
    assert "; test (test-selected): recall@20" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "paper")]) == 0
    assert "test-selected, test, similarity" in capsys.readouterr().out
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--protocol", "holdout",
                 "--out", str(tmp_path / "holdout")]) == 0
    assert "(max_epochs; selected on validation); test: recall@20" in capsys.readouterr().out


def test_a_sweeps_table_says_test_selected(tiny_dir, tmp_path, capsys):
    assert main(["sweep", "--dataset", str(tiny_dir), *FAST, "--member", "seed=0", "--member", "seed=1",
                 "--out", str(tmp_path / "sweep")]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("member  settings")]
    assert len(table) == 1 and "test-selected recall@20" in table[0]


def test_sweep_and_tune_help_list_only_what_members_may_differ_in():
    parser = build_parser()
    subs = {name: p for a in parser._actions for name, p in getattr(a, "_name_parser_map", {}).items()}
    grid_help = next(a.help for a in subs["tune"]._actions if "--grid" in a.option_strings)
    member_help = next(a.help for a in subs["sweep"]._actions if "--member" in a.option_strings)
    sweep_line = next(a.help for a in parser._subparsers._group_actions[0]._choices_actions if a.dest == "sweep")
    for text in (grid_help, member_help, sweep_line):
        assert "seed, reg, tau, layers, margin, neg_weight" in text and "a0" not in text and "a1" not in text


# ------------------------------------------------------------------ threads

@pytest.mark.parametrize(("machine", "threads"), [
    (dict(cores=2, load=0.6, running=1, own=0.0), 2),  # nothing else runs: was 1 whenever load >= 0.5
    (dict(cores=2, load=0.9, running=2, own=0.8), 2),  # the load is this run's own (it loaded the data)
    (dict(cores=2, load=1.3, running=2, own=0.2), 1),  # one other job: one core left
    (dict(cores=8, load=1.2, running=2, own=0.2), 7),  # one other job: the seven others
    (dict(cores=4, load=2.6, running=1, own=0.0), 4),  # a job that just ended still weighs on the average
    (dict(cores=4, load=9.0, running=12, own=0.0), 1),  # a busy machine
    (dict(cores=32, load=0.0, running=1, own=0.0), 8),  # at most 8
])
def test_auto_threads_leave_the_other_jobs_their_cores(machine, threads):
    got, line = setup.choose_threads(10**6, **machine)
    assert got == threads and line.startswith(f"threads: {threads} (auto: {machine['cores']} cores, load ")
    small = "threads: 1 (auto: small data, 10,000 < 200,000 training pairs)"
    assert setup.choose_threads(10**4, **machine) == (1, small)


def test_the_thread_choice_is_said_once(monkeypatch, caplog):
    monkeypatch.setattr(setup, "_said", [])
    with caplog.at_level("INFO", logger="ssmrec.train.setup"):
        assert setup.auto_threads(10) == setup.auto_threads(10) == 1
    assert [r.getMessage() for r in caplog.records] == ["threads: 1 (auto: small data, 10 < 200,000 training pairs)"]
