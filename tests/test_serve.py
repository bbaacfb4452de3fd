"""`ssmrec serve`: the HTTP answers equal `ssmrec recommend`'s, errors are clear JSON 4xx of one
shape that never echo the request, the work per request is bounded, ids come back of one type, an
approximate index is never silently short, and the cold-start policy (unknown id: 404, or the
popular items with fallback=popular) holds."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_serve_index import N_ITEMS, N_USERS, random_export, short_index_case

from ssmrec.cli import main
from ssmrec.data import write_lightgcn
from ssmrec.serve import load_export
from ssmrec.serve.app import LIMIT_ENV, LIMITS, LimitError, create_app
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
    assert "unknown user id 99999:" in r.json()["error"] and "fallback=popular" in r.json()["error"]
    r = client.get("/recommend", params={"user": "99999", "k": 5, "fallback": "popular"})
    assert r.status_code == 200
    body = r.json()
    ex = load_export(run / "export")
    top, degree = ex.popular(5)
    assert body == {"user": 99999, "items": ex.item_ids[top].tolist(), "scores": degree.tolist(),
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
    assert main(["serve", str(run / "nowhere")]) == 2  # no such folder
    assert "nowhere" in capsys.readouterr().err
    (run / "empty").mkdir(exist_ok=True)
    assert main(["serve", str(run / "empty")]) == 2  # a folder, but not an export
    assert "not an export" in capsys.readouterr().err
    assert json.loads((run / "export" / "manifest.json").read_text())["model"] == "mf"


def test_ssmrec_serve_sets_the_limits_per_request(run, monkeypatch, capsys):
    """--max-k, --max-batch, --max-results, --max-body reach create_app; a limit not given is its
    environment variable's, else the default; nonsense is refused before anything is loaded."""
    import uvicorn

    from ssmrec.cli.serve import LIMIT_FLAGS, LIMIT_PREFIX

    assert {name: default for name, (_, default) in LIMIT_FLAGS.items()} == LIMITS
    assert all(LIMIT_PREFIX + name.upper() == LIMIT_ENV[name] for name in LIMITS)
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.update(app=app))
    monkeypatch.setenv("SSMREC_SERVE_MAX_BODY", "5000")
    assert main(["serve", str(run), "--max-k", "7", "--max-batch", "3", "--max-results", "15"]) == 0
    c = TestClient(started["app"])
    assert c.get("/healthz").json()["limits"] == {"max_k": 7, "max_batch": 3, "max_results": 15, "max_body": 5000}
    assert_error(c.get("/recommend", params={"user": 1, "k": 8}), 422, "from 1 to 7 (this server's max_k")
    assert_error(c.post("/recommend", json={"users": [1, 2, 3], "k": 6}), 413, "3 x 6 = 18")
    monkeypatch.delenv("SSMREC_SERVE_MAX_BODY")
    assert main(["serve", str(run)]) == 0
    assert TestClient(started["app"]).get("/healthz").json()["limits"] == LIMITS
    capsys.readouterr()
    assert main(["serve", str(run), "--max-results", "0"]) == 2
    assert "ssmrec serve: error: --max-results must be positive, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-k N" in text and "(default: $SSMREC_SERVE_MAX_BODY, else 1,048,576)" in text


def test_ssmrec_serve_offers_ivfpq_with_its_knobs(run, monkeypatch, capsys):
    """--index ivfpq is offered; on a catalogue too small to train its 256-centroid codebooks it is
    refused with a message (not faiss's exception); a refine below 1 is refused."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: None)
    assert main(["serve", str(run), "--index", "ivfpq", "--nprobe", "4", "--refine", "8"]) == 2
    assert "ivfpq with nbits 8 needs at least 256 items" in capsys.readouterr().err
    assert main(["serve", str(run), "--index", "ivfpq", "--refine", "0"]) == 2
    assert "--refine must be positive, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 19, item 6: the server answers too much
@pytest.fixture(scope="module")
def big():
    """A random export of 400 users x 2,000 items (integer ids 1000.. and 5000..), served exactly."""
    faiss.omp_set_num_threads(1)
    ex = random_export("ip", seed=7, max_seen=50)
    return ex, TestClient(create_app(ex))


def assert_error(r, status: int, *needles: str) -> dict:
    """One error shape: a JSON object whose "error" is the reason (plus "unknown" for unknown users)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and set(body) <= {"error", "unknown"}, body
    for needle in needles:
        assert needle in body["error"], (needle, body)
    return body


def test_k_and_users_x_k_are_bounded_per_request(big):
    ex, c = big
    assert LIMITS == {"max_k": 1000, "max_batch": 4096, "max_results": 100_000, "max_body": 1 << 20}
    users = ex.user_ids[2:].tolist()  # (row 1 has seen all but three items)
    # k: at most max_k (1,000) although the catalogue has 2,000 items
    assert len(c.get("/recommend", params={"user": users[0], "k": 1000}).json()["items"]) == 1000
    assert_error(c.get("/recommend", params={"user": users[0], "k": 1001}), 422,
                 "k must be an integer from 1 to 1000 (this server's max_k, SSMREC_SERVE_MAX_K), got 1001")
    assert_error(c.post("/recommend", json={"users": users[:2], "k": N_ITEMS}), 422, "from 1 to 1000")
    # users x k: at most 100,000 (100 users at k = 1,000 pass, 101 do not)
    r = c.post("/recommend", json={"users": users[:100], "k": 1000})
    assert r.status_code == 200 and [len(x["items"]) for x in r.json()["results"]] == [1000] * 100
    assert_error(c.post("/recommend", json={"users": users[:101], "k": 1000}), 413,
                 "users x k must be at most 100000", "101 x 1000 = 101000")
    # users: at most 4,096 (the 4,096 at the default k = 20 pass)
    r = c.post("/recommend", json={"users": (users * 11)[:4096]})
    assert r.status_code == 200 and len(r.json()["results"]) == 4096
    assert_error(c.post("/recommend", json={"users": (users * 11)[:4097], "k": 1}), 413,
                 "at most 4096 users (max_batch, SSMREC_SERVE_MAX_BATCH), got 4097")
    # the body: at most max_body bytes, refused before it is parsed
    assert_error(c.post("/recommend", content=b"[" + b" " * (1 << 20) + b"]",
                        headers={"content-type": "application/json"}), 413, "larger than 1048576 bytes")
    assert c.get("/healthz").json()["limits"] == LIMITS


def test_the_caps_are_set_by_argument_or_environment(monkeypatch):
    ex = random_export("ip", seed=8, max_seen=50)
    users = ex.user_ids[:10].tolist()
    c = TestClient(create_app(ex, max_k=5, max_batch=3, max_results=12))
    assert c.get("/healthz").json()["limits"] == {**LIMITS, "max_k": 5, "max_batch": 3, "max_results": 12}
    assert_error(c.get("/recommend", params={"user": users[0], "k": 6}), 422, "from 1 to 5 (this server's max_k")
    assert c.post("/recommend", json={"users": users[:3], "k": 4}).status_code == 200
    assert_error(c.post("/recommend", json={"users": users[:3], "k": 5}), 413, "3 x 5 = 15")
    assert_error(c.post("/recommend", json={"users": users[:4], "k": 1}), 413, "at most 3 users")
    monkeypatch.setenv("SSMREC_SERVE_MAX_RESULTS", "30")
    monkeypatch.setenv("SSMREC_SERVE_MAX_BODY", "200")
    c = TestClient(create_app(ex, max_k=10))
    assert c.get("/healthz").json()["limits"] == {**LIMITS, "max_k": 10, "max_results": 30, "max_body": 200}
    assert c.post("/recommend", json={"users": users[:3], "k": 10}).status_code == 200
    assert_error(c.post("/recommend", json={"users": users[:4], "k": 10}), 413, "SSMREC_SERVE_MAX_RESULTS")
    assert_error(c.post("/recommend", json={"users": users * 10, "k": 1}), 413, "larger than 200 bytes")
    monkeypatch.setenv("SSMREC_SERVE_MAX_K", "lots")
    with pytest.raises(LimitError, match="SSMREC_SERVE_MAX_K must be a positive integer, got 'lots'"):
        create_app(ex)
    with pytest.raises(LimitError, match="max_batch must be a positive integer, got 0"):
        create_app(ex, max_k=3, max_batch=0)


def test_errors_answer_the_reason_never_the_request(big):
    ex, c = big
    # a million users (6.9 MB): refused by the body's size, or by their number, in a short answer
    million = {"users": list(range(1_000_000)), "k": 20}
    r = c.post("/recommend", json=million)
    assert_error(r, 413, "the body is larger than 1048576 bytes")
    assert len(r.content) < 300
    r = TestClient(create_app(ex, max_body=1 << 26)).post("/recommend", json=million)
    assert_error(r, 413, "at most 4096 users")
    assert len(r.content) < 300
    # a 422 on a body the server reads whole (limits raised) names what is wrong, and only that
    roomy = TestClient(create_app(ex, max_batch=2_000_000, max_results=10**9, max_body=1 << 26))
    r = roomy.post("/recommend", json={**million, "k": "twenty"})
    assert_error(r, 422, "invalid request: k: Input should be a valid integer")
    assert len(r.content) < 300
    # many bad ids: the first ten named, the rest counted
    r = c.post("/recommend", json={"users": [None] * 3000 + [1.5], "k": 5})
    body = assert_error(r, 422, "users.0: a user id must be a string or an integer, not null", "and 2991 more")
    assert len(r.content) < 1500 and "1.5" not in body["error"]
    for bad in ([True], [[1]], [{"id": 1}]):
        assert_error(c.post("/recommend", json={"users": bad}), 422, "a user id must be a string or an integer")
    # GET validation errors: the reason, no FastAPI "detail" list
    for k, needle in (("9" * 3000, "k must be an integer from 1 to 1000"),
                      ("nine" * 1000, "k: Input should be a valid integer")):
        body = assert_error(c.get("/recommend", params={"user": "1000", "k": k}), 422, needle)
        assert len(body["error"]) < 200
    # an unknown id is named (shortened), and listed in "unknown"
    body = assert_error(c.get("/recommend", params={"user": "x" * 2000}), 404, "unknown user id 'xxx")
    assert len(body["error"]) < 400 and body["unknown"] == ["x" * 2000]


def test_one_error_shape_and_the_right_status_codes(big):
    _, c = big
    assert_error(c.get("/nowhere"), 404, "no such route: GET /nowhere", "GET /healthz, GET /recommend, POST /recommend")
    assert_error(c.get("/"), 404, "no such route")
    r = c.post("/healthz", json={})
    assert_error(r, 405, "method not allowed: POST /healthz") and r.headers["allow"] == "GET"
    r = c.delete("/recommend")
    assert_error(r, 405, "method not allowed: DELETE /recommend")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    body = json.dumps({"users": [1000], "k": 3})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert_error(c.post("/recommend", content=body, headers={"content-type": ctype}), 415,
                     "takes a JSON body (Content-Type: application/json)")
    for ctype in ("application/json", "application/json; charset=utf-8", None):  # no Content-Type: taken as JSON
        headers = {"content-type": ctype} if ctype else {}
        r = c.post("/recommend", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["results"][0]["user"] == 1000, (ctype, r.text)
    assert_error(c.post("/recommend", content=b'{"users": [0', headers={"content-type": "application/json"}), 422,
                 "JSON decode error")
    assert_error(c.post("/recommend", content=b"[" * 100_000, headers={"content-type": "application/json"}), 422,
                 "JSON decode error")
    assert_error(c.post("/recommend", json={"users": [1000], "k": 0}), 422, "k must be an integer from 1 to 1000")
    assert_error(c.get("/recommend", params={"user": "nobody"}), 404, "unknown user id 'nobody'")
    assert_error(c.get("/recommend", params={"user": "1000", "fallback": "x"}), 422,
                 "fallback: Input should be 'none' or 'popular'")
    # the documented routes still answer
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/openapi.json").json()["paths"]["/recommend"]["post"]["requestBody"]["required"] is True


def test_ids_come_back_of_the_type_of_the_files_ids_in_get_and_post(big):
    _, c = big  # integer ids: integers, however asked, known or not
    get = [c.get("/recommend", params={"user": u, "k": 2, "fallback": "popular"}).json()["user"]
           for u in ("1007", " 1007", "99999", "nobody")]
    post = [x["user"] for x in c.post("/recommend", json={"users": [1007, "1007", 99999, "99999", "nobody"], "k": 2,
                                                          "fallback": "popular"}).json()["results"]]
    assert get == [1007, 1007, 99999, "nobody"]
    assert post == [1007, 1007, 99999, 99999, "nobody"]
    assert c.get("/recommend", params={"user": "99999"}).json()["unknown"] == [99999]
    assert c.post("/recommend", json={"users": ["99999", 99998, "x"]}).json()["unknown"] == [99999, 99998, "x"]
    # string ids (a file whose ids are names): strings, however asked
    ex = random_export("ip", seed=9, max_seen=50)
    ex.user_ids = np.array([f"u{i}" for i in range(N_USERS - 1)] + ["7"])
    ex.item_ids = np.array([f"i{i}" for i in range(N_ITEMS)])
    s = TestClient(create_app(ex))
    get = [s.get("/recommend", params={"user": u, "k": 2, "fallback": "popular"}).json() for u in ("u3", "7", "8")]
    assert [x["user"] for x in get] == ["u3", "7", "8"] and [x["source"] for x in get] == ["model", "model", "popular"]
    assert all(isinstance(i, str) for x in get for i in x["items"])
    post = s.post("/recommend", json={"users": ["u3", 7, "7", 8, "8"], "k": 2, "fallback": "popular"}).json()
    assert [x["user"] for x in post["results"]] == ["u3", "7", "7", "8", "8"]
    assert s.post("/recommend", json={"users": [8, "9"]}).json()["unknown"] == ["8", "9"]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_an_approximate_index_that_comes_back_short_is_not_served_short(kind):
    ex, idx = short_index_case(kind)
    k = 100
    raw = idx.recommend(np.arange(N_USERS), k, complete=False)[0]
    left = N_ITEMS - np.diff(ex.seen_indptr)
    short = np.flatnonzero((raw >= 0).sum(axis=1) < np.minimum(k, left))
    assert short.size >= 10  # the index alone would answer these users short
    knobs = {"m": 4, "ef_construction": 16, "ef_search": 8} if kind == "hnsw" else {"nlist": 64, "nprobe": 1}
    c = TestClient(create_app(ex, kind, **knobs))
    users = ex.user_ids[short[:12]].tolist()
    want = ex.recommend(short[:12], k)[0]
    for u, w in zip(users, want):
        body = c.get("/recommend", params={"user": u, "k": k}).json()
        assert body["items"] == ex.item_ids[w[w >= 0]].tolist()
    results = c.post("/recommend", json={"users": users, "k": k}).json()["results"]
    assert [x["items"] for x in results] == [ex.item_ids[w[w >= 0]].tolist() for w in want]
    assert c.get("/healthz").json()["exact_fallbacks"] == 2 * len(users)
    # a user who has seen all but three items gets those three: fewer than k only when fewer remain
    assert len(c.get("/recommend", params={"user": ex.user_ids[1], "k": k}).json()["items"]) == 3
