"""The dataset registry: finding, verifying and downloading benchmark files (never the network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ssmrec.data import DataConfig, DataError, get_spec, load_dataset, locate, registry
from ssmrec.data.registry import REGISTRY, DatasetSpec, RemoteFile

HERE = Path(__file__).resolve().parent
SHARED = (HERE / ".." / ".." / "shared" / "data").resolve()


def shared_data() -> Path:
    """The project's data folder (the CI's $SSMREC_DATA, else the checkout's neighbour)."""
    for cand in (os.environ.get("SSMREC_DATA"), str(SHARED), "/work/shared/data"):
        if cand and (Path(cand) / "gowalla" / "train.txt.gz").is_file():
            return Path(cand)
    pytest.skip("the shared benchmark data folder is not available")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test here may reach the network, nor read or fill the user's real cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(registry.urllib.request, "urlopen", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def shared(monkeypatch) -> Path:
    root = shared_data()
    monkeypatch.setenv("SSMREC_DATA", str(root))
    return root


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fake_urlopen(payloads: dict[str, bytes], calls: list[str]):
    def urlopen(url, timeout=None):
        calls.append(url)
        if url not in payloads:
            raise urllib.error.URLError(f"no route to {url}")
        return FakeResponse(payloads[url])

    return urlopen


TOY_TRAIN = b"0 1 2\n1 0 2\n2 1\n"
TOY_TEST = b"0 0\n1 1\n2 2\n"


@pytest.fixture
def toy_spec(monkeypatch) -> DatasetSpec:
    spec = DatasetSpec(
        "toy",
        (
            RemoteFile("train", "train.txt", "https://example.invalid/toy/train.txt", "lightgcn",
                       sha256=hashlib.sha256(TOY_TRAIN).hexdigest()),
            RemoteFile("test", "test.txt", "https://example.invalid/toy/test.txt", "lightgcn",
                       md5=hashlib.md5(TOY_TEST).hexdigest()),
        ),
        aliases=("toy-alias",),
    )
    monkeypatch.setitem(REGISTRY, "toy", spec)
    return spec


# ------------------------------------------------------------------------------------ lookup
def test_locate_gowalla_in_shared_folder(shared, monkeypatch, tmp_path):
    verified = []
    real_verify = registry.verify
    monkeypatch.setattr(registry, "verify", lambda p, r, **kw: (verified.append(p), real_verify(p, r, **kw)))
    paths = locate("gowalla", allow_download=False)
    assert paths == {"train": shared / "gowalla" / "train.txt.gz", "test": shared / "gowalla" / "test.txt.gz"}
    assert sorted(verified) == sorted(paths.values())


def test_shared_files_match_registry_checksums(shared):
    for role, p in locate("gowalla", allow_download=False).items():
        spec_file = next(f for f in get_spec("gowalla").files if f.role == role)
        assert registry.file_digest(p, "sha256") == spec_file.gz_sha256


@pytest.mark.parametrize("name", ["test.txt.gz", "test.txt"])
def test_one_changed_byte_is_a_checksum_mismatch(shared, tmp_path, name):
    d = tmp_path / "mine" / "gowalla"
    d.mkdir(parents=True)
    src = shared / "gowalla" / "test.txt.gz"
    data = bytearray(src.read_bytes() if name.endswith(".gz") else gzip.decompress(src.read_bytes()))
    data[len(data) // 2] ^= 0x01
    bad = d / name
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        locate("gowalla", tmp_path / "mine", allow_download=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and str(bad) in msg
    # the data_dir copy wins over $SSMREC_DATA, and check=False skips verification
    assert locate("gowalla", tmp_path / "mine", allow_download=False, check=False)["test"] == bad


def test_regzipped_copy_with_right_content_passes(shared, tmp_path):
    d = tmp_path / "mine" / "gowalla"
    d.mkdir(parents=True)
    raw = gzip.decompress((shared / "gowalla" / "test.txt.gz").read_bytes())
    (d / "test.txt.gz").write_bytes(gzip.compress(raw, compresslevel=1))  # other bytes, same content
    shutil.copy(shared / "gowalla" / "train.txt.gz", d / "train.txt.gz")
    paths = locate("gowalla", tmp_path / "mine", allow_download=False)
    assert paths["test"] == d / "test.txt.gz"


def test_not_found_lists_folders_and_files(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SSMREC_DATA", str(empty))
    with pytest.raises(DataError) as e:
        locate("gowalla", allow_download=False)
    msg = str(e.value)
    assert str(empty / "gowalla") in msg
    assert str(tmp_path / "xdg-cache" / "ssmrec" / "gowalla") in msg
    assert "train.txt" in msg and "test.txt" in msg and "not found" in msg
    assert "kuandeng/LightGCN" in msg  # where to get them
    # load_dataset says the same, once
    with pytest.raises(DataError, match="Looked in"):
        load_dataset(DataConfig("gowalla", download=False))


def test_not_found_lists_alias_folders(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SSMREC_DATA", str(empty))
    with pytest.raises(DataError) as e:
        locate("ifashion", allow_download=False)
    msg = str(e.value)
    assert str(empty / "alibaba-ifashion") in msg and str(empty / "ifashion") in msg
    assert "ifashion.train" in msg and "ifashion.test" in msg


def test_alias_resolves(monkeypatch, tmp_path):
    assert get_spec("ifashion").name == "alibaba-ifashion"
    assert get_spec("alibaba-ifashion") is get_spec("ifashion")
    assert get_spec("Gowalla").name == "gowalla"
    # files are found in the alias folder
    d = tmp_path / "root" / "ifashion"
    d.mkdir(parents=True)
    (d / "ifashion.train").write_text("0,1\n")
    (d / "ifashion.test.gz").write_bytes(gzip.compress(b"0,2\n"))
    paths = locate("alibaba-ifashion", tmp_path / "root", allow_download=False, check=False)
    assert paths == {"train": d / "ifashion.train", "test": d / "ifashion.test.gz"}


def test_unknown_name_lists_registered():
    with pytest.raises(DataError) as e:
        get_spec("movielens-99")
    msg = str(e.value)
    assert "'movielens-99'" in msg
    for name in ("gowalla", "yelp2018", "amazon-book", "alibaba-ifashion"):
        assert name in msg
    with pytest.raises(DataError, match="registered: gowalla"):
        locate("movielens-99")


# ------------------------------------------------------------------------------------ download
def test_download_failure_message(monkeypatch, tmp_path, toy_spec):
    monkeypatch.setenv("SSMREC_DATA", str(tmp_path / "nowhere"))
    calls: list[str] = []
    monkeypatch.setattr(registry.urllib.request, "urlopen", fake_urlopen({}, calls))
    with pytest.raises(DataError) as e:
        locate("toy")
    msg = str(e.value)
    assert calls == [f.url for f in toy_spec.files]
    assert "Download failed" in msg and "no route to https://example.invalid/toy/train.txt" in msg
    assert str(tmp_path / "nowhere" / "toy") in msg and str(tmp_path / "nowhere" / "toy-alias") in msg
    cache = tmp_path / "xdg-cache" / "ssmrec" / "toy"
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written


def test_download_success_and_reuse(monkeypatch, tmp_path, toy_spec):
    monkeypatch.delenv("SSMREC_DATA", raising=False)
    calls: list[str] = []
    payloads = {toy_spec.files[0].url: TOY_TRAIN, toy_spec.files[1].url: TOY_TEST}
    monkeypatch.setattr(registry.urllib.request, "urlopen", fake_urlopen(payloads, calls))
    paths = locate("toy")
    cache = tmp_path / "xdg-cache" / "ssmrec" / "toy"
    assert paths == {"train": cache / "train.txt", "test": cache / "test.txt"}
    assert paths["train"].read_bytes() == TOY_TRAIN and paths["test"].read_bytes() == TOY_TEST
    assert sorted(p.name for p in cache.iterdir()) == ["test.txt", "train.txt"]  # no temp files
    assert len(calls) == 2
    # second time: found in the cache, no download
    monkeypatch.setattr(registry.urllib.request, "urlopen", fake_urlopen({}, calls))
    assert locate("toy") == paths and len(calls) == 2
    ds = load_dataset(DataConfig("toy"))
    assert ds.train.nnz == 5 and ds.test.nnz == 3 and ds.n_users == 3


def test_download_wrong_bytes_is_a_checksum_error_and_leaves_nothing(monkeypatch, tmp_path, toy_spec):
    monkeypatch.delenv("SSMREC_DATA", raising=False)
    calls: list[str] = []
    payloads = {toy_spec.files[0].url: TOY_TRAIN + b"3 1\n", toy_spec.files[1].url: TOY_TEST}
    monkeypatch.setattr(registry.urllib.request, "urlopen", fake_urlopen(payloads, calls))
    with pytest.raises(DataError) as e:
        locate("toy")
    msg = str(e.value)
    assert "checksum mismatch" in msg and toy_spec.files[0].url in msg
    cache = tmp_path / "xdg-cache" / "ssmrec" / "toy"
    assert list(cache.iterdir()) == []


def test_download_disabled_does_not_call_network(monkeypatch, tmp_path, toy_spec):
    monkeypatch.delenv("SSMREC_DATA", raising=False)
    with pytest.raises(DataError, match="not found") as e:  # the autouse guard would raise otherwise
        locate("toy", allow_download=False)
    assert "Download failed" not in str(e.value)


# ------------------------------------------------------------------------------------ real data
def test_load_real_gowalla(shared):
    ds = load_dataset(DataConfig("gowalla", download=False, split_seed=0), "holdout")
    assert (ds.n_users, ds.n_items) == (29_858, 40_981)
    assert ds.train.nnz + ds.valid.nnz == 810_128
    assert ds.test.nnz == 217_242
    assert ds.valid.nnz / 810_128 == pytest.approx(1 / 8, abs=0.005)
    keys = [ds.train.keys(), ds.valid.keys(), ds.test.keys()]
    assert np.intersect1d(keys[0], keys[1]).size == 0
    assert np.intersect1d(keys[0], keys[2]).size == 0
    assert np.intersect1d(keys[1], keys[2]).size == 0
    assert (ds.train.user_degree >= 1).all()  # every gowalla user keeps a training item
    assert ds.name == "gowalla" and "train.txt.gz" in ds.source


def test_ml100k_is_a_registered_single_file_with_checksums(shared, monkeypatch, tmp_path):
    spec = get_spec("movielens-100k")
    assert spec.name == "ml-100k" and spec.single_file
    p = locate("ml-100k", allow_download=False)["all"]
    assert registry.file_digest(p, "sha256") == spec.files[0].gz_sha256
    assert registry.file_digest(p, "sha256", decompress=True) == spec.files[0].sha256
    ds = load_dataset(DataConfig(dataset="ml-100k", positive_min=4, negative_max=2))
    by_path = load_dataset(DataConfig(dataset=str(p), positive_min=4, negative_max=2))
    assert ds.name == "ml-100k" and ds.train.fingerprint() == by_path.train.fingerprint()
    assert ds.dislikes["test"].nnz == by_path.dislikes["test"].nnz > 0
    # it is never downloaded (licence): without it, the error says where to put it and where it comes from
    monkeypatch.setenv("SSMREC_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(registry.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no network"))
    with pytest.raises(DataError, match=r"(?s)ml-100k.inter .*not found.*not downloadable.*RecBole 1.2.1"):
        load_dataset(DataConfig(dataset="ml-100k"))
