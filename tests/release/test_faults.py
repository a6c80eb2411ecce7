"""Faults a curator or user can cause, through the real CLI: each is one line `error: ...` (never a traceback)
or, for `release verify`, every problem listed in one run."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.release.manifest import write_manifest
from etl.release.verify import verify_release
from tests.release.release_helpers import write_definition


def _no_traceback(res) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout


# ------------------------------------------------------------------------------------------------ verify


def test_sha256sums_bad_lines_are_each_named_and_the_rest_still_checked(release_copy: Path, cli) -> None:
    sums = release_copy / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    removed = lines[2].split("  ", 1)[1]
    bad_digest = lines[4].split("  ", 1)[1]
    lines[4] = "zz" + lines[4][2:]               # not hex
    lines[6] = lines[6].replace("  ", " ", 1)    # one space: no separator
    del lines[2]                                 # a file no longer listed
    sums.write_text("\n".join(lines) + "\n")
    flipped = release_copy / "images" / "NACT_02" / "nact_02_0000.nii.gz"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    problems = verify_release(release_copy)
    wheres = {p.where: p.message for p in problems if p.check == "checksum"}
    assert "SHA256SUMS line 4" in wheres and "64 hex digits" in wheres["SHA256SUMS line 4"]
    assert "SHA256SUMS line 6" in wheres and "malformed line" in wheres["SHA256SUMS line 6"]
    assert wheres[removed] == "file is not listed in SHA256SUMS"
    assert wheres[bad_digest] == "file is not listed in SHA256SUMS"
    assert "does not match" in wheres["images/NACT_02/nact_02_0000.nii.gz"]  # later lines still verified
    res = cli("release", "verify", release_copy)
    assert res.exit_code == 1 and "SHA256SUMS line 6" in res.stdout
    _no_traceback(res)


def test_truncated_nifti_found_without_checksums(release_copy: Path) -> None:
    target = release_copy / "images" / "ISPY1_1002" / "ispy1_1002_0001.nii.gz"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    problems = verify_release(release_copy, checksums=False)
    assert [(p.check, p.where) for p in problems] == [("nifti", "images/ISPY1_1002/ispy1_1002_0001.nii.gz")]
    assert "truncated" in problems[0].message
    # an uncompressed NIfTI cut short is found too
    import nibabel as nib

    img = nib.load(str(release_copy / "images" / "NACT_01" / "nact_01_0000.nii.gz"))
    raw = release_copy.parent / "x.nii"
    raw.write_bytes(img.to_bytes()[:-100])
    from etl.release.verify import _data_damage

    assert "truncated" in _data_damage(raw, nib.load(str(raw)).header)
    assert _data_damage(release_copy / "images" / "NACT_01" / "nact_01_0000.nii.gz", img.header) is None


def test_renamed_phase_is_named_missing_not_every_later_phase_orphaned(release_copy: Path) -> None:
    case = release_copy / "images" / "DUKE_001"
    (case / "duke_001_0001.nii.gz").rename(case / "duke_001_0007.nii.gz")
    write_manifest(release_copy)
    problems = verify_release(release_copy)
    assert sorted((p.check, p.where) for p in problems) == [
        ("files", "images/DUKE_001/duke_001_0007.nii.gz"),
        ("images", "clinical_and_imaging_info.parquet (DUKE_001)"),
    ]
    img = next(p for p in problems if p.check == "images")
    assert "missing images/DUKE_001/duke_001_0001.nii.gz" in img.message


def test_phi_in_nifti_text_fields_xlsx_and_csv(release_copy: Path, cli) -> None:
    import nibabel as nib
    import openpyxl

    planted = {"images/DUKE_001/duke_001_0001.nii.gz": ("aux_file", b"DOE^JANE"),
               "images/DUKE_002/duke_002_0001.nii.gz": ("intent_name", b"ACC123456"),
               "images/ISPY1_1001/ispy1_1001_0000.nii.gz": ("descrip", b"dob 1965-04-12")}
    for rel, (field, value) in planted.items():
        path = release_copy / rel
        img = nib.load(str(path))
        img.header[field] = value
        data = img.to_bytes()
        path.write_bytes(gzip.compress(data, mtime=0))
    xlsx = release_copy / "clinical_and_imaging_info.xlsx"
    wb = openpyxl.load_workbook(xlsx)
    wb["dataset_info"].cell(row=3, column=2).value = "SMITH^JOHN"
    wb.properties.creator = "Accession Number 7741209"
    wb.save(xlsx)
    csv = release_copy / "train_test_splits.csv"
    csv.write_text(csv.read_text().replace("\n", ",note\n", 1).replace(",train,", ",train,Patient Name X,", 1))
    write_manifest(release_copy)
    phi = {p.where for p in verify_release(release_copy) if p.check == "phi"}
    assert {f"{rel} header {field}" for rel, (field, _) in planted.items()} <= phi
    assert "clinical_and_imaging_info.xlsx[dataset_info] row 1, column dataset" in phi
    assert any(w.startswith("clinical_and_imaging_info.xlsx docProps/core.xml") for w in phi)
    assert any(w.startswith("train_test_splits.csv line") for w in phi)
    res = cli("release", "verify", release_copy)
    assert res.exit_code == 1 and "split:" in res.stdout  # the broken CSV is a finding, not a crash
    _no_traceback(res)


def test_sound_release_headers_have_no_phi_false_positive(release_dir: Path) -> None:
    from etl.release.phi import header_text_hits

    assert list(header_text_hits("")) == [] and list(header_text_hits("FTV mask v2")) == []
    assert verify_release(release_dir) == []


# ------------------------------------------------------------------------------------------------ build


def test_out_that_is_not_a_release_is_never_replaced(staged, tmp_path: Path, cli) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.docx").write_text("years of work")
    res = cli("release", "build", staged.definition, "--out", precious)
    assert res.exit_code == 1 and res.stderr.startswith("error: --out is an existing folder that is not a release")
    assert (precious / "chapter1.docx").read_text() == "years of work" and not (tmp_path / "thesis.partial").exists()
    (tmp_path / "afile").write_text("x")
    res = cli("release", "build", staged.definition, "--out", tmp_path / "afile")
    assert res.exit_code == 1 and "names an existing file" in res.stderr
    _no_traceback(res)


def test_definition_faults_are_one_line_errors(staged, tmp_path: Path, cli) -> None:
    base = yaml.safe_load(staged.definition.read_text())
    base["sources"] = {"staged": [str(staged.root)], "table": str(staged.table)}
    cases = {
        "no_collections": ({k: v for k, v in base.items() if k != "collections"}, "lacks 'collections'"),
        "no_licence": ({**base, "collections": {**base["collections"], "NACT": {"tcia_collection": "x"}}},
                       "collection NACT lacks license, license_url, citation"),
        "unlisted": ({**base, "collections": {k: v for k, v in base["collections"].items() if k != "ISPY2"}},
                     "no licence/citation for collection(s) ISPY2"),
        "bad_seed": ({**base, "split": {"seed": "abc"}}, "seed must be an integer, got 'abc'"),
        "bad_split": ({**base, "split": "random"}, "'split' must be a mapping"),
        "no_split_file": ({**base, "split": {"file": "nope.csv"}}, "split file not found"),
        "bad_table": ({**base, "sources": {"staged": [str(staged.root)], "table": str(tmp_path / "nope.parquet")}},
                      "nope.parquet"),
        "no_version": ({k: v for k, v in base.items() if k != "version"}, "lacks 'version'"),
    }
    for name, (doc, expected) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        res = cli("release", "build", path, "--out", tmp_path / f"rel_{name}")
        assert res.exit_code != 0, name
        err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and expected in err[0], (name, res.stderr)
        _no_traceback(res)
        assert not (tmp_path / f"rel_{name}").exists()
    res = cli("release", "build", staged.definition, "--out", tmp_path / "r", "--previous", tmp_path / "none")
    assert res.exit_code != 0 and "previous release not found" in res.stderr


def test_unknown_definition_key_is_warned(staged, tmp_path: Path, caplog) -> None:
    from etl.release.definition import load_definition

    doc = yaml.safe_load(staged.definition.read_text())
    doc["previus"] = "../old"
    d = staged.definition.parent / "typo.yaml"
    d.write_text(yaml.safe_dump(doc))
    load_definition(d)
    assert "unknown key(s) previus" in caplog.text


# ------------------------------------------------------------------------------------------------ split


def test_split_small_and_degenerate_tables(v1_table: pd.DataFrame, tmp_path: Path, cli) -> None:
    from etl.split import read_split
    from etl.tables import write_table

    # all pcr missing: "missing" is a stratum value like any other
    t = v1_table.copy()
    t["pcr"] = pd.NA
    write_table(t, tmp_path / "nopcr.parquet")
    res = cli("split", tmp_path / "nopcr.parquet", "--out", tmp_path / "a" / "s.csv")
    assert res.exit_code == 0 and "DUKE|missing|luminal" in res.stdout
    sp = read_split(tmp_path / "a" / "s.csv")
    assert len(sp) == len(t) and (sp["split"] == "test").sum() == round(len(t) * 0.2)
    # a stratum of one case and folds larger than strata: pooled, every fold filled
    small = v1_table[v1_table["dataset"].isin(["NACT"])].head(12)
    write_table(small, tmp_path / "small.csv")
    res = cli("split", tmp_path / "small.csv", "--out", tmp_path / "b" / "s.csv", "--folds", "3")
    assert res.exit_code == 0, res.stderr
    folds = json.loads((tmp_path / "b" / "splits_final.json").read_text())
    assert len(folds) == 3 and all(f["val"] and f["train"] for f in folds)
    # more folds than training cases: refused with a typed error naming the option
    res = cli("split", tmp_path / "small.csv", "--out", tmp_path / "c" / "s.csv", "--folds", "11")
    assert res.exit_code == 1 and "11 cross-validation folds need at least 11 training cases" in res.stderr
    assert not (tmp_path / "c").exists()
    _no_traceback(res)
    write_table(v1_table.head(0), tmp_path / "empty.csv")
    res = cli("split", tmp_path / "empty.csv", "--out", tmp_path / "d" / "s.csv")
    assert res.exit_code == 1 and "no rows" in res.stderr


def test_split_file_with_a_bad_fold_is_a_typed_error(tmp_path: Path) -> None:
    from etl.errors import InputUnreadable
    from etl.split import read_split

    p = tmp_path / "s.csv"
    p.write_text("patient_id,split,fold\nDUKE_001,train,0\nDUKE_002,train,x\n")
    with pytest.raises(InputUnreadable, match="fold must be an integer") as exc:
        read_split(p)
    assert "row 2 (DUKE_002)" in exc.value.where


def test_verify_checks_folds(release_copy: Path) -> None:
    p = release_copy / "train_test_splits.csv"
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    train = df.index[df["split"] == "train"][0]
    test = df.index[df["split"] == "test"][0]
    df.loc[train, "fold"] = "9"
    df.loc[test, "fold"] = "1"
    df.to_csv(p, index=False)
    write_manifest(release_copy)
    msgs = {(p.where, p.message) for p in verify_release(release_copy) if p.check == "split"}
    assert (f"train_test_splits.csv ({df.at[train, 'patient_id']})", "training case needs a fold in 0..4, got 9") in msgs
    assert (f"train_test_splits.csv ({df.at[test, 'patient_id']})", "test case must have no fold") in msgs


def test_build_split_reproduces_a_given_split_file(staged, tmp_path: Path, cli) -> None:
    res = cli("split", staged.table, "--out", tmp_path / "sp" / "train_test_splits.csv", "--seed", "3")
    assert res.exit_code == 0
    out = tmp_path / "rel"
    res = cli("release", "build", staged.definition, "--out", out, "--split", tmp_path / "sp" / "train_test_splits.csv")
    assert res.exit_code == 0, res.stderr
    assert (out / "train_test_splits.csv").read_text() == (tmp_path / "sp" / "train_test_splits.csv").read_text()
    assert json.loads((out / "splits_final.json").read_text()) == \
        json.loads((tmp_path / "sp" / "splits_final.json").read_text())
    shutil.rmtree(out)
