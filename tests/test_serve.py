"""`ssmrec serve`: the HTTP answers equal `ssmrec recommend`'s, errors are clear JSON 4xx, and the
cold-start policy (unknown id: 404, or the popular items with fallback=popular) holds."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ssmrec.cli import main
from ssmrec.data import write_lightgcn
from ssmrec.serve import load_export
from ssmrec.serve.app import create_app
from ssmrec.serve.index import build_index


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    """A tiny trained run (MF, one epoch) with its export/."""
    faiss.omp_set_num_threads(1)
    root = tmp_path_factory.mktemp("serve")
    data = root / "tiny"
    data.mkdir()
    write_lightgcn(tiny.train, data / "train.txt")
    write_lightgcn(tiny.test, data / "test.txt.gz")
    out = root / "run"
    assert main(["train", "--dataset", str(data), "--model", "mf", "--dim", "8", "--epochs", "1", "--no-progress",
                 "--threads", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(run / "export"))


def cli_recommend(run, user, k, capsys, similarity=None) -> tuple[list[int], list[float]]:
    capsys.readouterr()
    extra = ["--similarity", similarity] if similarity else []
    assert main(["recommend", str(run), "--user", str(user), "-k", str(k), *extra]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    return [int(r[1]) for r in rows], [float(r[2]) for r in rows]


def test_served_lists_equal_ssmrec_recommend(run, client, capsys):
    ex = load_export(run / "export")
    users = [str(u) for u in ex.user_ids[[0, 3, 17, 150, 299]].tolist()]
    for user in users:
        items, scores = cli_recommend(run, user, 10, capsys)
        r = client.get("/recommend", params={"user": user, "k": 10})
        assert r.status_code == 200
        body = r.json()
        assert body["user"] == int(user) and body["source"] == "model"
        assert body["items"] == items
        np.testing.assert_allclose(body["scores"], scores, atol=2e-6)
        seen = set(ex.item_ids[ex.seen(ex.user_index(user))].tolist())
        assert not seen & set(body["items"])
    # the batch endpoint answers the same, in the order asked
    r = client.post("/recommend", json={"users": users[::-1], "k": 10})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["user"] for x in results] == [int(u) for u in users[::-1]]
    for x in results:
        assert x["items"] == client.get("/recommend", params={"user": x["user"], "k": 10}).json()["items"]
    # the index metric follows the similarity asked: ip here, against `ssmrec recommend --similarity ip`
    ip = build_index(ex, "exact", similarity="ip")
    items, _ = cli_recommend(run, users[1], 10, capsys, similarity="ip")
    got = ip.recommend([ex.user_index(users[1])], 10)[0][0]
    assert ex.item_ids[got].tolist() == items


def test_healthz(client, run):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["model"] == "mf" and h["index"] == "exact"
    assert (h["n_users"], h["n_items"]) == (300, 200) and h["similarity"] in ("ip", "cos")


def test_unknown_user_is_404_unless_fallback_popular(client, run):
    r = client.get("/recommend", params={"user": "99999"})
    assert r.status_code == 404
    assert "unknown user id '99999'" in r.json()["error"] and "fallback=popular" in r.json()["error"]
    r = client.get("/recommend", params={"user": "99999", "k": 5, "fallback": "popular"})
    assert r.status_code == 200
    body = r.json()
    ex = load_export(run / "export")
    top, degree = ex.popular(5)
    assert body == {"user": "99999", "items": ex.item_ids[top].tolist(), "scores": degree.tolist(),
                    "source": "popular"}
    # a batch: 404 naming every unknown id; with the fallback, each gets its own source
    r = client.post("/recommend", json={"users": [0, "nobody", "x9"], "k": 3})
    assert r.status_code == 404 and r.json()["unknown"] == ["nobody", "x9"]
    r = client.post("/recommend", json={"users": [0, "nobody"], "k": 3, "fallback": "popular"})
    assert [x["source"] for x in r.json()["results"]] == ["model", "popular"]


def test_bad_k_and_malformed_requests_are_clear_422s(client):
    cases = [
        ("get", {"user": "0", "k": 0}, "k must be an integer from 1 to 200"),
        ("get", {"user": "0", "k": 201}, "k must be an integer from 1 to 200"),
        ("get", {"user": "0", "k": "abc"}, "k: Input should be a valid integer"),
        ("get", {"user": "0", "k": "2.5"}, "k: Input should be a valid integer"),
        ("get", {"k": 5}, "user: Field required"),
        ("get", {"user": "0", "fallback": "random"}, "fallback: Input should be 'none' or 'popular'"),
    ]
    for _, params, message in cases:
        r = client.get("/recommend", params=params)
        assert r.status_code == 422 and message in r.json()["error"], (params, r.json())
    bodies = [
        ({"users": [0], "k": 0}, "k must be an integer"),
        ({"users": [0], "k": 2.5}, "k: Input should be a valid integer"),
        ({"users": [0], "k": "5"}, "k: Input should be a valid integer"),
        ({"users": []}, "users: List should have at least 1 item"),
        ({"users": "0"}, "users: Input should be a valid list"),
        ({"k": 5}, "users: Field required"),
        ({"users": [0], "top": 5}, "top: Extra inputs are not permitted"),
        ([0, 1], "Input should be a valid dictionary"),
    ]
    for body, message in bodies:
        r = client.post("/recommend", json=body)
        assert r.status_code == 422 and message in r.json()["error"], (body, r.json())
    r = client.post("/recommend", content=b'{"users": [0', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in r.json()["error"]


def test_a_known_user_with_no_history_is_served_by_the_model(run, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(run / "export", export)
    ex = load_export(export, mmap=False)
    counts = np.diff(ex.seen_indptr)
    counts[5] = 0  # user row 5 has seen nothing
    keep = np.ones(ex.seen_indices.size, bool)
    keep[ex.seen_indptr[5]:ex.seen_indptr[6]] = False
    np.save(export / "seen_indptr.npy", np.concatenate([[0], np.cumsum(counts)]).astype(ex.seen_indptr.dtype))
    np.save(export / "seen_indices.npy", ex.seen_indices[keep])
    c = TestClient(create_app(export, "hnsw", ef_search=64))
    body = c.get("/recommend", params={"user": str(ex.user_ids[5]), "k": 7}).json()
    assert body["source"] == "model"
    want, _ = ex.recommend([5], 7, exclude_seen=False)
    assert body["items"] == ex.item_ids[want[0]].tolist()
    assert c.get("/healthz").json()["knobs"]["ef_search"] == 64


def test_ssmrec_serve_command(run, monkeypatch, capsys):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.update(app=app, host=host, port=port))
    assert main(["serve", str(run), "--index", "ivf", "--nprobe", "4", "--port", "8123", "--threads", "1"]) == 0
    assert started["port"] == 8123 and started["host"] == "127.0.0.1"
    assert "ivf index" in capsys.readouterr().out
    h = TestClient(started["app"]).get("/healthz").json()  # a run directory serves its export/
    assert h["index"] == "ivf" and h["knobs"]["nprobe"] == 4
    assert main(["serve", str(run), "--nprobe", "4"]) == 2
    assert "unknown knob(s) nprobe for the exact index" in capsys.readouterr().err
    assert main(["serve", str(run / "nowhere")]) == 2
    assert "not an export" in capsys.readouterr().err
    assert json.loads((run / "export" / "manifest.json").read_text())["model"] == "mf"
