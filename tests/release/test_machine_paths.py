"""A release names no folder of the machine that built it (issue 16, deliverable 2).

Built twice from the same inputs copied into two folders, one of them under a fake home folder ($HOME points
there), with every input kind that provenance records (table, staged folder given as an absolute override,
a stage ledger whose records carry absolute paths, a previous release, a split file, an exclusions file):
the two releases are byte-identical and neither contains either folder. ``release verify`` reports an
absolute path of a build machine wherever it is planted, and not ordinary text that merely has slashes.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from etl.release.machine_paths import find_machine_paths, portable, scrub
from etl.release.manifest import write_manifest
from etl.release.verify import verify_release
from tests.release.release_helpers import Staged, write_definition


def _inputs(base: Path, staged: Staged, previous: Path) -> tuple[Path, Path]:
    """The same inputs under ``base``: project (definition, table, split, exclusions, previous release) and a
    staged folder outside the project; returns (definition, staged folder)."""
    project = base / "project"
    work = base / "work" / "staged"
    shutil.copytree(staged.root, work)
    (project / "inputs").mkdir(parents=True)
    shutil.copy(staged.table, project / "inputs" / "table.parquet")
    shutil.copytree(previous, project / "previous")
    ids = sorted(staged.ids)
    split = ["patient_id,split,fold"] + [f"{p},{'test' if i < 2 else 'train'},{'' if i < 2 else i % 5}"
                                         for i, p in enumerate(ids[:-1])]  # the last case is excluded
    (project / "inputs" / "official.csv").write_text("\n".join(split) + "\n")
    (project / "inputs" / "exclusions.csv").write_text(f"patient_id,reason\n{ids[-1]},withdrawn consent\n")
    # what a stage might record: absolute paths of the machine it ran on, alone and inside messages (the
    # same bytes in both copies: the inputs are the same)
    ledger = [{"stage": "convert", "source": "/home/curator_ann/dicom/DUKE_001", "out": "/tmp/convert-7/staged",
               "message": "wrote /tmp/convert-7/staged/images/DUKE_001 from /home/curator_ann/dicom (C:\\Users\\ann\\x)"}]
    (work / "convert_ledger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ledger))
    definition = write_definition(project / "release.yaml", staged="/nowhere/overridden", table="inputs/table.parquet",
                                  previous="previous", split={"seed": 1, "test_fraction": 0.2, "folds": 5,
                                                              "file": "inputs/official.csv"})
    doc = definition.read_text().replace("  caches: []", "  caches: []\n  exclusions: inputs/exclusions.csv")
    definition.write_text(doc)
    return definition, work


def _text_of_every_file(release: Path) -> dict[str, bytes]:
    """Every file's bytes, gzip members decompressed (NIfTI header text fields included)."""
    out = {}
    for p in sorted(release.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            out[p.relative_to(release).as_posix()] = gzip.decompress(data) if p.name.endswith(".gz") else data
    return out


def test_two_folders_same_inputs_byte_identical_and_no_machine_path(staged, release_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    homes = [tmp_path / "a" / "home" / "curator_ann", tmp_path / "elsewhere-b" / "deep" / "x"]
    releases = []
    for base in homes:
        monkeypatch.setenv("HOME", str(base))
        definition, work = _inputs(base, staged, release_dir)
        out = base / "out" / "rel-0.1.0"
        build_release(load_definition(definition, staged=[work]), out)  # absolute override, as the demo does
        releases.append(out)
    a, b = releases
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    files_a, files_b = _text_of_every_file(a), _text_of_every_file(b)
    assert files_a == files_b
    for needle in [str(tmp_path), "curator_ann", "elsewhere-b", str(homes[0]), str(homes[1])]:
        leaks = [rel for rel, data in files_a.items() if needle.encode() in data]
        assert leaks == [], (needle, leaks)

    prov = json.loads((a / "provenance.json").read_text())
    inputs = prov["inputs"]
    assert inputs["table"]["path"] == "inputs/table.parquet"  # inside the definition's folder: relative
    assert inputs["staged"][0]["path"] == "staged"  # outside it: the name alone
    assert inputs["previous"]["path"] == "previous" and inputs["previous"]["release"] == "test-release-0.1.0"
    assert inputs["previous"]["sha256_of_manifest"] == __import__("hashlib").sha256(
        (release_dir / "SHA256SUMS").read_bytes()).hexdigest()
    assert inputs["exclusions"]["path"] == "inputs/exclusions.csv" and len(inputs["exclusions"]["sha256"]) == 64
    assert prov["split"]["file"]["path"] == "inputs/official.csv"
    assert prov["definition_file"]["path"] == "release.yaml"
    assert prov["definition"]["sources"]["staged"] == ["staged"] and prov["definition"]["previous"] == "previous"
    assert prov["cases"]["excluded"] == {sorted(staged.ids)[-1]: "withdrawn consent"}
    (entry,) = prov["stage_ledger"]
    assert entry["path"] == "staged/convert_ledger.jsonl"
    (record,) = entry["records"]
    assert record["source"] == "DUKE_001" and record["out"] == "staged"
    assert record["message"] == "wrote DUKE_001 from dicom (x)"
    assert "CHANGELOG.md" in files_a and b"test-release-0.1.0" in files_a["CHANGELOG.md"]  # diff vs previous ran


def test_verify_reports_a_machine_path_in_any_text_file(release_copy: Path, cli) -> None:
    import nibabel as nib

    info = release_copy / "patient_info_files" / "duke_001.json"
    doc = json.loads(info.read_text())
    doc["note"] = "segmented on /home/alice/mamamia/work"
    info.write_text(json.dumps(doc))
    changelog = release_copy / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\nbuilt from C:\\Users\\bob\\staged\n")
    image = release_copy / "images" / "DUKE_001" / "duke_001_0001.nii.gz"
    img = nib.load(str(image))
    img.header["descrip"] = b"/root/scan.dcm"
    image.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    dictionary = release_copy / "data_dictionary.md"
    dictionary.write_text(dictionary.read_text() + f"\nsee {release_copy}/images\nstaged at /srv/curation/v2/staged\n")
    write_manifest(release_copy)

    found = {(p.where, p.message) for p in verify_release(release_copy, roots=(Path("/srv/curation/v2"),))
             if p.check == "phi"}
    wheres = {w for w, _ in found}
    assert "patient_info_files/duke_001.json note" in wheres
    assert any(w.startswith("CHANGELOG.md line") for w in wheres)
    assert "images/DUKE_001/duke_001_0001.nii.gz header descrip" in wheres
    dict_hits = sorted(m for w, m in found if w.startswith("data_dictionary.md"))
    assert len(dict_hits) == 2 and any("/srv/curation/v2/staged" in m for m in dict_hits)
    assert any(f"{release_copy}/images" in m for m in dict_hits)  # the release's own location
    assert all("absolute path of the build machine" in m for _, m in found)
    res = cli("release", "verify", release_copy)
    assert res.exit_code == 1 and "absolute path of the build machine '/home/alice/mamamia/work'" in res.stdout


@pytest.mark.parametrize("text", [
    "and/or", "mm/s", "T1/T2 ratio", "2020/01/02", "1/root", "https://www.cancerimagingarchive.net/home/x",
    "https://doi.org/10.7937/tmp/abc", "images/DUKE_001/duke_001_0000.nii.gz", "ER+/PR-/HER2-",
    "see docs/tmp/notes", "the /root of the problem is", "~/data", "$HOME/data", "%USERPROFILE%\\x",
])
def test_ordinary_text_is_not_a_machine_path(text: str) -> None:
    assert find_machine_paths(text) == []


@pytest.mark.parametrize(("text", "path"), [
    ("at /home/alice/x.nii.gz now", "/home/alice/x.nii.gz"),
    ('"path": "/Users/bob/Desktop/rel"', "/Users/bob/Desktop/rel"),
    ("file:///home/carol/a", "/home/carol/a"),
    ("(/tmp/pytest-1/rel)", "/tmp/pytest-1/rel"),
    ("C:\\Users\\dan\\release", "C:\\Users\\dan\\release"),
    ("x,/var/folders/ab/T/y,z", "/var/folders/ab/T/y"),
    ("/mnt/nas/curation", "/mnt/nas/curation"),
    ("HOME=/root/.cache/x", "/root/.cache/x"),
])
def test_machine_paths_found(text: str, path: str) -> None:
    assert find_machine_paths(text) == [path]


def test_roots_are_found_literally_and_only_as_whole_folders() -> None:
    roots = ("/srv/curation/v2",)
    assert find_machine_paths("in /srv/curation/v2/staged", roots) == ["/srv/curation/v2/staged"]
    assert find_machine_paths("/srv/curation/v2", roots) == ["/srv/curation/v2"]
    assert find_machine_paths("/srv/curation/v20/x", roots) == []  # another folder


def test_portable_and_scrub(tmp_path: Path) -> None:
    base = tmp_path / "project"
    assert portable(base / "inputs" / "t.parquet", base) == "inputs/t.parquet"
    assert portable(tmp_path / "other" / "staged", base) == "staged"
    assert portable("C:\\Users\\dan\\staged", base) == "staged"
    doc = {"a": str(tmp_path / "other" / "x.csv"), "b": ["https://example.org/home/x", "plain"],
           "c": f"read {base}/inputs/t.parquet and /home/eve/y", "n": 3}
    assert scrub(doc, base, (str(base),)) == {"a": "x.csv", "b": ["https://example.org/home/x", "plain"],
                                             "c": "read inputs/t.parquet and y", "n": 3}
