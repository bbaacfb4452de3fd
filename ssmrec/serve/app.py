"""An HTTP service answering "top K unseen items for this user" from an export (FastAPI).

Endpoints:

``GET /recommend?user=ID&k=20[&fallback=popular]``
    ``{"user": ID, "items": [...], "scores": [...], "source": "model"}``, best first, the user's
    seen items (what evaluation excludes) left out. Fewer than ``k`` items only if fewer remain
    unseen (an approximate index that comes back short is searched again exactly).
``POST /recommend`` with a JSON body ``{"users": [ID, ...], "k": 20, "fallback": "none"|"popular"}``
    ``{"k": 20, "results": [<one answer as above per user, in order>]}``.
``GET /healthz``
    model, loss, similarity, users, items, dimension, index kind and knobs, the limits below.

Ids, one rule for both routes: an answer's ids (``user``, ``items``, a 404's ``unknown``) have the
type of the ids of the data files as the export holds them: integers when those are integers,
strings otherwise. A user may be asked for as ``7`` or ``"7"``; an id that cannot have that type
(``"nobody"`` where ids are integers) comes back as the string given.

Limits per request (:data:`LIMITS`; each set by :func:`create_app`'s argument of that name, else
the environment variable in :data:`LIMIT_ENV`, else the default): ``k`` at most ``max_k`` (1,000)
and the number of items; at most ``max_batch`` (4,096) users and ``max_results`` (100,000) users
x k per batch; a body of at most ``max_body`` bytes (1 MiB).

Cold start (the policy): a user id the export does not know gets **404** with a message naming
it (a batch: 404 naming every unknown id, nothing answered), unless the request asks for
``fallback=popular``; then that user gets the ``k`` items with the most training interactions,
``"source": "popular"``, the scores being those interaction counts. A known user with no seen
items is a model answer like any other.

Errors, every one (routes, validation, unknown paths, methods): JSON ``{"error": "<the reason>"}``
(a 404 for unknown users adds ``"unknown": [ids]``); the request is never echoed. 404 unknown
user or path; 405 a method a path does not take; 413 a batch over ``max_batch`` users, over
``max_results`` users x k, or a body over ``max_body``; 415 a POST body that is not JSON
(``Content-Type`` other than ``application/json``); 422 a ``k`` that is not an integer in
``[1, min(items, max_k)]``, a missing ``user``, an unknown ``fallback``, a malformed body.

Scores follow the export's similarity (the run's test similarity): inner products, or cosines
under ``cos``; the index's metric is that same inner product (see :mod:`ssmrec.serve.index`).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import faiss
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, ValidationError
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ssmrec.serve.export import Export, ExportError, load_export
from ssmrec.serve.index import IndexConfigError, ItemIndex, open_index, set_threads

LIMITS: dict[str, int] = {
    "max_k": 1000,           # items per answer
    "max_batch": 4096,       # users per POST
    "max_results": 100_000,  # users x k per POST: bounds the search and the answer's size (~2.5 MB)
    "max_body": 1 << 20,     # bytes of a POST body
}
LIMIT_ENV = {name: f"SSMREC_SERVE_{name.upper()}" for name in LIMITS}
MAX_BATCH = LIMITS["max_batch"]
INLINE_BATCH = 8  # batches up to this many users are answered on the event loop, like single users
MAX_ERRORS = 10  # validation problems named in one answer
ROUTES = "GET /healthz, GET /recommend, POST /recommend"


class ServeError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class LimitError(IndexConfigError):
    """A serving limit that is not a positive integer (an :class:`IndexConfigError`, so that
    ``ssmrec serve`` reports it as a configuration error)."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction"
    return {list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _user_id(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError("user_id", "a user id must be a string or an integer, not {got}",
                                  {"got": _json_type(value)})
    return value


UserId = Annotated[str | int, PlainValidator(_user_id, json_schema_input_type=str | int)]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[UserId] = Field(min_length=1, description=f"user ids (at most max_batch, default {MAX_BATCH})")
    k: StrictInt = 20
    fallback: Literal["none", "popular"] = "none"


def resolve_limits(**given: int | None) -> dict[str, int]:
    """Each limit: the argument if given, else its environment variable, else the default."""
    out = {}
    for name, default in LIMITS.items():
        value, where = given.get(name), name
        if value is None and os.environ.get(LIMIT_ENV[name], "").strip():
            value, where = os.environ[LIMIT_ENV[name]].strip(), LIMIT_ENV[name]
            try:
                value = int(value.replace("_", ""))
            except ValueError:
                raise LimitError(f"{where} must be a positive integer, got {value!r}") from None
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise LimitError(f"{where} must be a positive integer, got {value!r}")
        out[name] = int(value)
    return out


def resolve_export(path: str | Path) -> Path:
    """An export folder, or a run directory whose ``export/`` is one."""
    path = Path(path)
    if not (path / "manifest.json").is_file() and (path / "export" / "manifest.json").is_file():
        return path / "export"
    return path


def _describe(errors: list[dict[str, Any]]) -> str:
    """Validation problems as ``where: what`` (never the input), at most :data:`MAX_ERRORS`."""
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body")) or "body"
        part = f"{where}: {e.get('msg')}"
        if part not in parts:
            parts.append(part)
    more = f"; and {len(parts) - MAX_ERRORS} more" if len(parts) > MAX_ERRORS else ""
    return "invalid request: " + "; ".join(parts[:MAX_ERRORS]) + more


def _cut(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters: what the client sent is never echoed whole."""
    return text if len(text) <= n else text[:n - 3] + "..."


def _short(value: Any, n: int = 60) -> str:
    return _cut(repr(value) if not isinstance(value, int) or value.bit_length() < 1000 else "a huge integer", n)


class Recommender:
    """The service's logic, free of HTTP: ids to rows, the limits, the index, the cold-start fallback."""

    def __init__(self, export: Export, index: ItemIndex, limits: dict[str, int] | None = None):
        self.export, self.index = export, index
        self.limits = resolve_limits(**(limits or {}))
        self.popular_items, self.popular_scores = export.popular(export.n_items)
        self.item_ids = np.asarray(export.item_ids)
        self.user_ids = np.asarray(export.user_ids)
        self.int_ids = self.user_ids.dtype.kind in "iu"

    def check_k(self, k: int) -> int:
        n, cap = self.export.n_items, self.limits["max_k"]
        if not 1 <= k <= min(n, cap):
            why = "the number of items" if n <= cap else f"this server's max_k, {LIMIT_ENV['max_k']}"
            raise ServeError(422, f"k must be an integer from 1 to {min(n, cap)} ({why}), got {_short(k, 24)}")
        return k

    def check_size(self, n_users: int, k: int) -> None:
        """413 for a batch beyond max_batch users or max_results users x k."""
        cap = self.limits["max_batch"]
        if n_users > cap:
            raise ServeError(413, f"a request takes at most {cap} users (max_batch, {LIMIT_ENV['max_batch']}), "
                                  f"got {n_users}: split the batch")
        cap = self.limits["max_results"]
        if n_users * k > cap:
            raise ServeError(413, f"users x k must be at most {cap} per request (max_results, "
                                  f"{LIMIT_ENV['max_results']}), got {n_users} x {k} = {n_users * k}: "
                                  f"ask for fewer users per request or a smaller k")

    def canonical(self, raw: str | int) -> str | int:
        """An id as answers give it: an integer where the export's ids are integers (unless it
        cannot be one: then the string given), else a string."""
        if self.int_ids:
            try:
                return int(str(raw).strip())
            except ValueError:
                return str(raw)
        return str(raw)

    def rows(self, users: list[str | int], fallback: str) -> list[int | None]:
        rows: list[int | None] = []
        unknown = []
        for u in users:
            try:
                rows.append(self.export.user_index(u))
            except (ExportError, OverflowError):
                rows.append(None)
                unknown.append(self.canonical(u))
        if unknown and fallback != "popular":
            shown = ", ".join(_short(u) for u in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise ServeError(404, f"unknown user id{'s' if len(unknown) > 1 else ''} {shown}: not among the "
                                  f"{self.export.n_users} users of the model; pass fallback=popular to get the most "
                                  f"popular items for users the model does not know", unknown=unknown)
        return rows

    def answer(self, users: list[str | int], k: int, fallback: str) -> list[dict[str, Any]]:
        k = self.check_k(k)
        self.check_size(len(users), k)
        rows = self.rows(users, fallback)
        known = [r for r in rows if r is not None]
        items, scores = self.index.recommend(np.array(known, dtype=np.int64), k) if known else (None, None)
        out, j = [], 0
        for given, row in zip(users, rows):
            if row is None:
                out.append({"user": self.canonical(given), "items": self.item_ids[self.popular_items[:k]].tolist(),
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
                "knobs": self.index.knobs, "index_source": self.index.source, "limits": dict(self.limits),
                "exact_fallbacks": self.index.exact_fallbacks, "export": str(ex.path)}


async def _read_json(request: Request, max_body: int) -> Any:
    """The request's JSON body: 415 if it says it is something else, 413 beyond ``max_body``
    bytes (read no further), 422 if it does not parse. No Content-Type is taken as JSON."""
    ctype = request.headers.get("content-type")
    if ctype is not None:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ServeError(415, f"{request.method} {request.url.path} takes a JSON body "
                                  f"(Content-Type: application/json), not {_short(media, 40)}")
    too_big = ServeError(413, f"the body is larger than {max_body} bytes (max_body, {LIMIT_ENV['max_body']})")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        raise too_big
    body, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise too_big
        body.append(chunk)
    try:
        return json.loads(b"".join(body))
    except json.JSONDecodeError as e:
        raise ServeError(422, f"invalid request: body: JSON decode error ({e.msg}: line {e.lineno} "
                              f"column {e.colno})") from None
    except UnicodeDecodeError:
        raise ServeError(422, "invalid request: body: JSON decode error (not UTF-8)") from None
    except RecursionError:
        raise ServeError(422, "invalid request: body: JSON decode error (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ServeError(422, f"invalid request: body: JSON decode error ({_cut(str(e), 80)})") from None


def create_app(export_dir: str | Path | Export, index: str | ItemIndex = "exact", *, similarity: str | None = None,
               threads: int | None = None, max_k: int | None = None, max_batch: int | None = None,
               max_results: int | None = None, max_body: int | None = None, index_file: str | Path | None = None,
               **knobs: Any) -> FastAPI:
    """The service for an export folder (or a run directory with ``export/``, or a loaded
    :class:`Export`), its items indexed by ``index`` (exact, hnsw, ivf, ivfpq; knobs as
    :func:`ssmrec.serve.index.build_index`), or by an :class:`ItemIndex` already built or loaded
    over that export. The index is opened here, before the first request: the export's saved one
    (``<export>/index/<kind>-<similarity>.faiss``, or ``index_file``) when it matches, else built
    (see :func:`ssmrec.serve.index.open_index`; ``/healthz`` says which in ``index_source``).

    The limits per request (``max_k``, ``max_batch``, ``max_results``, ``max_body``; see the
    module docstring): each argument left ``None`` is read from its environment variable
    (:data:`LIMIT_ENV`, e.g. ``SSMREC_SERVE_MAX_K``), else :data:`LIMITS`'s default."""
    limits = resolve_limits(max_k=max_k, max_batch=max_batch, max_results=max_results, max_body=max_body)
    export = export_dir if isinstance(export_dir, Export) else load_export(resolve_export(export_dir))
    if isinstance(index, ItemIndex):
        if index.export is not export and (index.export.path != export.path or index.n_items != export.n_items):
            raise IndexConfigError(f"the index given was built over {index.export.path}, not {export.path}")
        if similarity or knobs or index_file:
            raise IndexConfigError("an index given ready-built takes no similarity, knobs or index_file")
        set_threads(threads)
        built = index
    else:
        built = open_index(export, index, similarity, path=index_file, threads=threads, **knobs)
    rec = Recommender(export, built, limits)
    threads = faiss.omp_get_max_threads()  # this (the event loop's) thread's; workers set their own
    batches = asyncio.Semaphore(1)  # a batch already uses every faiss thread: one at a time

    def answer_batch(users: list[str | int], k: int, fallback: str) -> list[dict[str, Any]]:
        faiss.omp_set_num_threads(threads)  # OpenMP settings are per thread
        return rec.answer(users, k, fallback)

    app = FastAPI(title="ssmrec", summary=f"top-K recommendations of {export.manifest.get('model')} "
                                          f"+ {export.manifest.get('loss')} ({export.path})")
    app.state.recommender = rec

    # One error shape, whoever raises it: {"error": "<the reason>"}, never the request.
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _describe(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{_cut(request.method, 20)} {_cut(request.url.path, 80)}"
        if exc.status_code == 404:
            message = f"no such route: {where} (the routes: {ROUTES})"
        elif exc.status_code == 405:  # Allow: every method of the path (Starlette names the first route's)
            allow = ", ".join(sorted({m for route in app.routes if getattr(route, "path_regex", None)
                                      and route.path_regex.match(request.url.path)
                                      for m in getattr(route, "methods", None) or ()}))
            headers = {**(exc.headers or {}), "Allow": allow}
            return JSONResponse({"error": f"method not allowed: {where} (it takes {allow}; the routes: {ROUTES})"},
                                status_code=405, headers=headers)
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal server error ({type(exc).__name__})"}, status_code=500)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse(rec.health())

    # One user's search takes well under a millisecond: it runs on the event loop, with no thread
    # hand-off and no OpenMP teams multiplying under concurrent requests. Batches go to a worker.
    @app.get("/recommend")
    async def recommend_one(user: str = Query(..., description="a user id as in the data files"),
                            k: int = Query(20, description=f"how many items (1 to the number of items, at most "
                                                           f"max_k: {limits['max_k']} here)"),
                            fallback: Literal["none", "popular"] = Query(
                                "none", description="popular: answer unknown users with the most popular items")
                            ) -> JSONResponse:
        return JSONResponse(rec.answer([user], k, fallback)[0])

    body_schema = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": BatchRequest.model_json_schema()}}}}

    @app.post("/recommend", openapi_extra=body_schema)
    async def recommend_batch(request: Request) -> JSONResponse:
        data = await _read_json(request, limits["max_body"])
        users = data.get("users") if isinstance(data, dict) else None
        if isinstance(users, list) and len(users) > limits["max_batch"]:  # before validating every id
            rec.check_size(len(users), 1)
        try:
            body = BatchRequest.model_validate(data)
        except ValidationError as e:
            raise ServeError(422, _describe(e.errors(include_url=False, include_context=False,
                                                     include_input=False))) from None
        rec.check_k(body.k)
        rec.check_size(len(body.users), body.k)
        if len(body.users) <= INLINE_BATCH:
            results = rec.answer(body.users, body.k, body.fallback)
        else:
            async with batches:
                results = await run_in_threadpool(answer_batch, body.users, body.k, body.fallback)
        return JSONResponse({"k": body.k, "results": results})

    return app
