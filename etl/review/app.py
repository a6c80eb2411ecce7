"""The rating web app: one case per page, six views, four ratings as buttons and keys, a filtered case list.

A real ASGI app (Starlette) served by uvicorn; pages are Jinja2 templates with autoescaping (a rater name or a
comment is never markup) and every asset comes from the package (``etl/review/static``), enforced for the
browser by a Content-Security-Policy of ``'self'`` only.

HTTP API (what the pages' script uses; scripted raters use it too):

- ``POST /api/ratings`` JSON ``{"patient_id", "score", "comment"?, "mask_sha256"?}`` -> 200
  ``{"id", "patient_id", "rater", "score", "rated_at", "mask_sha256", "next"}``; the rating is committed
  before the answer. ``mask_sha256`` is the mask the rater saw (the page sends it): if the mask changed
  since, 409 and nothing is stored. Unknown case 404, bad score 422. The rater is the server's ``--rater``.
- ``GET /api/cases`` -> ``{"rater", "rated", "total", "cases": [{"patient_id", "dataset", "score",
  "stale", "mask_sha256", ...}]}`` (other raters and QC only when not blind).

Security: loopback by default with a Host-header check (a web page elsewhere cannot reach the app through
DNS rebinding); listening elsewhere requires a random token on every request (``?token=`` once, then a
cookie, or ``Authorization: token ...``). Writes must be JSON from the app's own origin. Patient ids, cache
keys and view names from URLs are matched against the known cases and fixed names, never joined into paths
unchecked: ``/case/../../etc/passwd`` is a 404.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass, field
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from etl.errors import EtlError, ValidationFailed
from etl.review.cases import CaseSet, FileHashes, ReviewCase, load_cases
from etl.review.prepare import VIEWS, ensure_views
from etl.review.store import SCORE_HELP, SCORE_LABELS, SCORES, Rating, Store, add_rating, latest_by_rater, open_store
from etl.types import StrPath

if TYPE_CHECKING:
    from jinja2 import Environment

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
STATIC = PACKAGE_DIR / "static"
TOKEN_COOKIE = "mamamia_review_token"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PLANE_LABELS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
SERIES_TITLES = {"post": "First post-contrast (phase 0001)", "sub": "Subtraction (post - pre)"}
STATUS_FILTERS = ("all", "unrated", "rated", "stale", *SCORES)


@dataclass
class ReviewState:
    """What every request needs: the cases, the store, who rates, how."""

    cases: CaseSet
    store: Store
    rater: str
    blind: bool = False
    token: str | None = None
    cache: Path = Path("review")
    hashes: FileHashes = field(default_factory=FileHashes)
    qc: dict[str, dict[str, Any]] = field(default_factory=dict)

    def mask_sha(self, case: ReviewCase) -> str | None:
        return self.hashes.sha256(case.automatic) if case.automatic is not None else None

    def mine(self) -> dict[str, Rating]:
        return {pid: r for (pid, _), r in latest_by_rater(self.store, self.rater).items()}

    def status(self) -> tuple[dict[str, Rating], dict[str, bool]]:
        """This rater's latest rating per case and whether it is stale (rated mask changed since)."""
        mine = self.mine()
        stale = {}
        for pid, r in mine.items():
            case = self.cases.get(pid)
            stale[pid] = bool(case is not None and r.is_stale(self.mask_sha(case)))
        return mine, stale

    def next_unrated(self, after: str | None, mine: dict[str, Rating], stale: dict[str, bool]) -> str | None:
        """The first case after ``after`` (wrapping round) without a current rating of this rater."""
        ids = self.cases.ids()
        start = ids.index(after) + 1 if after in ids else 0
        for pid in ids[start:] + ids[:start]:
            if pid != after and (pid not in mine or stale.get(pid)):
                return pid
        return None


class SecurityMiddleware:
    """Host check on loopback, token everywhere else, same-origin JSON for writes, security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        denied = self._denied(request)
        if denied is not None:
            await PlainError(denied[1], denied[0])(scope, receive, send)
            return
        set_cookie = bool(self.token) and request.query_params.get("token") == self.token

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
                if set_cookie:
                    headers.append((b"set-cookie", f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _denied(self, request: Request) -> tuple[int, str] | None:
        host = (request.headers.get("host") or "").strip()
        hostname = urlsplit(f"//{host}").hostname or ""
        if self.token is None:
            if hostname not in LOOPBACK_NAMES:
                return 403, "this server answers loopback requests only (start it with --host to share it)"
        else:
            given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                     or request.headers.get("authorization", "").removeprefix("token ").strip())
            if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
                return 403, "access token missing or wrong: open the URL with ?token=... printed by the server"
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != host:
                return 403, "cross-origin write refused"
        return None


class PlainError(Response):
    def __init__(self, text: str, status: int) -> None:
        super().__init__(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def _templates() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env


def create_app(source: StrPath | CaseSet, db: StrPath | Store, rater: str, blind: bool = False,
               token: str | None = None, cache: StrPath | None = None, definition: StrPath | None = None) -> Starlette:
    """The rating app for one rater over the cases of a staged directory or release.

    Views missing from the cache (or made for an earlier mask) are rendered on first display, so the app is
    correct without ``review prepare``; prepare makes every page fast."""
    from etl import __version__
    from etl.review.store import check_rater

    cases = source if isinstance(source, CaseSet) else load_cases(source, definition)
    if not len(cases):
        raise ValidationFailed("no case with an automatic mask to review (run `mamamia segment` first)", str(cases.root))
    store = db if isinstance(db, Store) else open_store(db)
    state = ReviewState(cases, store, check_rater(rater), blind, token,
                        Path(cache) if cache is not None else cases.cache_dir())
    if not blind:
        state.qc = cases.qc()
    env = _templates()

    def page(name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(rater=state.rater, blind=state.blind, version=__version__, **ctx)
        return HTMLResponse(html, status_code=code, headers={"cache-control": "no-store"})

    def not_found(what: str) -> Response:
        return page("error.html", 404, title="Not found", message=what)

    # Page handlers are plain functions: Starlette runs them in its thread pool, so a case rendered on first
    # display (a second or two for a full-size case) or a rating's disk flush never stalls other requests.
    def index(request: Request) -> Response:
        mine, stale = state.status()
        nxt = state.next_unrated(None, mine, stale)
        return RedirectResponse(f"/case/{nxt}" if nxt else "/cases", status_code=303)

    def case_page(request: Request) -> Response:
        case = cases.get(request.path_params["patient_id"])
        if case is None:
            return not_found("no such case")
        try:
            rec, _ = ensure_views(case, state.cache, state.hashes)
        except EtlError as exc:
            return page("error.html", 500, title=f"{case.patient_id}: cannot show the views", message=exc.message)
        mine, stale = state.status()
        ids = cases.ids()
        i = ids.index(case.patient_id)
        others = []
        if not state.blind:
            for (pid, who), r in latest_by_rater(store).items():
                if pid == case.patient_id and who != state.rater:
                    others.append({"rater": who, "score": r.score, "comment": r.comment, "rated_at": r.rated_at,
                                   "stale": r.is_stale(rec["mask_sha256"])})
        rated = sum(1 for pid in ids if pid in mine and not stale.get(pid))
        mine_here = mine.get(case.patient_id)
        views = [{"series": s, "title": SERIES_TITLES[s],
                  "planes": [{"plane": p, "src": f"/views/{case.patient_id}/{rec['key']}/{s}_{p}.png",
                              "size": rec["sizes"][f"{s}_{p}"], "labels": PLANE_LABELS[p]}
                             for p in ("axial", "coronal", "sagittal") if f"{s}_{p}" in rec["sizes"]]}
                 for s in ("post", "sub")]
        return page("case.html", case=case, index=i + 1, total=len(ids), rated=rated, views=views,
                    mine=mine_here, stale=bool(mine_here and stale.get(case.patient_id)),
                    mask_sha256=rec["mask_sha256"], point_source=rec.get("point_source"),
                    prev_id=ids[i - 1] if i > 0 else None, next_id=ids[i + 1] if i + 1 < len(ids) else None,
                    next_unrated=state.next_unrated(case.patient_id, mine, stale),
                    scores=[(k + 1, s, SCORE_LABELS[s], SCORE_HELP[s]) for k, s in enumerate(SCORES)],
                    others=others, qc=None if state.blind else state.qc.get(case.patient_id))

    def case_list(request: Request) -> Response:
        status = request.query_params.get("status", "all")
        dataset = request.query_params.get("dataset", "all")
        if status not in STATUS_FILTERS:
            status = "all"
        datasets = sorted({c.dataset for c in cases.cases})
        if dataset != "all" and dataset not in datasets:
            dataset = "all"
        mine, stale = state.status()
        others: dict[str, list[str]] = {}
        if not state.blind:
            for (pid, who), other in latest_by_rater(store).items():
                if who != state.rater:
                    others.setdefault(pid, []).append(f"{who}: {SCORE_LABELS[other.score]}")
        rows = []
        for c in cases.cases:
            r = mine.get(c.patient_id)
            st = "unrated" if r is None else ("stale" if stale.get(c.patient_id) else "rated")
            if dataset != "all" and c.dataset != dataset:
                continue
            if status in ("unrated", "rated", "stale") and st != status:
                continue
            if status in SCORES and (r is None or r.score != status or st == "stale"):
                continue
            rows.append({"patient_id": c.patient_id, "dataset": c.dataset, "state": st,
                         "score": SCORE_LABELS[r.score] if r else "", "comment": r.comment if r else "",
                         "rated_at": r.rated_at if r else "", "others": "; ".join(others.get(c.patient_id, []))})
        rated = sum(1 for pid in cases.ids() if pid in mine and not stale.get(pid))
        return page("cases.html", rows=rows, status=status, dataset=dataset, datasets=datasets,
                    statuses=STATUS_FILTERS, rated=rated, total=len(cases), score_labels=SCORE_LABELS)

    async def view_png(request: Request) -> Response:
        case = cases.get(request.path_params["patient_id"])
        key, view = request.path_params["key"], request.path_params["view"]
        if case is None or not _KEY_RE.match(key) or view not in VIEWS:
            return PlainError("not found", 404)
        path = state.cache / case.patient_id / key / f"{view}.png"
        try:  # a few hundred kB from the page cache: one read beats a streamed response's thread hops
            data = path.read_bytes()
        except OSError:
            return PlainError("not found (the case was re-rendered: reload the page)", 404)
        # the key is the content's hash: the browser may keep the picture forever
        return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=31536000, immutable"})

    async def api_rate(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"error": "send JSON (content-type application/json)"}, status_code=415)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        case = cases.get(str(body.get("patient_id", "")))
        if case is None:
            return JSONResponse({"error": "no such case"}, status_code=404)
        score = str(body.get("score", "")).strip().lower()
        if score not in SCORES:
            return JSONResponse({"error": f"score must be one of {', '.join(SCORES)}"}, status_code=422)
        comment = body.get("comment") or ""
        if not isinstance(comment, str):
            return JSONResponse({"error": "comment must be text"}, status_code=422)
        current = state.mask_sha(case)
        seen = body.get("mask_sha256")
        if seen and current and seen != current:
            return JSONResponse({"error": "the mask changed since this page was shown: reload and rate again",
                                 "mask_sha256": current}, status_code=409)
        def commit() -> tuple[Rating, str | None]:
            r = add_rating(store, case.patient_id, state.rater, score, comment, current)  # durable on return
            mine, stale = state.status()
            return r, state.next_unrated(case.patient_id, mine, stale)

        from starlette.concurrency import run_in_threadpool

        try:  # the disk flush runs in the thread pool: the event loop keeps serving the other raters
            r, nxt = await run_in_threadpool(commit)
        except ValidationFailed as exc:
            return JSONResponse({"error": exc.message}, status_code=422)
        return JSONResponse({**r.as_dict(), "next": f"/case/{nxt}" if nxt else "/cases?status=all"})

    def api_cases(request: Request) -> Response:
        mine, stale = state.status()
        everyone = latest_by_rater(store) if not state.blind else {}
        out = []
        for c in cases.cases:
            r = mine.get(c.patient_id)
            row: dict[str, Any] = {"patient_id": c.patient_id, "dataset": c.dataset,
                                   "score": r.score if r else None, "comment": r.comment if r else None,
                                   "rated_at": r.rated_at if r else None, "stale": bool(stale.get(c.patient_id)),
                                   "mask_sha256": state.mask_sha(c)}
            if not state.blind:
                row["others"] = {who: x.score for (pid, who), x in everyone.items()
                                 if pid == c.patient_id and who != state.rater}
                row["qc"] = state.qc.get(c.patient_id)
            out.append(row)
        rated = sum(1 for pid in cases.ids() if pid in mine and not stale.get(pid))
        return JSONResponse(json.loads(json.dumps({"rater": state.rater, "blind": state.blind, "rated": rated,
                                                   "total": len(out), "cases": out}, default=str)))

    async def favicon(request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    routes = [
        Route("/", index),
        Route("/case/{patient_id}", case_page),
        Route("/cases", case_list),
        Route("/views/{patient_id}/{key}/{view}.png", view_png),
        Route("/api/ratings", api_rate, methods=["POST"]),
        Route("/api/cases", api_cases),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]

    async def missing(request: Request, exc: Exception) -> Response:
        return not_found("no such page")

    app = Starlette(routes=routes, exception_handlers={404: missing})
    app.state.review = state
    app.add_middleware(SecurityMiddleware, token=token)
    return app


def url_for(host: str, port: int, token: str | None, path: str = "/") -> str:
    """The URL to print: loopback hosts as 127.0.0.1, a wildcard bind as this machine's name."""
    import socket

    shown = host
    if host in ("0.0.0.0", "::", ""):
        shown = socket.gethostname()
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{shown}:{port}{path}{query}"
