"""``serve``: a small local web page over an index (FastAPI; plain HTML and JavaScript).

The page (``static/index.html``) has a text box, a catalogue picker and an upload field;
every result shows its thumbnail (the frame the model saw), an audio preview, its title and
labels and a "more like this" link. The JSON endpoints behind it::

    GET  /api/info                        items, galleries, index kind
    GET  /api/items?q=&limit=             catalogue items whose id or title contains q
    GET  /api/search?text=&in=&k=         text → audio or video gallery
    GET  /api/search?path=&modality=&in=  a media file inside the media root
    GET  /api/like?id=&k=&audio=&video=   more like this (weighted audio + video)
    POST /api/upload (file, modality, in, k)   an uploaded media file
    GET  /thumb/{id}, /preview/{id}       the item's JPEG frame and WAV snippet
    GET  /media/{id}                      the item's media file (only inside the media root)

Bad input answers 4xx with ``{"error": "one line"}``: an empty query (400), an unknown id
(404), a path outside the media root (403), an upload over the limit (413) or one that cannot
be decoded (400). Only files of the catalogue are ever served.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from trimodal.search.errors import SearchError
from trimodal.search.query import GALLERIES, QueryEngine, like_weights

MAX_UPLOAD_MB = 200.0
STATIC = Path(__file__).resolve().parent / "static"
_CHUNK = 1 << 20


class HTTPProblem(Exception):
    """An answer with an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def common_root(paths: list[str]) -> Path | None:
    """The deepest directory holding every file in ``paths`` (``None`` if there are none)."""
    files = [p for p in paths if p]
    if not files:
        return None
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in files]))


def inside(path: Path, root: Path | None) -> bool:
    """True when ``path`` (links resolved) lies inside ``root``."""
    if root is None:
        return False
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def create_app(
    engine: QueryEngine, media_root: str | Path | None = None, max_upload_mb: float = MAX_UPLOAD_MB
) -> Any:
    """The FastAPI application over ``engine`` (see the module docstring)."""
    cat = engine.cat
    root = (
        Path(media_root).resolve()
        if media_root
        else common_root(cat.items.column("path").to_pylist())
    )
    app = FastAPI(title="trimodal search", docs_url=None, redoc_url=None, openapi_url=None)
    limit = int(max_upload_mb * _CHUNK)
    _error_handlers(app, limit)
    _query_routes(app, engine, root)
    _upload_route(app, engine, limit)
    _file_routes(app, cat, root)
    return app


def problem(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status)


def _error_handlers(app: FastAPI, limit: int) -> None:
    """Every failure a person can cause answers 4xx with one line, never a stack trace."""

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, err: HTTPProblem) -> JSONResponse:
        return problem(err.status, str(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return problem(err.status_code, f"{err.detail}: {request.url.path}")

    @app.exception_handler(SearchError)
    async def _search_error(request: Request, err: SearchError) -> JSONResponse:
        return problem(400, str(err))

    @app.exception_handler(KeyError)
    async def _unknown(request: Request, err: KeyError) -> JSONResponse:
        return problem(404, str(err.args[0]) if err.args else "not found")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "request"
        return problem(400, f"bad {where}: {first.get('msg', 'invalid value')}")

    @app.middleware("http")
    async def _refuse_large(request: Request, call_next: Any) -> Any:
        # Refuse an announced oversized upload before its body is read.
        length = request.headers.get("content-length", "")
        if request.url.path == "/api/upload" and length.isdigit() and int(length) > limit + _CHUNK:
            return problem(413, f"upload larger than {limit // _CHUNK} MB")
        return await call_next(request)


def _query_routes(app: FastAPI, engine: QueryEngine, root: Path | None) -> None:
    cat = engine.cat

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        galleries = [m for m in GALLERIES if m in cat.modalities]
        return {"items": len(cat), "galleries": galleries, "kind": cat.meta["kind"]}

    @app.get("/api/items")
    def items(q: str = "", limit: int = 50) -> dict[str, Any]:
        q = q.lower()
        found = []
        for row, item_id in enumerate(cat.ids):
            item = cat.item(row)
            if q in item_id.lower() or q in item["title"].lower():
                found.append({"id": item_id, "title": item["title"], "labels": item["labels"]})
                if len(found) >= max(1, min(limit, 500)):
                    break
        return {"items": found}

    @app.get("/api/search")
    def search(
        text: str | None = None, path: str | None = None, modality: str = "audio",
        k: int = 10, gallery: Annotated[str | None, Query(alias="in")] = None,
    ) -> dict[str, Any]:  # fmt: skip
        _check_k(k)
        if path is not None:
            if not inside(Path(path), root):
                raise HTTPProblem(403, f"{path} is outside the catalogue's directory {root}")
            return {"hits": _dicts(engine.media(path, modality, gallery, k))}
        if text is None or not text.strip():
            raise HTTPProblem(400, "empty query: type a text")
        return {"hits": _dicts(engine.text([text], gallery, k)[0])}

    @app.get("/api/like")
    def like(id: str, k: int = 10, audio: float = 0.5, video: float = 0.5) -> dict[str, Any]:
        _check_k(k)
        item = cat.item(cat.row_of(id))
        hits = engine.like(id, k, like_weights(audio, video))
        return {
            "item": {"id": id, "title": item["title"], "labels": item["labels"]},
            "hits": _dicts(hits),
        }


def _check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise HTTPProblem(400, f"k must be between 1 and 1000, got {k}")


def _dicts(hits: list) -> list[dict[str, Any]]:
    return [h.to_dict() | {"path": Path(h.path).name if h.path else ""} for h in hits]


def _upload_route(app: FastAPI, engine: QueryEngine, limit: int) -> None:
    @app.post("/api/upload")
    async def upload(
        file: Annotated[UploadFile, File()], modality: Annotated[str, Form()] = "audio",
        gallery: Annotated[str | None, Form(alias="in")] = None, k: Annotated[int, Form()] = 10,
    ) -> dict[str, Any]:  # fmt: skip
        _check_k(k)
        if modality not in GALLERIES:
            raise HTTPProblem(400, f"modality must be audio or video, got {modality!r}")
        suffix = Path(file.filename or "upload").suffix.lower()[:10] or ".bin"
        with tempfile.TemporaryDirectory(prefix="trimodal-upload-") as tmp:
            target = Path(tmp) / f"upload{suffix}"
            size = 0
            with target.open("wb") as out:
                while chunk := await file.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise HTTPProblem(413, f"upload larger than {limit // _CHUNK} MB")
                    out.write(chunk)
            if size == 0:
                raise HTTPProblem(400, "the uploaded file is empty")
            try:
                hits = await run_in_threadpool(engine.media, target, modality, gallery, k)
            except SearchError as err:
                raise HTTPProblem(400, f"cannot use {file.filename}: {_reason(err)}") from err
        return {"hits": _dicts(hits)}


def _reason(err: SearchError) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith("cannot use ") else text


def _file_routes(app: FastAPI, cat: Any, root: Path | None) -> None:
    def preview(item_id: str, suffix: str) -> Path:
        item = cat.item(cat.row_of(item_id))
        path = Path(item["source"]) / "previews" / f"{item_id}{suffix}"
        if not inside(path, Path(item["source"]) / "previews") or not path.is_file():
            raise HTTPProblem(404, f"no preview of {item_id!r}")
        return path

    @app.get("/thumb/{item_id}")
    def thumb(item_id: str) -> Any:
        return FileResponse(preview(item_id, ".jpg"), media_type="image/jpeg")

    @app.get("/preview/{item_id}")
    def audio(item_id: str) -> Any:
        return FileResponse(preview(item_id, ".wav"), media_type="audio/wav")

    @app.get("/media/{item_id}")
    def media(item_id: str) -> Any:
        path = Path(cat.item(cat.row_of(item_id))["path"] or "")
        if not inside(path, root):
            raise HTTPProblem(403, f"the media of {item_id!r} is outside {root}")
        if not path.is_file():
            raise HTTPProblem(404, f"the media of {item_id!r} is gone")
        return FileResponse(path)
