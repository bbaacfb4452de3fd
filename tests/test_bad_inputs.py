"""Nonsense input is refused with one line naming the setting, file or line, exit code 2, and
nothing on disk changes: no run directory, no record, no output file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssmrec.cli import build_parser, main
from ssmrec.cli.common import OPTIONS, train_values
from ssmrec.data import write_lightgcn
from ssmrec.data.sampling import PopularityNegatives
from ssmrec.experiments import load_grid
from ssmrec.train.config import LOSS_SETTINGS, MODEL_SETTINGS, ConfigError, TrainConfig
from ssmrec.train.config_io import load_toml

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN = ["train", "--dataset", "{data}", "--model", "mf", "--dim", "8", "--epochs", "1", "--no-progress",
         "--out", "{out}"]
GOOD_GRID = ('name = "ok"\n[base]\ndataset = "{data}"\nmodel = "mf"\ndim = 8\nepochs = 1\nprogress = false\n'
             '[[cell]]\nloss = "ssm"\n')
EXP = ["--records", "{tmp}/records", "--runs", "{tmp}/runs"]
TRAIN_FILE = ["train", *TRAIN[3:]]  # TRAIN without its --dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny):
    """A tiny dataset folder and one trained run, shared by the module (never written to after)."""
    base = tmp_path_factory.mktemp("bad-inputs")
    data = base / "tiny"
    data.mkdir()
    write_lightgcn(tiny.train, data / "train.txt")
    write_lightgcn(tiny.test, data / "test.txt")
    run = base / "run"
    assert main(["train", "--dataset", str(data), "--model", "mf", "--dim", "8", "--epochs", "1",
                 "--no-progress", "--out", str(run)]) == 0
    return base, data, run


def snapshot(*roots: Path) -> dict:
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            st = p.stat()
            out[str(p)] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


# (id, argv, files written first {name: text}, text the error line must hold)
CASES = [
    # cut-offs and chunk sizes
    ("train-ks-0", [*TRAIN, "--ks", "0"], {}, "ks"),
    ("train-ks-negative", [*TRAIN, "--ks", "20", "-5"], {}, "ks"),
    ("evaluate-k-0", ["evaluate", "{run}", "--k", "0"], {}, "--k"),
    ("evaluate-k-negative", ["evaluate", "{run}", "--k", "-1"], {}, "--k"),
    ("evaluate-chunk-0", ["evaluate", "{run}", "--chunk", "0"], {}, "--chunk"),
    ("evaluate-k-above-catalogue", ["evaluate", "{run}", "--k", "20", "201"], {},
     "K 201 is larger than the 200 items"),
    ("evaluate-device", ["evaluate", "{run}", "--device", "gpu"], {}, "--device"),
    ("evaluate-json-nowhere", ["evaluate", "{run}", "--json", "{tmp}/nowhere/m.json"], {}, "--json"),
    # ranges: seeds, counts, finite reals
    ("split-seed", [*TRAIN, "--split-seed", "-1"], {}, "split_seed"),
    ("seed", [*TRAIN, "--seed", "-3"], {}, "seed"),
    ("checkpoint-every", [*TRAIN, "--checkpoint-every", "-1"], {}, "checkpoint_every"),
    ("kcore", [*TRAIN, "--kcore", "-1"], {}, "kcore"),
    ("tau-inf", [*TRAIN, "--tau", "inf"], {}, "tau"),
    ("tau-nan", [*TRAIN, "--tau", "nan"], {}, "tau"),
    ("lr-nan", [*TRAIN, "--lr", "nan"], {}, "lr"),
    ("reg-nan", [*TRAIN, "--reg", "nan"], {}, "reg"),
    ("a0-inf", [*TRAIN, "--a0", "inf"], {}, "a0"),
    ("a1-nan", [*TRAIN, "--a1", "nan"], {}, "a1"),
    ("margin", [*TRAIN, "--margin", "1.5"], {}, "margin"),
    ("neg-weight", [*TRAIN, "--neg-weight", "-1"], {}, "neg_weight"),
    ("negative-beta", [*TRAIN, "--negative-beta", "nan"], {}, "negative_beta"),
    ("max-seconds", [*TRAIN, "--max-seconds", "inf"], {}, "max_seconds"),
    ("min-rating", [*TRAIN, "--min-rating", "nan"], {}, "min_rating"),
    ("valid-fraction-1", [*TRAIN, "--valid-fraction", "1"], {}, "valid_fraction"),
    ("valid-fraction-negative", [*TRAIN, "--valid-fraction", "-0.1"], {}, "valid_fraction"),
    ("metric-at-0", [*TRAIN, "--metric", "recall@0"], {}, "metric"),
    # split ratios
    ("ratios-no-test", [*TRAIN, "--ratios", "1", "0", "0"], {}, "test share"),
    ("ratios-no-train", [*TRAIN, "--ratios", "0", "0.5", "0.5"], {}, "train share"),
    ("ratios-two", [*TRAIN, "--ratios", "0.8", "0.2"], {}, "three numbers"),
    ("ratios-sum", [*TRAIN, "--ratios", "0.5", "0.1", "0.2"], {}, "sum to 1"),
    ("ratios-negative", [*TRAIN, "--ratios", "0.9", "-0.1", "0.2"], {}, "non-negative"),
    # TOML types are strict
    ("toml-bool-int", ["train", "--config", "{tmp}/c.toml", "--out", "{out}"],
     {"c.toml": 'dataset = "{data}"\ntemporal = 2\n'}, "temporal cannot be 2"),
    ("toml-float-string", ["train", "--config", "{tmp}/c.toml", "--out", "{out}"],
     {"c.toml": 'dataset = "{data}"\ntau = "0.1"\n'}, "tau cannot be '0.1'"),
    ("toml-int-bool", ["train", "--config", "{tmp}/c.toml", "--out", "{out}"],
     {"c.toml": 'dataset = "{data}"\nepochs = true\n'}, "epochs"),
    ("toml-list-item", ["train", "--config", "{tmp}/c.toml", "--out", "{out}"],
     {"c.toml": 'dataset = "{data}"\nks = [10, "20"]\n'}, "ks"),
    # grids
    ("grid-typo", ["experiment", "{tmp}/g.toml", *EXP],
     {"g.toml": 'name = "t"\n[base]\ndataset = "{data}"\n[[cel]]\nmodel = "mf"\n'},
     "unknown key 'cel' (did you mean cell?)"),
    ("grid-is-train-config", ["experiment", "{tmp}/c.toml", *EXP],
     {"c.toml": 'dataset = "{data}"\nmodel = "mf"\nepochs = 1\n'}, "ssmrec train --config"),
    ("grid-similarities", ["experiment", "{tmp}/g.toml", *EXP],
     {"g.toml": '[[cell]]\ndataset = "{data}"\nmodel = "mf"\nsimilarities = ["ipp"]\n'}, "similarities"),
    ("grid-search-key", ["experiment", "{tmp}/g.toml", *EXP],
     {"g.toml": '[search]\ncoarse = [0.1]\nstepp = 0.01\n[[cell]]\ndataset = "{data}"\nmodel = "mf"\n'}, "stepp"),
    ("grid-search-string", ["experiment", "{tmp}/g.toml", *EXP],
     {"g.toml": '[search]\nspan = "2"\n[[cell]]\ndataset = "{data}"\nmodel = "mf"\n'}, "span"),
    ("experiment-override", ["experiment", "{tmp}/g.toml", *EXP, "--threads", "-1"],
     {"g.toml": GOOD_GRID}, "threads"),
    ("experiment-second-grid-bad", ["experiment", "{tmp}/g.toml", "{tmp}/h.toml", *EXP],
     {"g.toml": GOOD_GRID, "h.toml": '[[cell]]\nlos = "ssm"\n'}, "'los'"),
    # where runs and outputs go
    ("train-ks-above-catalogue", [*TRAIN, "--ks", "20", "500"], {}, "K 500 is larger than the 200 items"),
    ("train-out-existing-run", [*TRAIN[:-1], "{run}"], {}, "already holds a run"),
    ("train-out-is-a-file", [*TRAIN[:-1], "{tmp}/f.txt"], {"f.txt": "x"}, "is a file"),
    ("train-out-proc", [*TRAIN[:-1], "/proc/ssmrec-out"], {}, "cannot create /proc/ssmrec-out"),
    ("recommend-out-missing-folder", ["recommend", "{run}", "--all", "--out", "{tmp}/no/top.tsv"], {},
     "does not exist"),
    ("recommend-out-json", ["recommend", "{run}", "--all", "--out", "{tmp}/top.json"], {}, "unknown format '.json'"),
    ("recommend-unknown-user", ["recommend", "{run}", "--user", "nobody"], {}, "unknown user id 'nobody'"),
    ("plot-not-a-run", ["plot", "{tmp}"], {}, "no history.jsonl"),
    # headers and columns (issue 19): a first row that is not data but not recognisably a header is
    # refused naming the line and the flags, never trained on; columns named are used or refused
    ("train-first-row-not-a-number", [*TRAIN_FILE, "--dataset", "{tmp}/p.csv"], {"p.csv": "u1,i1,five\nu2,i2,4\n"},
     "p.csv, line 1: 'five' is not a number (rating); if line 1 is a header, name the columns with "
     "--user-col/--item-col"),
    ("train-first-time-not-a-date", [*TRAIN_FILE, "--dataset", "{tmp}/p.csv"],
     {"p.csv": "u1,i1,4,sometime\nu2,i2,4,2021-01-01\n"}, "line 1: 'sometime' is neither a number nor an ISO-8601 "
     "date/time (timestamp); if line 1 is a header, name the columns with --user-col/--item-col"),
    ("train-user-col-unknown", [*TRAIN_FILE, "--dataset", "{tmp}/p.csv", "--user-col", "buyer"],
     {"p.csv": "customer,product\nc1,p1\n"}, "no user column 'buyer'; columns are ['customer', 'product']"),
    ("train-columns-the-same", [*TRAIN_FILE, "--dataset", "{tmp}/p.csv", "--user-col", "customer", "--item-col",
                                "customer"], {"p.csv": "customer,product\nc1,p1\n"}, "the same column 'customer'"),
    ("train-column-on-lightgcn-folder", [*TRAIN, "--user-col", "0"], {},
     "user_col given but the file is in the LightGCN format"),
    # records
    ("rerun-missing", ["rerun", "{tmp}/missing.json", "--out", "{out}"], {}, "missing.json: no such file"),
    ("rerun-not-json", ["rerun", "{tmp}/r.json", "--out", "{out}"], {"r.json": "[1, 2"}, "not a result record"),
    ("rerun-not-a-record", ["rerun", "{run}/config.json", "--out", "{out}"], {}, "not a result record"),
    ("rerun-folder", ["rerun", "{tmp}", "--out", "{out}"], {}, "is a folder"),
]


@pytest.mark.parametrize("argv, files, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_written(world, tmp_path, monkeypatch, capsys, argv, files, expected):
    base, data, run = world
    monkeypatch.chdir(tmp_path)  # a default run directory (runs/...) would land here
    fill = dict(data=data, run=run, tmp=tmp_path, out=tmp_path / "out")
    for name, text in files.items():
        (tmp_path / name).write_text(text.format(**fill))
    argv = [a.format(**fill) for a in argv]
    before = snapshot(tmp_path, base)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ssmrec {argv[0]}: error: "), err
    assert expected in lines[0], err
    assert "Traceback" not in err
    assert snapshot(tmp_path, base) == before
    assert not (tmp_path / "out").exists()


def test_an_unknown_header_is_said_and_never_trained_through_the_real_command(tmp_path):
    """Issue 19, item 1: `customer,product` over integer ids trained a user 'customer'; the real
    command (a fresh process) now reads it as a header, says so, and knows no such user."""
    rows = [f"{u},{i}" for u in range(30) for i in range(u % 20, u % 20 + 8)]
    data = tmp_path / "shop.csv"
    data.write_text("customer,product\n" + "\n".join(rows) + "\n")
    exe = Path(sys.executable).with_name("ssmrec")
    cmd = [str(exe) if exe.exists() else "ssmrec"]
    run = tmp_path / "run"
    out = subprocess.run([*cmd, "train", "--dataset", str(data), "--model", "mf", "--dim", "8", "--epochs", "1",
                          "--no-progress", "--ks", "5", "--out", str(run)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "read as a header" in line]
    assert len(said) == 1 and "user ids 'customer', item ids 'product'" in said[0], out.stderr
    out = subprocess.run([*cmd, "recommend", str(run), "--user", "customer"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "unknown user id 'customer'" in out.stderr, out.stderr


# ---------------------------------------------------------------- the Python API


def test_fit_column_arguments_are_used_or_refused(tmp_path):
    """Issue 19, item 5: fit(path, user_col=...) used to ignore its columns."""
    import ssmrec

    data = tmp_path / "p.csv"
    data.write_text("customer,product\nc1,p1\n")
    with pytest.raises(ValueError, match="no user column 'buyer'"):
        ssmrec.Recommender(epochs=1).fit(data, user_col="buyer")
    with pytest.raises(ConfigError, match=r"fit: item_col='sku' differs from Recommender\(item_col='product'\)"):
        ssmrec.Recommender(item_col="product").fit(data, item_col="sku")
    with pytest.raises(ConfigError, match="test= and valid= take frames"):
        ssmrec.Recommender().fit(data, test=data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # nothing written


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="ks"):
        TrainConfig(ks=[0])
    with pytest.raises(ConfigError, match="ks"):
        TrainConfig.from_dict({"ks": [0]})
    with pytest.raises(ConfigError, match="tau"):
        TrainConfig(tau=float("nan"))
    with pytest.raises(ConfigError, match="temporal cannot be 2"):
        TrainConfig(temporal=2)
    with pytest.raises(ConfigError, match="ratios"):
        TrainConfig(ratios=(1.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="cuda:x")
    cfg = TrainConfig(ks=[5, 10], dataset=Path("some/file.csv"))
    assert cfg.ks == (5, 10, 20) and cfg.dataset == "some/file.csv"  # coerced; the metric's K added


def test_replace_and_from_dict_still_work():
    a = TrainConfig.from_dict({"tau": 0.2, "epochs": 3})
    b = a.replace({"tau": 0.5, "batch-size": 64})
    assert (a.tau, b.tau, b.batch_size, b.epochs) == (0.2, 0.5, 64, 3)
    with pytest.raises(ConfigError, match="unknown setting 'tua'.*tau"):
        a.replace({"tua": 1.0})
    with pytest.raises(ConfigError, match="command line: lr"):
        a.replace({"lr": -1.0}, source="command line")
    with pytest.raises(ConfigError, match="command line: lr must be a finite number > 0, got nan"):
        a.replace({"lr": float("nan")}, source="command line")
    assert a.lr == 1e-3  # the original is untouched


@pytest.mark.parametrize("text, match", [
    ("temporal = 2", "temporal cannot be 2"),
    ("mask_seen = \"yes\"", "mask_seen"),
    ("tau = \"0.1\"", r"tau cannot be '0.1' \(expected a number, without quotes\)"),
    ("epochs = true", "epochs cannot be True"),
    ("reg = false", "reg cannot be False"),
    ("ks = [10, \"20\"]", "ks"),
    ("model = 3", "model cannot be 3"),
])
def test_toml_types_are_strict(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text + "\n")
    with pytest.raises(ConfigError, match=match) as e:
        TrainConfig.from_dict(load_toml(p), source=str(p))
    assert str(p) in str(e.value)


def test_toml_numbers_widen_but_nothing_else_converts(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("temporal = 1\n")
    with pytest.raises(ConfigError, match="temporal"):
        TrainConfig.from_dict(load_toml(p))
    p.write_text("tau = 1\nepochs = 3.0\nratios = [0.8, 0, 0.2]\nks = 10\ntemporal = true\n")
    cfg = TrainConfig.from_dict(load_toml(p))
    assert cfg.tau == 1.0 and isinstance(cfg.tau, float)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.ratios == (0.8, 0.0, 0.2) and all(isinstance(r, float) for r in cfg.ratios)
    assert cfg.ks == (10, 20) and cfg.temporal is True


def test_flags_are_parsed_from_text_by_the_command_line():
    args = build_parser().parse_args(["train", "--tau", "0.2", "--ks", "5", "10", "--epochs", "3",
                                      "--min-rating", "4", "--no-temporal", "--similarity", "ip"])
    assert args.tau == 0.2 and args.ks == [5, 10] and args.epochs == 3 and args.min_rating == 4.0
    cfg = TrainConfig().replace(train_values(args), source="command line")
    assert (cfg.tau, cfg.ks, cfg.epochs, cfg.temporal, cfg.similarity) == (0.2, (5, 10, 20), 3, False, "ip")
    bad = build_parser().parse_args(["train", "--tau", "abc"])  # left as text, refused by name
    with pytest.raises(ConfigError, match="command line: tau cannot be 'abc'"):
        TrainConfig().replace(train_values(bad), source="command line")


# ---------------------------------------------------------------- grids


def test_grid_layout_errors(tmp_path):
    def grid(text, name="g.toml"):
        p = tmp_path / name
        p.write_text(text)
        return p

    with pytest.raises(ConfigError, match=r"unknown key 'cel' \(did you mean cell\?\)"):
        load_grid(grid('name = "t"\n[[cel]]\nmodel = "mf"\n'))
    with pytest.raises(ConfigError, match="looks like a train config.*ssmrec train --config"):
        load_grid(grid('model = "mf"\ntau = 0.2\n'))
    with pytest.raises(ConfigError, match="looks like a train config"):
        load_grid(grid('[train]\nmodel = "mf"\n'))
    with pytest.raises(ConfigError, match=r"\[\[cell\]\] #1: unknown setting\(s\) \['tua'\] \(did you mean tau"):
        load_grid(grid('[[cell]]\ntua = 0.2\n'))
    with pytest.raises(ConfigError, match="base must be a table"):
        load_grid(grid('name = "t"\nbase = 3\n'))
    with pytest.raises(ConfigError, match="coarse"):
        load_grid(grid('[search]\ncoarse = [0.1, -1]\n[[cell]]\nmodel = "mf"\n'))
    # a grid of base settings only, or cells without a name, is still a grid
    assert len(load_grid(grid('[base]\nmodel = "mf"\n')).cells) == 1
    assert len(load_grid(grid('[[cell]]\nmodel = "mf"\n')).cells) == 1


# ---------------------------------------------------------------- settings the run ignores


def test_tables_live_in_train_config():
    from ssmrec.experiments import grid

    assert grid.LOSS_SETTINGS is LOSS_SETTINGS and grid.MODEL_SETTINGS is MODEL_SETTINGS


@pytest.mark.parametrize("settings, given, expected", [
    ({"loss": "ssm"}, {"margin"}, ["margin is ignored: the ssm loss does not use it (the ccl losses do)"]),
    ({"loss": "bpr"}, {"tau"},
     ["tau is ignored: the bpr loss does not use it (the adaptau/bsl/clogq/ntr/psl/slk/softmax/ssm losses do)"]),
    ({"loss": "ccl"}, {"similarity", "neg-weight"}, ["similarity is ignored"]),
    ({"model": "mf"}, {"layers"}, ["layers is ignored: only the lightgcn model uses it"]),
    ({"model": "lightgcn"}, {"a0", "side"}, ["side is ignored", "a0 is ignored"]),
    ({"model": "svdpp"}, {"a0", "side", "dim"}, []),
    ({"loss": "ssm"}, {"negative_beta"}, ["negative_beta is ignored"]),
    ({"loss": "ssm", "extra_negatives": 8}, {"negative_beta"}, []),
    ({"dataset": "gowalla"}, {"ratios", "temporal", "kcore"},
     ["ratios is ignored", "temporal is ignored", "kcore is ignored"]),
    ({"dataset": "gowalla"}, {"data_dir", "valid_fraction", "split_seed"},
     ["valid_fraction is ignored", "split_seed is ignored"]),
    ({"dataset": "gowalla", "protocol": "holdout"}, {"valid_fraction", "split_seed"}, []),
    ({"dataset": "gowalla"}, set(), []),
])
def test_inapplicable_settings_warn(settings, given, expected):
    lines = TrainConfig.from_dict(settings).inapplicable(given)
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected):
        assert line.startswith(start), lines


def test_inapplicable_data_settings_by_dataset_kind(tmp_path, tiny):
    folder = tmp_path / "tiny"
    folder.mkdir()
    write_lightgcn(tiny.train, folder / "train.txt")
    write_lightgcn(tiny.test, folder / "test.txt")
    one = tmp_path / "all.csv"
    one.write_text("user,item\n1,2\n")
    lines = TrainConfig(dataset=str(folder)).inapplicable({"ratios", "min_rating", "download", "data_dir"})
    assert [line.split()[0] for line in lines] == ["data_dir", "ratios", "min_rating", "download"]
    assert "folder" in lines[1]
    lines = TrainConfig(dataset=str(one)).inapplicable({"ratios", "temporal", "kcore", "data_dir", "split_seed"})
    assert [line.split()[0] for line in lines] == ["data_dir"]


# ---------------------------------------------------------------- docs say what the code does


def test_negative_sampling_distribution_is_documented_as_coded():
    deg = np.array([0, 1, 3])
    assert np.allclose(PopularityNegatives(deg, beta=1.0).prob, (deg + 1) / (deg + 1).sum())
    readme = README.read_text()
    assert "∝ (degree + 1)^β" in readme and "∝ degree^β" not in readme
    assert "(degree+1)**beta" in OPTIONS["negative_beta"][1]
    assert "(degree + 1) ** beta" in TrainConfig.__doc__


def test_bce_mean_and_reg_weight_are_documented():
    readme = " ".join(README.read_text().split())
    assert "averaged over the B·(1+n) labelled pairs" in readme
    assert "(1 + n) times as much with `bce`" in readme

