"""An HTTP service answering "top K unseen items for this user" from an export (FastAPI).

Endpoints (ids are the original ids of the data files, in and out):

``GET /recommend?user=ID&k=20[&fallback=popular]``
    ``{"user": ID, "items": [...], "scores": [...], "source": "model"}``, best first, the user's
    seen items (what evaluation excludes) left out. Fewer than ``k`` items only if the user has
    seen nearly everything (or an approximate index found fewer).
``POST /recommend`` with ``{"users": [ID, ...], "k": 20, "fallback": "none"|"popular"}``
    ``{"k": 20, "results": [<one answer as above per user, in order>]}``.
``GET /healthz``
    model, loss, similarity, users, items, dimension, index kind and knobs.

Cold start (the policy): a user id the export does not know gets **404** with a message naming
it (a batch: 404 naming every unknown id, nothing answered), unless the request asks for
``fallback=popular``; then that user gets the ``k`` items with the most training interactions,
``"source": "popular"``, the scores being those interaction counts. A known user with no seen
items is a model answer like any other.

Errors are JSON ``{"error": "<what is wrong>"}``: 404 unknown user; 422 for a ``k`` that is not an
integer in ``[1, items]``, a missing ``user``, an unknown ``fallback``, or a malformed body
(validation errors also carry FastAPI's ``detail`` list).

Scores follow the export's similarity (the run's test similarity): inner products, or cosines
under ``cos``; the index's metric is that same inner product (see :mod:`ssmrec.serve.index`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ssmrec.serve.export import Export, ExportError, load_export
from ssmrec.serve.index import ItemIndex, build_index

MAX_BATCH = 4096
INLINE_BATCH = 8  # batches up to this many users are answered on the event loop, like single users


class ServeError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[StrictStr | StrictInt] = Field(min_length=1, max_length=MAX_BATCH)
    k: StrictInt = 20
    fallback: Literal["none", "popular"] = "none"


def resolve_export(path: str | Path) -> Path:
    """An export folder, or a run directory whose ``export/`` is one."""
    path = Path(path)
    if not (path / "manifest.json").is_file() and (path / "export" / "manifest.json").is_file():
        return path / "export"
    return path


class Recommender:
    """The service's logic, free of HTTP: ids to rows, the index, the cold-start fallback."""

    def __init__(self, export: Export, index: ItemIndex):
        self.export, self.index = export, index
        self.popular_items, self.popular_scores = export.popular(export.n_items)
        self.item_ids = np.asarray(export.item_ids)
        self.user_ids = np.asarray(export.user_ids)

    def check_k(self, k: int) -> int:
        n = self.export.n_items
        if not 1 <= k <= n:
            raise ServeError(422, f"k must be an integer from 1 to {n} (the number of items), got {k}")
        return k

    def rows(self, users: list[str | int], fallback: str) -> list[int | None]:
        rows: list[int | None] = []
        unknown = []
        for u in users:
            try:
                rows.append(self.export.user_index(u))
            except ExportError:
                rows.append(None)
                unknown.append(u)
        if unknown and fallback != "popular":
            shown = ", ".join(repr(u) for u in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise ServeError(404, f"unknown user id{'s' if len(unknown) > 1 else ''} {shown}: not among the "
                                  f"{self.export.n_users} users of the model; pass fallback=popular to get the most "
                                  f"popular items for users the model does not know", unknown=unknown)
        return rows

    def answer(self, users: list[str | int], k: int, fallback: str) -> list[dict[str, Any]]:
        k = self.check_k(k)
        rows = self.rows(users, fallback)
        known = [r for r in rows if r is not None]
        items, scores = self.index.recommend(np.array(known, dtype=np.int64), k) if known else (None, None)
        out, j = [], 0
        for given, row in zip(users, rows):
            if row is None:
                out.append({"user": given, "items": self.item_ids[self.popular_items[:k]].tolist(),
                            "scores": self.popular_scores[:k].tolist(), "source": "popular"})
                continue
            ok = items[j] >= 0
            out.append({"user": self.user_ids[row].item(), "items": self.item_ids[items[j][ok]].tolist(),
                        "scores": scores[j][ok].tolist(), "source": "model"})
            j += 1
        return out

    def health(self) -> dict[str, Any]:
        m, ex = self.export.manifest, self.export
        return {"status": "ok", "model": m.get("model"), "loss": m.get("loss"), "dataset": m.get("dataset"),
                "epoch": m.get("epoch"), "similarity": self.index.similarity, "n_users": ex.n_users,
                "n_items": ex.n_items, "dim": int(ex.item_factors.shape[1]), "index": self.index.kind,
                "knobs": self.index.knobs, "export": str(ex.path)}


def create_app(export_dir: str | Path, index: str = "exact", *, similarity: str | None = None,
               threads: int | None = None, **knobs: Any) -> FastAPI:
    """The service for an export folder (or a run directory with ``export/``), its items indexed
    by ``index`` (exact, hnsw, ivf; knobs as :func:`ssmrec.serve.index.build_index`). The index is
    built here, before the first request."""
    export = load_export(resolve_export(export_dir))
    rec = Recommender(export, build_index(export, index, similarity, threads=threads, **knobs))
    threads = faiss.omp_get_max_threads()  # this (the event loop's) thread's; workers set their own
    batches = asyncio.Semaphore(1)  # a batch already uses every faiss thread: one at a time

    def answer_batch(users: list[str | int], k: int, fallback: str) -> list[dict[str, Any]]:
        faiss.omp_set_num_threads(threads)  # OpenMP settings are per thread
        return rec.answer(users, k, fallback)

    app = FastAPI(title="ssmrec", summary=f"top-K recommendations of {export.manifest.get('model')} "
                                          f"+ {export.manifest.get('loss')} ({export.path})")
    app.state.recommender = rec

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body")) or "body"
            parts.append(f"{where}: {e.get('msg')}")
        return JSONResponse({"error": "invalid request: " + "; ".join(parts), "detail": jsonable_encoder(errors)},
                            status_code=422)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse(rec.health())

    # One user's search takes well under a millisecond: it runs on the event loop, with no thread
    # hand-off and no OpenMP teams multiplying under concurrent requests. Batches go to a worker.
    @app.get("/recommend")
    async def recommend_one(user: str = Query(..., description="a user id as in the data files"),
                      k: int = Query(20, description="how many items (1 to the number of items)"),
                      fallback: Literal["none", "popular"] = Query(
                          "none", description="popular: answer unknown users with the most popular items")
                      ) -> JSONResponse:
        return JSONResponse(rec.answer([user], k, fallback)[0])

    @app.post("/recommend")
    async def recommend_batch(body: BatchRequest) -> JSONResponse:
        if len(body.users) <= INLINE_BATCH:
            results = rec.answer(body.users, body.k, body.fallback)
        else:
            async with batches:
                results = await run_in_threadpool(answer_batch, body.users, body.k, body.fallback)
        return JSONResponse({"k": body.k, "results": results})

    return app
