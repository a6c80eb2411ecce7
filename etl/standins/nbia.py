"""Loopback stand-in for the parts of the NBIA v4 REST API that tcia_utils calls for a download.

Serves a corpus directory laid out as ``<root>/<Collection>/<PatientID>/<SeriesInstanceUID>/*.dcm`` under
``<origin>/nbia-api/services/v4/`` (pass that as ``--api-url``):

=====================================  ==============================================================
``getCollectionValues``                JSON ``[{"Collection": ...}]``
``getPatient?Collection=``             JSON patients
``getSeries?Collection&PatientID&...`` JSON series rows (ImageCount, FileSize, SeriesNumber, ...)
``getSeriesSize?SeriesInstanceUID=``   JSON ``[{"TotalSizeInBytes", "ObjectCount"}]``
``getSeriesMetadata`` (POST list=)     CSV with NBIA's spaced headers (``Series Instance UID``...)
``getImage?NewFileNames=Yes&SeriesInstanceUID=``  zip of the series, files renamed ``1-NN.dcm``
``getImageWithMD5Hash?SeriesInstanceUID=``        zip with original names plus ``md5hashes.csv``
=====================================  ==============================================================

Series metadata comes from the DICOM headers (read once at start), so what the stand-in reports is
computed from the corpus, not invented. Fault knobs: see ``etl.standins.faults``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.standins.base import LoopbackServer, Request, Response
from etl.standins.faults import Faults
from etl.types import StrPath

API_PREFIX = "/nbia-api/services/v4/"
_JSON_ENDPOINTS = ("getCollectionValues", "getPatient", "getSeries", "getSeriesSize")


@dataclass
class _Series:
    collection: str
    patient: str
    uid: str
    files: list[Path]
    meta: dict[str, Any]


def _header(path: Path) -> dict[str, Any]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)

    def g(tag: str) -> Any:
        v = ds.get(tag)
        return None if v is None or v == "" else str(v)

    return {
        "StudyInstanceUID": g("StudyInstanceUID"),
        "Modality": g("Modality"),
        "SeriesDescription": g("SeriesDescription"),
        "SeriesNumber": int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None,
        "BodyPartExamined": g("BodyPartExamined"),
        "Manufacturer": g("Manufacturer"),
        "ManufacturerModelName": g("ManufacturerModelName"),
        "SeriesDate": g("SeriesDate"),
        "StudyDate": g("StudyDate"),
    }


class NbiaStandin(LoopbackServer):
    """NBIA v4 stand-in over a DICOM corpus directory."""

    name = "nbia-standin"

    def __init__(self, corpus: StrPath, faults: Faults | None = None, md5_endpoint: bool = True, **kw: Any) -> None:
        super().__init__(faults, **kw)
        self.corpus = Path(corpus)
        self.md5_endpoint = md5_endpoint  # False: behave like a mirror without getImageWithMD5Hash (404)
        self.series: dict[str, _Series] = {}
        self._zips: dict[tuple[str, bool], tuple[bytes, list[tuple[str, str]]]] = {}
        self._zip_lock = threading.Lock()
        self._index()

    @property
    def api_url(self) -> str:
        return self.origin + API_PREFIX

    def _index(self) -> None:
        if not self.corpus.is_dir():
            raise FileNotFoundError(f"NBIA stand-in corpus not found: {self.corpus}")
        for coll in sorted(p for p in self.corpus.iterdir() if p.is_dir()):
            for pat in sorted(p for p in coll.iterdir() if p.is_dir()):
                for ser in sorted(p for p in pat.iterdir() if p.is_dir()):
                    files = sorted(ser.glob("*.dcm"))
                    if not files:
                        continue
                    meta = _header(files[0])
                    meta.update(
                        Collection=coll.name, PatientID=pat.name, SeriesInstanceUID=ser.name,
                        ImageCount=len(files), FileSize=sum(f.stat().st_size for f in files),
                    )  # fmt: skip
                    self.series[ser.name] = _Series(coll.name, pat.name, ser.name, files, meta)

    # ------------------------------------------------------------------ payloads
    def _zip(self, uid: str, with_md5: bool) -> tuple[bytes, list[tuple[str, str]]]:
        key = (uid, with_md5)
        with self._zip_lock:
            if key not in self._zips:
                s = self.series[uid]
                entries: list[tuple[str, bytes]] = []
                for i, f in enumerate(s.files, 1):
                    name = f.name if with_md5 else f"1-{i:02d}.dcm"
                    entries.append((name, f.read_bytes()))
                md5s = [(n, hashlib.md5(b, usedforsecurity=False).hexdigest()) for n, b in entries]
                self._zips[key] = (_build_zip(entries, md5s if with_md5 else None), md5s)
            return self._zips[key]

    def _zip_response(self, uid: str, with_md5: bool, ids: set[str]) -> tuple[Response, str]:
        data, md5s = self._zip(uid, with_md5)
        fault = ""
        faults = self.faults
        for knob in ("empty_zip", "duplicate_entry", "extra_entries", "nested_folder", "missing_md5"):
            if faults.take(knob, ids):
                entries = _read_entries(data)
                if knob == "empty_zip":
                    entries = []
                elif knob == "duplicate_entry":
                    entries.insert(1, entries[0])
                elif knob == "extra_entries":
                    entries += [("LICENSE.txt", b"CC BY 4.0\n"), ("notes/readme.md", b"# synthetic\n")]
                elif knob == "nested_folder":
                    entries = [(f"{uid}/{n}", b) for n, b in entries]
                else:
                    entries = [e for e in entries if e[0] != "md5hashes.csv"]
                data, fault = _build_zip(entries, None), (fault + "+" if fault else "") + knob
        if with_md5 and self.faults.take("wrong_md5", ids):
            entries = _read_entries(data)
            bad = [(n, ("0" * 32 if i == 0 else h)) for i, (n, h) in enumerate(md5s)]
            data, fault = _build_zip([e for e in entries if e[0] != "md5hashes.csv"], bad), "wrong_md5"
        for knob in ("zip_bomb", "zip_bomb_lying", "oversize_series"):
            if self.faults.take(knob, ids):
                data, fault = self._padded_zip(uid, data, with_md5, knob), knob
        if self.faults.take("zip_slip", ids):
            entries = _read_entries(data)
            entries.insert(0, (f"../{uid}-escaped.dcm", b"zip-slip"))
            data, fault = _build_zip(entries, None), "zip_slip"
        resp = Response(200, data, {"Content-Type": "application/zip",
                                    "Content-Disposition": f'attachment; filename="{uid}.zip"'})  # fmt: skip
        if self.faults.take("truncate_zip", ids):
            resp.body = data[: max(1, len(data) * 2 // 3)]
            fault = "truncate_zip"
        if self.faults.take("drop_mid_body", ids):
            resp.headers["Content-Length"] = str(len(resp.body))
            resp.drop_after = len(resp.body) // 2
            fault = "drop_mid_body"
        if self.faults.take("no_content_length", ids):
            resp.close_delimited = True
            fault = (fault + "+" if fault else "") + "no_content_length"
        if self.faults.take("slow_first_byte", ids):
            resp.delay = self.faults.slow_first_byte
            fault = (fault + "+" if fault else "") + "slow_first_byte"
        return resp, fault

    def _padded_zip(self, uid: str, data: bytes, with_md5: bool, knob: str) -> bytes:
        """The series zip with its first DICOM entry padded (md5hashes.csv recomputed, so it stays consistent).

        ``zip_bomb``: zeros, deflated (~1000:1); ``zip_bomb_lying``: the same, but the directory and local
        header state the entry's original size; ``oversize_series``: seeded random bytes (incompressible,
        stored) so that the series is honestly bigger than the size NBIA reports for it."""
        import random

        entries = [e for e in _read_entries(data) if e[0] != "md5hashes.csv"]
        first = next(i for i, (n, _) in enumerate(entries) if n.lower().endswith(".dcm"))
        name, original = entries[first]
        if knob == "oversize_series":
            pad = random.Random(uid).randbytes(int(self.series[uid].meta["FileSize"]) + (1 << 20))
        else:
            pad = bytes(int(self.faults.bomb_mb * (1 << 20)))
        entries[first] = (name, original + pad)
        md5s = [(n, hashlib.md5(b, usedforsecurity=False).hexdigest()) for n, b in entries] if with_md5 else None
        deflate = {name} if knob != "oversize_series" else set()
        out = _build_zip(entries, md5s, deflate=deflate)
        return _state_size(out, name, len(original)) if knob == "zip_bomb_lying" else out

    # ------------------------------------------------------------------ routing
    def handle(self, req: Request) -> tuple[Response, set[str], str, str]:
        if not req.path.startswith(API_PREFIX):
            return Response.text("not found", 404), set(), "", "n/a"
        endpoint = req.path[len(API_PREFIX):]
        q = dict(req.query)
        if req.method == "POST":
            form = {k: v[0] for k, v in _parse_form(req.body).items()}
            q.update(form)
        ids = {v for k, v in q.items() if k in ("SeriesInstanceUID", "PatientID", "Collection") and v}
        if endpoint == "getSeriesMetadata" and q.get("list"):
            ids |= set(q["list"].split(","))
        if (injected := self.status_fault(ids, as_json=False)) is not None:
            return injected[0], ids, injected[1], "n/a"
        if endpoint in _JSON_ENDPOINTS and self.faults.take("bad_json", ids):
            return Response(200, b'[{"Collection": "Synth', {"Content-Type": "application/json"}), ids, "bad_json", "n/a"
        if endpoint == "getCollectionValues":
            names = sorted({s.collection for s in self.series.values()})
            return Response.json([{"Collection": n} for n in names]), ids, "", "n/a"
        if endpoint == "getPatient":
            pats = sorted({(s.collection, s.patient) for s in self.series.values()
                           if not q.get("Collection") or s.collection == q["Collection"]})  # fmt: skip
            rows = [{"PatientId": p, "PatientName": p, "Collection": c} for c, p in pats]
            return Response.json(rows), ids, "", "n/a"
        if endpoint == "getSeries":
            return Response.json([s.meta for s in self._select(q)]), ids, "", "n/a"
        if endpoint == "getSeriesSize":
            s = self.series.get(q.get("SeriesInstanceUID", ""))
            if s is None:
                return Response.json([]), ids, "", "n/a"
            return Response.json([{"TotalSizeInBytes": str(s.meta["FileSize"]), "ObjectCount": len(s.files)}]), ids, "", "n/a"
        if endpoint == "getSeriesMetadata":
            uids = [u for u in q.get("list", "").split(",") if u in self.series]
            return Response.text(_metadata_csv([self.series[u] for u in uids]), content_type="text/csv"), ids, "", "n/a"
        if endpoint == "getImageWithMD5Hash" and not self.md5_endpoint:
            return Response.text("Not Found", 404), ids, "", "n/a"
        if endpoint in ("getImage", "getImageWithMD5Hash"):
            uid = q.get("SeriesInstanceUID", "")
            if uid not in self.series:
                return Response.text(f"series {uid} not found", 404), ids, "", "n/a"
            resp, fault = self._zip_response(uid, endpoint == "getImageWithMD5Hash", ids)
            return resp, ids, fault, "n/a"
        return Response.text(f"unknown endpoint {endpoint}", 404), ids, "", "n/a"

    def _select(self, q: dict[str, str]) -> list[_Series]:
        out = []
        for s in self.series.values():
            if q.get("Collection") and s.collection != q["Collection"]:
                continue
            if q.get("PatientID") and s.patient != q["PatientID"]:
                continue
            if q.get("SeriesInstanceUID") and s.uid != q["SeriesInstanceUID"]:
                continue
            if q.get("Modality") and s.meta.get("Modality") != q["Modality"]:
                continue
            out.append(s)
        return sorted(out, key=lambda s: (s.collection, s.patient, s.meta.get("SeriesNumber") or 0, s.uid))

    def zip_fetches(self, series_uid: str | None = None) -> int:
        """How many zip downloads (either endpoint) were answered, optionally for one series."""
        return sum(
            1 for e in self.log
            if e.path.endswith(("/getImage", "/getImageWithMD5Hash"))
            and (series_uid is None or e.query.get("SeriesInstanceUID") == series_uid)
        )  # fmt: skip


def _parse_form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _build_zip(
    entries: list[tuple[str, bytes]], md5s: list[tuple[str, str]] | None, deflate: set[str] | frozenset[str] = frozenset()
) -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted by the duplicate_entry knob
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            zf.writestr(info, data)
        if md5s is not None:
            text = "Filename,MD5Hash\n" + "".join(f"{n},{h}\n" for n, h in md5s)
            zf.writestr(zipfile.ZipInfo("md5hashes.csv", date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def _state_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size of entry ``name`` in its local header and the central directory (a
    lying directory: the data and CRC stay those of the real, bigger content)."""
    import struct

    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
        struct.pack_into("<I", out, info.header_offset + 22, size)  # local file header: uncompressed size
        pos = zf.start_dir
    while out[pos:pos + 4] == b"PK\x01\x02":  # central directory records
        n, m, k = struct.unpack_from("<HHH", out, pos + 28)
        if out[pos + 46:pos + 46 + n].decode("utf-8") == name:
            struct.pack_into("<I", out, pos + 24, size)
        pos += 46 + n + m + k
    return bytes(out)


def _read_entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


_CSV_COLUMNS = [
    ("Collection", "Collection"), ("Patient ID", "PatientID"), ("Study Instance UID", "StudyInstanceUID"),
    ("Series Instance UID", "SeriesInstanceUID"), ("Study Date", "StudyDate"), ("Series Date", "SeriesDate"),
    ("Modality", "Modality"), ("Series Description", "SeriesDescription"), ("Manufacturer", "Manufacturer"),
    ("Image Count", "ImageCount"), ("File Size", "FileSize"),
]  # fmt: skip


def _metadata_csv(series: list[_Series]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not series:
        return ""
    w.writerow([c for c, _ in _CSV_COLUMNS])
    for s in series:
        w.writerow(["" if s.meta.get(k) is None else s.meta[k] for _, k in _CSV_COLUMNS])
    return buf.getvalue()


def describe(standin: NbiaStandin) -> str:
    """One JSON line for logs and the serve command."""
    return json.dumps({"api_url": standin.api_url, "series": len(standin.series)})
