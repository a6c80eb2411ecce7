"""Loopback stand-in for the Synapse REST calls synapseclient makes to list and download a folder tree.

A local directory becomes a project (the root) with folders and files; ids are synthetic but stable
(the root gets ``root_id``, children ``syn<N>`` in sorted path order). Endpoints, as the client calls them:

==============================================  ===============================================
``GET  /repo/v1/userProfile``                   login check of the bearer token
``GET  /repo/v1/entity/{id}``                   entity JSON
``POST /repo/v1/entity/{id}[/version/{v}]/bundle2``  entity + file handle + restriction info
``POST /repo/v1/entity/children``               one page of children (``nextPageToken`` paging)
``POST /file/v1/fileHandle/batch``              file handle + pre-signed URL (X-Amz-Date/Expires)
``GET  /s3/{handle}/{name}?X-Amz-...``          the bytes; ``Range`` answered with 206
==============================================  ===============================================

Every ``/repo`` and ``/file`` call must carry ``Authorization: Bearer <token>``; a wrong token is answered
with 401. The token is compared, never stored in the request log. Fault knobs: ``etl.standins.faults``
(``http500``, ``drop_mid_body``, ``slow_first_byte`` and ``overlong_content`` on file bodies, ``wrong_md5``
in the file handle batch answer, ``zip_slip`` as a child entity named ``../<name>``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from etl.standins.base import LoopbackServer, Request, Response
from etl.standins.faults import Faults
from etl.types import StrPath

FOLDER = "org.sagebionetworks.repo.model.Folder"
PROJECT = "org.sagebionetworks.repo.model.Project"
FILE = "org.sagebionetworks.repo.model.FileEntity"
S3_HANDLE = "org.sagebionetworks.repo.model.file.S3FileHandle"
_T0 = "2024-06-01T00:00:00.000Z"


@dataclass
class _Entity:
    id: str
    name: str
    parent: str | None
    kind: str  # project | folder | file
    path: Path
    children: list[str] = field(default_factory=list)
    handle_id: str = ""
    md5: str = ""
    size: int = 0

    @property
    def concrete(self) -> str:
        return {"project": PROJECT, "folder": FOLDER, "file": FILE}[self.kind]


class SynapseStandin(LoopbackServer):
    """Synapse REST stand-in serving a directory tree."""

    name = "synapse-standin"

    def __init__(
        self,
        root: StrPath,
        token: str | None = None,
        faults: Faults | None = None,
        root_id: str = "syn60868042",
        page_size: int = 10,
        url_expires: int = 3600,
        **kw: Any,
    ) -> None:
        super().__init__(faults, **kw)
        self.root = Path(root)
        self.token = token
        self.root_id = root_id
        self.page_size = page_size
        self.url_expires = url_expires
        self._secret = secrets.token_bytes(16)
        self.entities: dict[str, _Entity] = {}
        self._by_handle: dict[str, _Entity] = {}
        self._index()

    # ------------------------------------------------------------------ index
    def _index(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"Synapse stand-in root not found: {self.root}")
        self.entities[self.root_id] = _Entity(self.root_id, self.root.name, None, "project", self.root)
        paths = sorted(p for p in self.root.rglob("*") if not p.name.startswith("."))
        base = 70000000
        ids = {self.root: self.root_id}
        for i, p in enumerate(paths, 1):
            eid = f"syn{base + i}"
            ids[p] = eid
            parent = ids[p.parent]
            kind = "folder" if p.is_dir() else "file"
            ent = _Entity(eid, p.name, parent, kind, p)
            if kind == "file":
                data = p.read_bytes()
                ent.md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                ent.size = len(data)
                ent.handle_id = str(9000000 + i)
                self._by_handle[ent.handle_id] = ent
            self.entities[eid] = ent
            self.entities[parent].children.append(eid)

    def id_of(self, relpath: str) -> str:
        """Synthetic id of a path relative to the root (for tests)."""
        target = (self.root / relpath).resolve()
        for e in self.entities.values():
            if e.path.resolve() == target:
                return e.id
        raise KeyError(relpath)

    # ------------------------------------------------------------------ JSON shapes
    def _entity_json(self, e: _Entity) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": e.id, "name": e.name, "etag": f"etag-{e.id}", "createdOn": _T0, "modifiedOn": _T0,
            "createdBy": "3400001", "modifiedBy": "3400001", "concreteType": e.concrete,
        }  # fmt: skip
        if e.parent:
            d["parentId"] = e.parent
        if e.kind == "file":
            d.update(dataFileHandleId=e.handle_id, versionNumber=1, versionLabel="1", isLatestVersion=True)
        return d

    def _handle_json(self, e: _Entity, md5: str | None = None) -> dict[str, Any]:
        d = {
            "id": e.handle_id, "etag": f"fh-{e.handle_id}", "createdBy": "3400001", "createdOn": _T0,
            "modifiedOn": _T0, "concreteType": S3_HANDLE, "contentType": "application/octet-stream",
            "contentMd5": e.md5 if md5 is None else md5, "fileName": e.name, "storageLocationId": 1, "contentSize": e.size,
            "status": "AVAILABLE", "bucketName": "standin-bucket", "key": f"{e.handle_id}/{e.name}",
            "isPreview": False,
        }  # fmt: skip
        if not d["contentMd5"]:  # a handle without an md5 (missing_md5 knob): the key is absent, as on Synapse
            del d["contentMd5"]
        return d

    def _presign(self, e: _Entity) -> str:
        date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = f"/s3/{e.handle_id}/{quote(e.name)}"
        sig = hmac.new(self._secret, f"{path}|{date}|{self.url_expires}".encode(), "sha256").hexdigest()
        return (f"{self.origin}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}"
                f"&X-Amz-Expires={self.url_expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")  # fmt: skip

    # ------------------------------------------------------------------ routing
    def _auth(self, req: Request) -> str:
        header = req.headers.get("authorization", "")
        if not header:
            return "none"
        if self.token is None:
            return "ok"
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        return "ok" if hmac.compare_digest(given.encode(), self.token.encode()) else "bad"

    def handle(self, req: Request) -> tuple[Response, set[str], str, str]:
        path = req.path
        if path.startswith("/s3/"):
            return self._serve_file(req)
        auth = self._auth(req)
        body: dict[str, Any] = {}
        if req.body:
            try:
                body = json.loads(req.body)
            except ValueError:
                return Response.json({"reason": "malformed JSON"}, 400), set(), "", auth
        ids = set(re.findall(r"syn\d+", path)) | {str(v) for k, v in body.items() if k == "parentId" and v}
        for rf in body.get("requestedFiles", []) if isinstance(body.get("requestedFiles"), list) else []:
            ids.add(str(rf.get("associateObjectId")))
        if auth == "bad" or (auth == "none" and self.token is not None):
            return Response.json({"reason": "Invalid access token" if auth == "bad" else "Unauthorized"}, 401), ids, "", auth
        if (injected := self.status_fault(ids, as_json=True)) is not None:
            return injected[0], ids, injected[1], auth
        if path == "/repo/v1/userProfile":
            prof = {"ownerId": "3400001", "userName": "standin-user", "displayName": "Stand-in User", "emails": []}
            return Response.json(prof), ids, "", auth
        if path == "/repo/v1/version":
            return Response.json({"version": "standin"}), ids, "", auth
        m = re.fullmatch(r"/repo/v1/entity/(syn\d+)(?:/version/(\d+))?/bundle2", path)
        if m and req.method == "POST":
            e = self.entities.get(m.group(1))
            if e is None or (m.group(2) and (e.kind != "file" or m.group(2) != "1")):
                return Response.json({"reason": f"{m.group(1)} not found"}, 404), ids, "", auth
            bundle: dict[str, Any] = {"entityType": e.kind}
            fault = ""
            if body.get("includeEntity", True):
                bundle["entity"] = self._entity_json(e)
            if body.get("includeAnnotations"):
                bundle["annotations"] = {"id": e.id, "etag": f"etag-{e.id}", "annotations": {}}
            if body.get("includeFileHandles"):
                md5 = "" if e.kind == "file" and self.faults.take("missing_md5", {e.id, e.name}) else None
                bundle["fileHandles"] = [self._handle_json(e, md5)] if e.kind == "file" else []
                fault = "missing_md5" if md5 == "" else fault
            if body.get("includeRestrictionInformation"):
                bundle["restrictionInformation"] = {"objectId": int(e.id[3:]), "restrictionLevel": "OPEN",
                                                    "hasUnmetAccessRequirement": False}  # fmt: skip
            return Response.json(bundle), ids, fault, auth
        m = re.fullmatch(r"/repo/v1/entity/(syn\d+)", path)
        if m and req.method == "GET":
            e = self.entities.get(m.group(1))
            if e is None:
                return Response.json({"reason": f"{m.group(1)} not found"}, 404), ids, "", auth
            return Response.json(self._entity_json(e)), ids, "", auth
        if path == "/repo/v1/entity/children" and req.method == "POST":
            return self._children(body, ids, auth)
        if path == "/file/v1/fileHandle/batch" and req.method == "POST":
            out, fault = [], ""
            for rf in body.get("requestedFiles", []):
                e = self._by_handle.get(str(rf.get("fileHandleId")))
                if e is None or e.id != rf.get("associateObjectId"):
                    out.append({"fileHandleId": rf.get("fileHandleId"), "failureCode": "NOT_FOUND"})
                    continue
                md5 = None
                if self.faults.take("wrong_md5", {e.id, e.name}):
                    md5, fault = "0" * 32, "wrong_md5"
                elif self.faults.take("missing_md5", {e.id, e.name}):
                    md5, fault = "", "missing_md5"
                item: dict[str, Any] = {"fileHandleId": e.handle_id}
                if body.get("includeFileHandles"):
                    item["fileHandle"] = self._handle_json(e, md5)
                if body.get("includePreSignedURLs"):
                    item["preSignedURL"] = self._presign(e)
                out.append(item)
            return Response.json({"requestedFiles": out}), ids, fault, auth
        return Response.json({"reason": f"stand-in does not implement {req.method} {path}"}, 404), ids, "", auth

    def _children(self, body: dict[str, Any], ids: set[str], auth: str) -> tuple[Response, set[str], str, str]:
        parent = self.entities.get(str(body.get("parentId")))
        if parent is None:
            return Response.json({"reason": "parent not found"}, 404), ids, "", auth
        types = set(body.get("includeTypes") or ["folder", "file"])
        kids = [self.entities[c] for c in parent.children if self.entities[c].kind in types]
        start = int(body.get("nextPageToken") or 0)
        page = kids[start:start + self.page_size]
        nxt = start + self.page_size
        rows, fault = [], ""
        for e in page:
            name = e.name
            if e.kind == "file" and self.faults.take("zip_slip", {e.id, e.name}):
                name, fault = f"../{e.name}", "zip_slip"
            rows.append({"name": name, "id": e.id, "type": e.concrete, "versionNumber": 1, "versionLabel": "1",
                         "benefactorId": int(self.root_id[3:]), "createdOn": _T0, "modifiedOn": _T0,
                         "createdBy": "3400001", "modifiedBy": "3400001"})  # fmt: skip
        return Response.json({"page": rows, "nextPageToken": str(nxt) if nxt < len(kids) else None}), ids, fault, auth

    def _serve_file(self, req: Request) -> tuple[Response, set[str], str, str]:
        m = re.fullmatch(r"/s3/(\d+)/(.+)", req.path)
        e = self._by_handle.get(m.group(1)) if m else None
        if m is None or e is None or unquote(m.group(2)) != e.name:
            return Response.text("NoSuchKey", 404), set(), "", "n/a"
        q = req.query
        date, expires, sig = q.get("X-Amz-Date", ""), q.get("X-Amz-Expires", ""), q.get("X-Amz-Signature", "")
        want = hmac.new(self._secret, f"/s3/{e.handle_id}/{quote(e.name)}|{date}|{expires}".encode(), "sha256").hexdigest()
        if not hmac.compare_digest(sig, want):
            return Response.text("SignatureDoesNotMatch", 403), {e.id}, "", "n/a"
        made = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if (datetime.now(timezone.utc) - made).total_seconds() > int(expires):
            return Response.text("Request has expired", 403), {e.id}, "", "n/a"
        ids = {e.id, e.name}
        data = e.path.read_bytes()
        status, headers = 200, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                                "ETag": f'"{e.md5}"'}  # fmt: skip
        rng = req.headers.get("range", "")
        if rng:
            mr = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not mr:
                return Response.text("bad range", 416), ids, "", "n/a"
            a = int(mr.group(1))
            b = int(mr.group(2)) if mr.group(2) else len(data) - 1
            if a >= len(data):
                return Response(416, b"", {"Content-Range": f"bytes */{len(data)}"}), ids, "", "n/a"
            b = min(b, len(data) - 1)
            headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
            data, status = data[a:b + 1], 206
        if (injected := self.status_fault(ids, as_json=False, skip=("http500",))) is not None:
            return injected[0], ids, injected[1], "n/a"  # http500 stays a REST-only knob
        fault = ""
        if self.faults.take("overlong_content", ids):  # more bytes than the handle's contentSize, same md5 claim
            data, fault = data + b"\0" * max(len(data), 64 * 1024), "overlong_content"
        resp = Response(status, data, headers)
        if self.faults.take("drop_mid_body", ids):
            resp.drop_after, fault = len(data) // 2, "drop_mid_body"
        if self.faults.take("no_content_length", ids):
            resp.close_delimited = True
            fault = (fault + "+" if fault else "") + "no_content_length"
        if self.faults.take("slow_first_byte", ids):
            resp.delay = self.faults.slow_first_byte
            fault = (fault + "+" if fault else "") + "slow_first_byte"
        return resp, ids, fault, "n/a"

    def file_fetches(self, syn_id: str | None = None) -> int:
        """How many file-body GETs were answered (optionally for one entity)."""
        return sum(1 for e in self.log if e.path.startswith("/s3/") and (syn_id is None or syn_id in e.ids))
