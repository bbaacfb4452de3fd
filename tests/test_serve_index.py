"""faiss indexes over an export: the exact one answers exactly as Export.recommend, the metric is the
export's inner product (never L2), seen items never come back, HNSW keeps its recall, and nothing
under ssmrec.serve loads torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from ssmrec.serve.export import Export
from ssmrec.serve.index import (
    KINDS,
    IndexConfigError,
    ItemIndex,
    build_index,
    default_ef_search,
    default_nlist,
    open_index,
    saved_path,
)

N_USERS, N_ITEMS, DIM = 400, 2000, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    faiss.omp_set_num_threads(1)


def random_export(similarity: str, seed: int = 0, n_items: int = N_ITEMS, max_seen: int = 300) -> Export:
    """Random float factors (no ties), item norms spread over [0.3, 3] so ip and cos rank
    differently, and random seen sets including an empty one and a nearly full one."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((N_USERS, DIM)).astype(np.float32)
    items = rng.standard_normal((n_items, DIM)).astype(np.float32)
    items *= rng.uniform(0.3, 3.0, (n_items, 1)).astype(np.float32)
    counts = rng.integers(0, max_seen, N_USERS)
    counts[0], counts[1] = 0, n_items - 3  # no history; all but three items seen
    seen = [np.sort(rng.choice(n_items, c, replace=False)) for c in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    manifest = {"format": "ssmrec-export", "similarity": similarity, "n_users": N_USERS, "n_items": n_items,
                "dim": DIM, "model": "random", "loss": "none"}
    return Export(Path(f"random-{similarity}"), manifest, users, items, np.arange(N_USERS) + 1000,
                  np.arange(n_items) + 5000, indptr, np.concatenate(seen).astype(np.int64),
                  rng.integers(0, 50, n_items))


def assert_same_lists(got: tuple, want: tuple, ex: Export, users: np.ndarray, similarity: str | None = None):
    """Equal lists, except that two items whose scores agree to float32 rounding (faiss's BLAS
    and numpy's sum in different orders) may come in either order: then each returned item's
    true score must equal the expected score at its position."""
    (got_items, got_scores), (want_items, want_scores) = got, want
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    differ = got_items != want_items
    assert differ.mean() < 1e-3, f"{differ.sum()} of {differ.size} positions differ"
    for r, c in zip(*np.nonzero(differ)):
        u, i = users[r], got_items[r, c]
        true = ex.vectors("user", similarity)[u] @ ex.vectors("item", similarity)[i]
        assert i >= 0 and abs(true - want_scores[r, c]) < 1e-6, (u, c, i, want_items[r, c])


@pytest.mark.parametrize("similarity", ["ip", "cos"])
def test_exact_index_answers_exactly_as_the_export(similarity):
    ex = random_export(similarity)
    idx = build_index(ex, "exact")
    users = np.arange(N_USERS)
    for k in (1, 20, 57):
        assert_same_lists(idx.recommend(users, k, batch_size=64), ex.recommend(users, k), ex, users)
    # without exclusion, and one user at a time
    assert_same_lists(idx.recommend(users[:30], 20, exclude_seen=False),
                      ex.recommend(users[:30], 20, exclude_seen=False), ex, users[:30])
    for u in (0, 1, 7):
        assert_same_lists(idx.recommend([u], 20), ex.recommend([u], 20), ex, np.array([u]))


def test_the_metric_is_the_exports_inner_product_never_l2():
    ip, cos = random_export("ip"), random_export("cos")
    users = np.arange(50)
    by_ip = build_index(ip, "exact").recommend(users, 20)[0]
    by_cos = build_index(cos, "exact").recommend(users, 20)[0]
    assert (by_ip != by_cos).any()  # the two similarities rank differently on this data
    assert_same_lists(build_index(ip, "exact").recommend(users, 20), ip.recommend(users, 20, similarity="ip"),
                      ip, users, "ip")
    assert_same_lists(build_index(cos, "exact").recommend(users, 20), ip.recommend(users, 20, similarity="cos"),
                      ip, users, "cos")
    # an explicit similarity overrides the export's
    assert_same_lists(build_index(ip, "exact", similarity="cos").recommend(users, 20),
                      ip.recommend(users, 20, similarity="cos"), ip, users, "cos")
    # cos scores are cosines
    _, s = build_index(cos, "exact").recommend(users, 5)
    assert np.all(np.abs(s[np.isfinite(s)]) <= 1 + 1e-5)
    for kind in KINDS:
        idx = build_index(cos, kind, **({"nlist": 8} if kind in ("ivf", "ivfpq") else {}))
        assert idx.index.metric_type == faiss.METRIC_INNER_PRODUCT, kind
    l2 = faiss.IndexFlatL2(DIM)
    l2.add(np.ascontiguousarray(ip.item_factors))
    _, by_l2 = l2.search(np.ascontiguousarray(ip.user_factors[users]), 20)
    assert (by_l2 != by_ip).any()  # what an L2 index would have got wrong


@pytest.mark.parametrize("kind,knobs", [("exact", {}), ("hnsw", {"ef_search": 32}),
                                        ("ivf", {"nlist": 16, "nprobe": 2}),
                                        ("ivfpq", {"nlist": 16, "nprobe": 2, "pq": 4, "refine": 3})])
def test_seen_items_are_never_returned(kind, knobs):
    ex = random_export("ip", seed=3)
    items, scores = build_index(ex, kind, **knobs).recommend(np.arange(N_USERS), 20, batch_size=100)
    for u in range(N_USERS):
        got = items[u][items[u] >= 0]
        assert not np.isin(got, ex.seen(u)).any()
        assert len(set(got.tolist())) == got.size
        assert np.all(np.diff(scores[u][items[u] >= 0]) <= 0)
    # the user who has seen all but three items gets exactly those three, padded
    rest = np.setdiff1d(np.arange(N_ITEMS), ex.seen(1))
    if kind == "exact":
        assert sorted(items[1][:3].tolist()) == rest.tolist()
        assert (items[1][3:] == -1).all() and np.isneginf(scores[1][3:]).all()
    else:
        assert set(items[1][items[1] >= 0].tolist()) <= set(rest.tolist())


@pytest.mark.parametrize("kind,knobs", [("exact", {}), ("hnsw", {"ef_search": 40}),
                                        ("ivf", {"nlist": 16, "nprobe": 3}),
                                        ("ivfpq", {"nlist": 16, "nprobe": 3, "pq": 4, "refine": 4})])
def test_one_user_at_a_time_batched_or_threaded_the_answer_is_the_same(kind, knobs):
    """Small batches exclude seen items inside faiss (IDSelector), large ones over-fetch and
    filter (HNSW always uses the selector, from a thread pool when faiss has threads)."""
    ex = random_export("ip", seed=4)
    idx = build_index(ex, kind, **knobs)
    users = np.arange(120)
    batched = idx.recommend(users, 15, batch_size=50)
    alone = [idx.recommend([u], 15) for u in users]
    np.testing.assert_array_equal(np.concatenate([a[0] for a in alone]), batched[0])
    np.testing.assert_allclose(np.concatenate([a[1] for a in alone]), batched[1], rtol=1e-5, atol=1e-6)
    faiss.omp_set_num_threads(2)
    try:
        np.testing.assert_array_equal(idx.recommend(users, 15)[0], batched[0])
    finally:
        faiss.omp_set_num_threads(1)


def test_hnsw_recall_against_exact_on_random_data():
    ex = random_export("cos", seed=5, max_seen=50)
    users = np.arange(N_USERS)
    exact = build_index(ex, "exact").recommend(users, 20)[0]
    hnsw = build_index(ex, "hnsw", m=16, ef_construction=100, ef_search=64)
    approx = hnsw.recommend(users, 20)[0]
    recall = np.mean([np.isin(a, e).mean() for a, e in zip(approx, exact)])
    assert recall >= 0.95, recall
    hnsw.set_knobs(ef_search=256)
    assert hnsw.index.hnsw.efSearch == 256


def short_index_case(kind: str):
    """An export and an approximate index that really come back short: many seen items, a
    sparse graph searched with a tiny candidate list (HNSW), or one list visited of many (IVF)."""
    ex = random_export("ip", seed=6, max_seen=1900)
    knobs = {"m": 4, "ef_construction": 16, "ef_search": 8} if kind == "hnsw" else {"nlist": 64, "nprobe": 1}
    if kind == "ivfpq":
        knobs.update(pq=4, refine=2)
    return ex, build_index(ex, kind, **knobs)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_an_approximate_index_that_comes_back_short_falls_back_to_exact(kind):
    ex, idx = short_index_case(kind)
    users = np.arange(N_USERS)
    left = N_ITEMS - np.diff(ex.seen_indptr)
    for k in (20, 100):
        raw = idx.recommend(users, k, complete=False)[0]
        short = (raw >= 0).sum(axis=1) < np.minimum(k, left)
        assert short.sum() >= 10, short.sum()  # the case is real: the index alone leaves lists short
        before = idx.exact_fallbacks
        items, scores = idx.recommend(users, k)
        assert idx.exact_fallbacks - before == short.sum()
        np.testing.assert_array_equal((items >= 0).sum(axis=1), np.minimum(k, left))  # never short
        # the short users' lists are the exact ones; the others are the index's own
        assert_same_lists((items[short], scores[short]), ex.recommend(users[short], k), ex, users[short])
        np.testing.assert_array_equal(items[~short], raw[~short])
        for u in np.flatnonzero(short)[:5]:  # one at a time too (the IDSelector path)
            np.testing.assert_array_equal(idx.recommend([u], k)[0][0], items[u])
    # the user who has seen all but three items gets exactly those three
    assert sorted(idx.recommend([1], 20)[0][0][:3].tolist()) == np.setdiff1d(np.arange(N_ITEMS), ex.seen(1)).tolist()


def test_ivf_visiting_every_list_is_exact():
    ex = random_export("ip", seed=2)
    idx = build_index(ex, "ivf", nlist=20, nprobe=20)
    users = np.arange(100)
    assert_same_lists(idx.recommend(users, 20), ex.recommend(users, 20), ex, users)
    assert idx.set_knobs(nprobe=1000).index.nprobe == 20  # capped at nlist


def test_ivfpq_rescores_its_candidates_exactly_with_the_exports_vectors():
    """IVF-PQ ranks by approximate (PQ) scores, then re-scores refine x k candidates with the
    export's own vectors: the scores returned are the exact inner products, and with every list
    visited and every item a candidate the lists are the exact ones."""
    ex = random_export("ip", seed=8, max_seen=50)
    users = np.arange(2, 62)  # users 0 and 1: no history, all but three items seen
    idx = build_index(ex, "ivfpq", nlist=8, pq=4, nprobe=2, refine=3)
    items, scores = idx.recommend(users, 10)
    true = np.einsum("ud,ukd->uk", ex.user_factors[users], ex.item_factors[items])
    np.testing.assert_allclose(scores, true, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    raw = idx.set_knobs(refine=1).recommend(users, 10)[1]  # PQ's own scores: not the exact ones
    assert not np.allclose(raw, np.einsum("ud,ukd->uk", ex.user_factors[users],
                                           ex.item_factors[idx.recommend(users, 10)[0]]), atol=1e-3)
    idx.set_knobs(nprobe=8, refine=N_ITEMS // 10)
    assert_same_lists(idx.recommend(users, 10), ex.recommend(users, 10), ex, users)
    assert_same_lists(idx.recommend(users[:3], 10), ex.recommend(users[:3], 10), ex, users[:3])  # selector path


def test_sizes_for_large_catalogues():
    assert default_nlist(2_000_000) == 5657 and default_nlist(40_000) == 800 and default_nlist(1) == 4
    ex = random_export("ip", seed=9)
    idx = build_index(ex, "ivfpq")
    assert idx.knobs["nlist"] == default_nlist(N_ITEMS) and idx.knobs["pq"] == DIM // 2
    assert default_ef_search(N_ITEMS) == 128 and default_ef_search(2_000_000) == 1024
    assert build_index(ex, "hnsw").knobs["ef_search"] == 128 and idx.knobs["nprobe"] == 96
    for kind in ("exact", "hnsw", "ivfpq"):
        one = build_index(ex, kind, **({"nlist": 8} if kind == "ivfpq" else {}))
        assert one.nbytes == faiss.serialize_index(one.index).nbytes  # counted, not copied
    assert build_index(ex, "ivfpq", nlist=8).nbytes < build_index(ex, "exact").nbytes / 2  # codes, not vectors


def exported(tmp_path: Path, similarity: str = "ip", **kw) -> Export:
    """A random export living in a folder (saved indexes go to <export>/index/)."""
    ex = random_export(similarity, **kw)
    ex.path = tmp_path / "export"
    ex.path.mkdir()
    return ex


def test_open_index_saves_with_the_export_and_loads_it_back(tmp_path):
    ex = exported(tmp_path)
    users = np.arange(30)
    first = open_index(ex, "hnsw", m=8, ef_construction=40, save=True)
    assert saved_path(ex, "hnsw") == tmp_path / "export" / "index" / "hnsw-ip.faiss"
    assert saved_path(ex, "hnsw").is_file() and first.source.startswith("built, saved to")
    again = open_index(ex, "hnsw", ef_search=77)  # build knobs not given: the saved index's
    assert again.source == f"loaded {saved_path(ex, 'hnsw')}"
    assert again.knobs == {"m": 8, "ef_construction": 40, "ef_search": 77} and again.index.hnsw.efSearch == 77
    np.testing.assert_array_equal(again.set_knobs(ef_search=128).recommend(users, 10)[0],
                                  first.recommend(users, 10)[0])
    assert open_index(ex, "hnsw", m=8).source.startswith("loaded")
    other = open_index(ex, "hnsw", m=16)  # built otherwise: rebuilt, the saved file left alone
    assert other.knobs["m"] == 16 and "was built with m=8" in other.source
    assert ItemIndex.load(saved_path(ex, "hnsw"), ex).knobs["m"] == 8
    assert open_index(ex, "hnsw", similarity="cos").source == "built"  # another similarity, another file
    assert open_index(ex, "ivf", nlist=8).source == "built"  # nothing saved for that kind
    with pytest.raises(IndexConfigError, match="was built with m=8"):
        open_index(ex, "hnsw", m=16, path=saved_path(ex, "hnsw"))  # a named file must be what is asked
    # an index saved for another export is not used
    ex2 = random_export("ip", n_items=N_ITEMS - 1)
    ex2.path = ex.path
    assert "another export" in open_index(ex2, "hnsw").source
    with pytest.raises(IndexConfigError, match="another export"):
        open_index(ex2, "hnsw", path=saved_path(ex, "hnsw"))


def test_the_app_serves_a_given_or_saved_index(tmp_path):
    from fastapi.testclient import TestClient

    from ssmrec.serve.app import create_app

    ex = exported(tmp_path, "ip", seed=10)
    idx = open_index(ex, "ivfpq", nlist=8, pq=4, save=True)
    client = TestClient(create_app(ex, "ivfpq", nprobe=8))
    health = client.get("/healthz").json()
    assert health["index"] == "ivfpq" and health["index_source"].startswith("loaded")
    assert health["knobs"]["nprobe"] == 8 and health["knobs"]["pq"] == 4
    got = client.get("/recommend", params={"user": int(ex.user_ids[5]), "k": 7}).json()["items"]
    assert got == ex.item_ids[idx.set_knobs(nprobe=8).recommend([5], 7)[0][0]].tolist()
    given = TestClient(create_app(ex, idx))  # an index built or loaded by the caller
    assert given.get("/healthz").json()["index_source"] == idx.source
    assert given.get("/recommend", params={"user": int(ex.user_ids[5]), "k": 7}).json()["items"] == got
    with pytest.raises(IndexConfigError, match="takes no similarity, knobs"):
        create_app(ex, idx, nprobe=3)


def test_bad_kinds_and_knobs_are_refused():
    ex = random_export("ip")
    with pytest.raises(IndexConfigError, match="unknown index kind 'annoy'"):
        build_index(ex, "annoy")
    with pytest.raises(IndexConfigError, match="unknown knob.*nprobe for the hnsw index"):
        build_index(ex, "hnsw", nprobe=3)
    with pytest.raises(IndexConfigError, match="ef_search must be a positive integer"):
        build_index(ex, "hnsw", ef_search=0)
    with pytest.raises(IndexConfigError, match="similarity must be"):
        build_index(ex, "exact", similarity="l2")
    with pytest.raises(IndexConfigError, match="ef_search does not apply to the exact index"):
        build_index(ex, "exact").set_knobs(ef_search=10)
    with pytest.raises(IndexConfigError, match="k must be a positive integer"):
        build_index(ex, "exact").recommend([0], 0)
    assert build_index(ex, "hnsw", M=8, efSearch=40).index.hnsw.efSearch == 40  # faiss's names too
    with pytest.raises(IndexConfigError, match="pq must divide the dimension 16"):
        build_index(ex, "ivfpq", nlist=4, pq=3)
    with pytest.raises(IndexConfigError, match="refine does not apply to the ivf index"):
        build_index(ex, "ivf", nlist=4).set_knobs(refine=2)
    with pytest.raises(IndexConfigError, match="unknown knob.*refine for the hnsw index"):
        build_index(ex, "hnsw", refine=2)


def test_save_and_load(tmp_path):
    ex = random_export("cos")
    idx = build_index(ex, "hnsw", m=8, ef_search=50)
    path = idx.save(tmp_path / "items.faiss")
    back = ItemIndex.load(path, ex)
    assert (back.kind, back.similarity, back.knobs) == ("hnsw", "cos", idx.knobs)
    np.testing.assert_array_equal(back.recommend(np.arange(20), 10)[0], idx.recommend(np.arange(20), 10)[0])
    with pytest.raises(IndexConfigError, match="built from another export"):
        ItemIndex.load(path, random_export("cos", n_items=N_ITEMS - 1))


def test_serving_imports_neither_torch_nor_training_code():
    code = ("import sys, ssmrec.serve, ssmrec.serve.export, ssmrec.serve.index, ssmrec.serve.app; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'ssmrec.train', "
            "'ssmrec.models', 'ssmrec.data'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
