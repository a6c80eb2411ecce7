"""The rating app over real HTTP (uvicorn on 127.0.0.1): navigation, security, blind mode, stale ratings,
concurrent raters."""

from __future__ import annotations

import http.client
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from etl.review.app import create_app
from etl.review.prepare import prepare_views
from etl.review.server import running_server
from etl.review.store import add_rating, history, latest_by_rater, open_store
from tests.review.rating_helpers import REVIEWABLE, copy_staged, review_staged


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return review_staged(tmp_path_factory)


@pytest.fixture(scope="session")
def cache(staged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("review-cache")
    res = prepare_views(staged, cache=out)
    assert sorted(res.rendered) == REVIEWABLE and res.failed == []
    return out


def _raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET with the path sent exactly as written (no client-side dot-segment normalisation)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, body


def test_navigation_rating_and_progress(staged: Path, cache: Path, tmp_path: Path) -> None:
    app = create_app(staged, tmp_path / "r.sqlite", "alice", cache=cache)
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        assert c.get("/").headers["location"] == "/case/DUKE_7001"  # first unrated
        page = c.get("/case/DUKE_7001").text
        assert "rated 0 / 5" in page and "left is on the screen&#39;s right" in page.replace("'", "&#39;")
        srcs = re.findall(r'<img src="(/views/[^"]+)"', page)
        assert len(srcs) == 6
        for src in srcs:
            r = c.get(src)
            assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
        sha = re.search(r'data-mask-sha256="([0-9a-f]{64})"', page).group(1)
        r = c.post("/api/ratings", json={"patient_id": "DUKE_7001", "score": "good", "comment": "fine",
                                         "mask_sha256": sha})
        assert r.status_code == 200 and r.json()["next"] == "/case/DUKE_7002"
        assert c.get("/").headers["location"] == "/case/DUKE_7002"
        # rating a later case: the next unrated after it wraps past the end
        r = c.post("/api/ratings", json={"patient_id": "NACT_7005", "score": "missed"})
        assert r.json()["next"] == "/case/DUKE_7002"
        assert "rated 2 / 5" in c.get("/case/DUKE_7002").text
        assert c.get("/case/NACT_7006").status_code == 404  # no automatic mask: not in the review
        lst = c.get("/cases", params={"status": "unrated"}).text
        assert {"DUKE_7002", "ISPY1_7003", "ISPY1_7004"} == set(re.findall(r'/case/([A-Z0-9_]+)"', lst))
        lst = c.get("/cases", params={"status": "missed", "dataset": "NACT"}).text
        assert re.findall(r'/case/([A-Z0-9_]+)"', lst) == ["NACT_7005"]
        assert c.post("/api/ratings", json={"patient_id": "DUKE_7001", "score": "great"}).status_code == 422
        assert c.post("/api/ratings", json={"patient_id": "XX_1", "score": "good"}).status_code == 404
        assert c.post("/api/ratings", content=b"score=good",
                      headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
        api = c.get("/api/cases").json()
        assert api["rated"] == 2 and api["total"] == 5
        assert {x["patient_id"]: x["score"] for x in api["cases"]}["DUKE_7001"] == "good"
    assert [r.comment for r in history(tmp_path / "r.sqlite", "DUKE_7001")] == ["fine"]


def test_views_of_the_empty_mask_go_through_the_lesion_box(cache: Path) -> None:
    import json

    rec = json.loads((cache / "NACT_7005" / "current.json").read_text())
    assert rec["point_source"] == "box"
    rec = json.loads((cache / "DUKE_7001" / "current.json").read_text())
    assert rec["point_source"] == "mask"


def test_path_traversal_and_unknown_names_are_404(staged: Path, cache: Path, tmp_path: Path) -> None:
    app = create_app(staged, tmp_path / "r.sqlite", "alice", cache=cache)
    key = next(p.name for p in (cache / "DUKE_7001").iterdir() if p.is_dir())
    with running_server(app) as url:
        for path in ["/case/../../etc/passwd", "/case/..%2F..%2Fetc%2Fpasswd", "/case/%2E%2E",
                     f"/views/DUKE_7001/{key}/../../../../etc/passwd", f"/views/DUKE_7001/{key}/current.png",
                     f"/views/..%2FDUKE_7001/{key}/post_axial.png", "/views/DUKE_7001/..%2F..%2F/post_axial.png",
                     "/static/../app.py", "/static/..%2Fapp.py", "/case/DUKE_7001%00"]:
            status, body = _raw_get(url, path)
            assert status == 404, path
            assert "root:" not in body and "import" not in body
        assert _raw_get(url, f"/views/DUKE_7001/{key}/post_axial.png")[0] == 200


def test_token_required_off_loopback_and_host_check(staged: Path, cache: Path, tmp_path: Path) -> None:
    token = "t0k3n-for-the-test"
    app = create_app(staged, tmp_path / "r.sqlite", "alice", cache=cache, token=token)
    with running_server(app) as url:
        with httpx.Client(base_url=url) as c:
            assert c.get("/cases").status_code == 403
            assert c.get("/static/review.css").status_code == 403
            assert c.post("/api/ratings", json={"patient_id": "DUKE_7001", "score": "good"}).status_code == 403
            assert c.get("/cases", params={"token": "wrong"}).status_code == 403
            r = c.get("/cases", params={"token": token})
            assert r.status_code == 200 and "HttpOnly" in r.headers["set-cookie"]
            assert c.get("/cases").status_code == 200  # the cookie carries it from now on
        with httpx.Client(base_url=url, headers={"authorization": f"token {token}"}) as c:
            assert c.post("/api/ratings", json={"patient_id": "DUKE_7001", "score": "good"}).status_code == 200
    app = create_app(staged, tmp_path / "r.sqlite", "alice", cache=cache)
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        # loopback without a token: a page elsewhere reaching it through DNS rebinding is refused
        assert c.get("/cases", headers={"host": "attacker.example:8765"}).status_code == 403
        r = c.post("/api/ratings", json={"patient_id": "DUKE_7001", "score": "poor"},
                   headers={"origin": "http://attacker.example"})
        assert r.status_code == 403
        csp = c.get("/cases").headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp


def test_rater_name_and_comment_are_escaped_blind_hides_context(staged: Path, cache: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    evil = '<script>alert("x")</script>'
    store = open_store(db)
    add_rating(store, "DUKE_7001", "bob", "poor", comment="<img src=x onerror=alert(1)>")
    app = create_app(staged, db, evil, cache=cache)
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        page = c.get("/case/DUKE_7001").text
        assert evil not in page and "&lt;script&gt;" in page
        assert "<img src=x" not in page and "&lt;img src=x" in page  # bob's comment shown, escaped
        assert "Other raters" in page and "bob: poor" in page
        assert "onerror" not in c.get("/cases").text.replace("&lt;img src=x onerror=alert(1)&gt;", "")
        assert c.get("/api/cases").json()["cases"][0]["others"] == {"bob": "poor"}
    blind = create_app(staged, db, "carol", blind=True, cache=cache)
    with running_server(blind) as url, httpx.Client(base_url=url) as c:
        page = c.get("/case/DUKE_7001").text
        assert "bob" not in page and "Other raters" not in page and "Dice" not in page and "blind" in page
        assert "bob" not in c.get("/cases").text
        row = c.get("/api/cases").json()["cases"][0]
        assert "others" not in row and "qc" not in row


def test_changed_mask_makes_the_rating_stale_and_is_rerendered(staged: Path, tmp_path: Path) -> None:
    import nibabel as nib

    from etl.segment.io import write_nifti

    root = copy_staged(staged, tmp_path / "staged")
    db = tmp_path / "r.sqlite"
    app = create_app(root, db, "alice")  # no prepare: views are rendered on first display
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        page = c.get("/case/ISPY1_7003").text
        old_sha = re.search(r'data-mask-sha256="([0-9a-f]{64})"', page).group(1)
        old_src = re.findall(r'<img src="(/views/[^"]+)"', page)[0]
        assert c.post("/api/ratings", json={"patient_id": "ISPY1_7003", "score": "poor",
                                            "mask_sha256": old_sha}).status_code == 200
        assert "rated 1 / 5" in c.get("/case/DUKE_7001").text
        # an expert (or a new model) replaces the mask
        mask_path = root / "segmentations" / "automatic" / "ispy1_7003.nii.gz"
        like = nib.load(str(mask_path))
        write_nifti(mask_path, (np.asarray(like.dataobj) > 0)[:, :, ::-1].astype(np.uint8), like, level=1)
        page = c.get("/case/ISPY1_7003").text
        assert "stale" in page and "rated 0 / 5" in page
        assert re.findall(r'<img src="(/views/[^"]+)"', page)[0] != old_src  # re-rendered for the new mask
        assert c.get(old_src).status_code == 404
        assert "ISPY1_7003" in c.get("/cases", params={"status": "stale"}).text
        r = c.post("/api/ratings", json={"patient_id": "ISPY1_7003", "score": "good", "mask_sha256": old_sha})
        assert r.status_code == 409  # rated from a page showing the old mask: refused, nothing stored
        assert len(history(db, "ISPY1_7003")) == 1
        assert c.get("/").headers["location"] == "/case/DUKE_7001"


def test_two_raters_concurrently_nothing_lost(staged: Path, cache: Path, tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    apps = [create_app(staged, db, name, cache=cache) for name in ("alice", "bob")]
    answered: dict[str, list[int]] = {"alice": [], "bob": []}
    errors: list[str] = []

    def rate(url: str, name: str, worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(100):
                pid = REVIEWABLE[(i + worker) % len(REVIEWABLE)]
                r = c.post("/api/ratings", json={"patient_id": pid, "score": ["good", "poor"][i % 2],
                                                 "comment": f"{name} {worker} {i}"})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                else:
                    answered[name].append(r.json()["id"])

    with running_server(apps[0]) as url_a, running_server(apps[1]) as url_b:
        threads = [threading.Thread(target=rate, args=(u, n, w)) for u, n in ((url_a, "alice"), (url_b, "bob"))
                   for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(answered["alice"]) == len(answered["bob"]) == 200
    store = open_store(db)
    rows = store.query("SELECT id, rater, comment FROM ratings")
    assert len(rows) == 400 and {r["id"] for r in rows} == set(answered["alice"]) | set(answered["bob"])
    assert len(latest_by_rater(store)) == 10  # 5 cases x 2 raters


def test_release_cache_is_beside_the_release(tmp_path: Path) -> None:
    """A release is checksummed: its views go to RELEASE.review/, and it still verifies."""
    from etl.release.build import build_release
    from etl.release.definition import load_definition
    from etl.release.verify import verify_release
    from etl.review.cases import load_cases
    from tests.release.release_helpers import make_staged

    st = make_staged(tmp_path)
    rel = tmp_path / "rel" / "test-release-0.1.0"
    build_release(load_definition(st.definition), rel)
    cases = load_cases(rel)
    assert cases.kind == "release" and len(cases) == 6 and cases.cases[0].dataset == "DUKE"
    res = prepare_views(cases)
    assert res.cache == rel.with_name(rel.name + ".review") and len(res.rendered) == 6
    assert not (rel / "review").exists()
    assert verify_release(rel) == []
    shutil.rmtree(res.cache)


def test_every_asset_a_page_references_ships_in_the_package() -> None:
    """Templates and static files live inside etl/ (the wheel carries them); nothing points elsewhere."""
    from etl.review.app import STATIC, TEMPLATES

    refs = set()
    for tpl in TEMPLATES.glob("*.html"):
        text = tpl.read_text()
        assert "http://" not in text and "https://" not in text
        refs |= set(re.findall(r'(?:src|href)="/static/([^"]+)"', text))
    assert refs == {"review.css", "review.js", "favicon.svg"}
    assert all((STATIC / r).is_file() for r in refs)
    assert STATIC.parent.parent.name == "etl"
