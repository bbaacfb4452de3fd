"""The benchmark datasets of the study: where they come from, how to find and verify them."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ssmrec.data.interactions import DataError

log = logging.getLogger(__name__)

LIGHTGCN = "https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data"
SGL = "https://raw.githubusercontent.com/wujcan/SGL-TensorFlow/main/dataset"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its canonical local name, upstream URL and checksums.

    Checksums are of the uncompressed file (``sha256``, else ``md5`` or the git blob SHA-1
    ``git_sha1`` when upstream publishes no sha256), plus ``gz_sha256`` of the gzipped copy
    that the project's data folder ships.
    """

    role: str
    filename: str
    url: str
    fmt: str  # "lightgcn" or "pairs"
    sha256: str | None = None
    md5: str | None = None
    git_sha1: str | None = None
    gz_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[RemoteFile, ...]
    aliases: tuple[str, ...] = ()
    paper_stats: tuple[int, int, int] | None = None  # users, items, interactions (Table 1)
    n_users: int | None = None
    n_items: int | None = None
    note: str = ""
    defaults: dict = field(default_factory=dict)  # the authors' settings, e.g. tau

    @property
    def folders(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def single_file(self) -> bool:
        """One file to split (role ``all``), like ``--dataset FILE``, rather than train/test files."""
        return [f.role for f in self.files] == ["all"]


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "gowalla",
            (
                RemoteFile("train", "train.txt", f"{LIGHTGCN}/gowalla/train.txt", "lightgcn",
                           sha256="7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
                           gz_sha256="61fb99c1e8bcbd8c4a0ec56a079d033a18985317589e52cc952767b49b2506a7"),
                RemoteFile("test", "test.txt", f"{LIGHTGCN}/gowalla/test.txt", "lightgcn",
                           sha256="099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
                           gz_sha256="23368b745faf7cf0201859230872db6ccf13e23cbaf0c844de53c94b6f8888ea"),
            ),
            paper_stats=(29_858, 40_981, 1_027_370),
            note="LightGCN's split (about 80/20 per user); identical to the SSM authors' files",
            defaults={"tau": 0.12, "reg": 1e-5, "layers": 1},
        ),
        DatasetSpec(
            "yelp2018",
            (
                RemoteFile("train", "train.txt", f"{LIGHTGCN}/yelp2018/train.txt", "lightgcn",
                           sha256="1e9568725a9e833d0ac3bae01c94cd95367f73b3bb6104fd26b5f65ea5054093",
                           gz_sha256="9b69e51c511d3552ba88a05023f6fcfdf7c1a2d4ab64d3b67cea126d6d398572"),
                RemoteFile("test", "test.txt", f"{LIGHTGCN}/yelp2018/test.txt", "lightgcn",
                           sha256="9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe",
                           gz_sha256="d5eb19d4311a3d48f49534bfbd9f5cfefc4d4c684bff7754648478f3aef69b41"),
            ),
            paper_stats=(31_831, 40_841, 1_666_869),
            note="LightGCN's Yelp2018 (31,668 users / 38,048 items), the files the SSM authors "
                 "ship; the paper's Table 1 quotes the NGCF version",
            defaults={"tau": 0.14, "reg": 1e-5, "layers": 1},
        ),
        DatasetSpec(
            "amazon-book",
            (
                RemoteFile("train", "train.txt", f"{LIGHTGCN}/amazon-book/train.txt", "lightgcn",
                           md5="c916ecac04ca72300a016228258b41ed",
                           git_sha1="6ef55159c5f1fd7f6d86eb9ff290d0cc2854ac99"),
                RemoteFile("test", "test.txt", f"{LIGHTGCN}/amazon-book/test.txt", "lightgcn",
                           sha256="6250754994dd953b91b48dccdd77a73f318e0634b4757c2abfcc9d33a54ab0f5",
                           gz_sha256="cffdbab4f2f65d2071c0dc001c03e1e72edc03865343ae6b28ae96fc8e5a6c2d"),
            ),
            paper_stats=(52_643, 91_599, 2_984_108),
            n_users=52_643, n_items=91_599,
        ),
        DatasetSpec(
            "alibaba-ifashion",
            (
                RemoteFile("train", "ifashion.train", f"{SGL}/ifashion.train", "pairs",
                           git_sha1="1f04345e7fbabb9f2704aa6701e7fa4e7207ae5e"),
                RemoteFile("test", "ifashion.test", f"{SGL}/ifashion.test", "pairs",
                           sha256="78cb457e8477730e2af62655deed010062826a70c6f0b0c401afca3fbf38c7a9",
                           gz_sha256="292f87e7d45c28ec5259e8c6325234c449d66491272909ace53136bb2e390415"),
            ),
            aliases=("ifashion",),
            paper_stats=(300_000, 81_614, 1_607_813),
            n_users=300_000, n_items=81_614,
            note="one 'user,item' pair per line (the SGL/SSM authors' format)",
        ),
        DatasetSpec(
            "ml-100k",
            (
                # RecBole's atomic-file conversion of GroupLens MovieLens-100K (u.data with a header),
                # as RecBole 1.2.1's wheel ships it; no download publishes a checksum of this file
                RemoteFile("all", "ml-100k.inter", "", "recbole",
                           sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                           gz_sha256="deb10cf94779ca27e39881eb0e0bd0474e6f72463b337cc0dc5ad7e0d7ca0dc4"),
            ),
            aliases=("movielens-100k", "ml100k"),
            note="MovieLens-100K, 100,000 ratings 1-5 by 943 users on 1,682 items, one file split by --ratios; "
                 "explicit feedback with --positive-min / --negative-max. GroupLens's licence forbids "
                 "redistribution, so it is not downloaded: put ml-100k.inter(.gz) (RecBole 1.2.1's "
                 "recbole/dataset_example/ml-100k/ml-100k.inter, or GroupLens's ml-100k.zip u.data with the "
                 "header 'user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float') in ml-100k/",
        ),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    key = name.strip().lower()
    for spec in REGISTRY.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise DataError(f"unknown dataset {name!r}; registered: {', '.join(REGISTRY)} "
                    "(or pass a folder holding train.txt/test.txt, or a single interaction file)")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ssmrec"


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where datasets are looked for, in order: ``data_dir``, ``$SSMREC_DATA``, the user cache."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("SSMREC_DATA"):
        roots.append(Path(os.environ["SSMREC_DATA"]))
    roots.append(cache_dir())
    unique: list[Path] = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def find_local(spec: DatasetSpec, roots: list[Path]) -> dict[str, Path | None]:
    """The first root whose dataset folder holds each file (plain or ``.gz``)."""
    found: dict[str, Path | None] = {f.role: None for f in spec.files}
    for root in roots:
        for folder in spec.folders:
            d = root / folder
            for f in spec.files:
                if found[f.role] is None:
                    for cand in (d / f.filename, d / f"{f.filename}.gz"):
                        if cand.is_file():
                            found[f.role] = cand
                            break
    return found


def file_digest(path: Path, algo: str, *, decompress: bool = False) -> str:
    opener = gzip.open if decompress else open
    if algo == "git_sha1":
        with opener(path, "rb") as f:
            data = f.read()
        h = hashlib.sha1(b"blob %d\0" % len(data))
        h.update(data)
        return h.hexdigest()
    h = hashlib.new(algo)
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, remote: RemoteFile, *, label: str | None = None) -> None:
    """Check a file against the registry's checksum; a :class:`DataError` on mismatch.

    ``label`` names the file in messages (default: its path).
    """
    label = label or str(path)
    gz = path.suffix == ".gz"
    checks = []
    if gz and remote.gz_sha256:
        checks.append(("sha256", remote.gz_sha256, False))
    # the checksum of the content: for a .gz that is not byte-identical to the shipped one (gzipped
    # by the user with other settings), the uncompressed content is what must match
    raw = next(((a, getattr(remote, a)) for a in ("sha256", "md5", "git_sha1") if getattr(remote, a)), None)
    if raw is not None:
        checks.append((raw[0], raw[1], gz))
    if not checks:
        log.warning("%s: no checksum registered, not verified", label)
        return
    mismatch = []
    for algo, expected, decompress in checks:
        try:
            actual = file_digest(path, algo, decompress=decompress)
        except (OSError, EOFError, zlib.error) as e:
            if mismatch:  # the .gz checksum already failed: report that, with the reason
                mismatch.append(f"and the content cannot be decompressed: {e}")
                break
            raise DataError(f"{label}: cannot be read for checksum, the file is truncated or corrupt "
                            f"({e}); replace it with {remote.url}") from None
        if actual == expected:
            return
        what = f"{algo} of the uncompressed content" if decompress else algo
        mismatch.append(f"{what} is {actual}, the registry expects {expected}")
    raise DataError(
        f"{label}: checksum mismatch ({'; '.join(mismatch)}). "
        f"The file is corrupt or a different version; replace it with {remote.url}"
    )


def download(remote: RemoteFile, dest_dir: Path) -> Path:
    """Fetch one file into ``dest_dir`` atomically and verify it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.filename
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=60) as r:
            shutil.copyfileobj(r, out)
        try:
            verify(Path(tmp), remote, label=f"{remote.url} (downloaded for {dest})")
        except DataError as e:
            raise DataError(f"{e}. Nothing was saved.") from None
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def locate(
    name: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True,
    check: bool = True,
) -> dict[str, Path]:
    """Find (or download into the cache) every file of a registered dataset, verified.

    Raises:
        DataError: one message that lists where the files were looked for and what to put there.
    """
    spec = get_spec(name)
    roots = search_roots(data_dir)
    found = find_local(spec, roots)
    missing = [f for f in spec.files if found[f.role] is None]
    errors = []
    if missing and allow_download:
        for f in missing:
            if not f.url:  # nothing to download from (a licence, or no checksum published)
                errors.append(f"{f.filename}: not downloadable. {spec.note}")
                continue
            try:
                found[f.role] = download(f, cache_dir() / spec.name)
            except DataError:
                raise
            except Exception as e:  # network errors come in many types
                errors.append(f"{f.url}: {e}")
    missing = [f for f in spec.files if found[f.role] is None]
    if missing:
        where = "\n".join(f"  {r / folder}/" for r in roots for folder in spec.folders)
        names = ", ".join(f"{f.filename} (or {f.filename}.gz)" for f in missing)
        sources = "\n".join(f"  {f.filename}: {f.url or 'no download (see below)'}" for f in missing)
        msg = (f"dataset {spec.name!r}: {names} not found. Looked in:\n{where}\n"
               f"Put the files in one of these folders (or point --data-dir / SSMREC_DATA at a "
               f"folder holding {spec.name}/). Upstream sources:\n{sources}")
        if errors:
            msg += "\nDownload failed:\n" + "\n".join(f"  {e}" for e in errors)
        raise DataError(msg)
    paths = {role: p for role, p in found.items() if p is not None}
    if check:
        remotes = {f.role: f for f in spec.files}
        for role, p in paths.items():
            verify(p, remotes[role])
    return paths


def status(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Where each registered dataset is found (no download, no verification)."""
    roots = search_roots(data_dir)
    rows = []
    for spec in REGISTRY.values():
        found = find_local(spec, roots)
        rows.append({"name": spec.name, "files": found, "spec": spec})
    return rows
