"""Phase selection on real study layouts, as generated DICOM: the series filter never silently drops part of a
dynamic, a dynamic held in one series is the dynamic, recorded series UIDs settle the rest, and every series
carries the rule that decided (`--dry-run`)."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from etl.errors import DicomError
from etl.layout import Layout
from etl.synth.dicom import StudySpec, StudyTruth, add_series, write_study
from etl.transform.dicom import read_phase, scan

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DERIVED = ("DERIVED", "PRIMARY", "OTHER")
MAP = ("DERIVED", "SECONDARY", "OTHER")


def study(tmp: Path, name: str = "CASE_S", seed: int = 11, **kw) -> StudyTruth:
    base = dict(patient_id=name, vendor="GE", matrix=(20, 24), n_slices=6, n_phases=3, extra_non_dicom=False)
    return write_study(tmp / name, StudySpec(**{**base, **kw}), seed=seed)


def assert_is_truth(inv, truth: StudyTruth) -> None:
    """The phases are the truth's, in order: same voxel values at the same LPS positions."""
    assert len(inv.phases) == truth.spec.n_phases
    for p, ph in enumerate(inv.phases):
        data = read_phase(ph).transpose(2, 1, 0)
        idx = np.indices(data.shape).reshape(3, -1)
        world = ph.affine[:3, :3] @ idx + ph.affine[:3, 3:4]
        src = np.rint(np.linalg.solve(truth.grid_affine[:3, :3], world - truth.grid_affine[:3, 3:4])).astype(int)
        np.testing.assert_array_equal(data[tuple(idx)], truth.values[p][src[0], src[1], src[2]])


def rules(inv) -> dict[str, str]:
    return {u: d.rule for u, d in inv.decisions.items()}


# ------------------------------------------------------------------ the two silent failures of issue 16
def test_non_fat_sat_dynamic_keeps_its_pre_contrast(tmp_path: Path, caplog) -> None:
    """"Ax 3D T1 NON FS pre" + posts without fat suppression: all phases, the pre as 0000 (the non_fat_sat
    rule fires on the pre only because "pre" is not one of its `unless` words)."""
    names = ("Ax 3D T1 NON FS pre", "Ax 3D T1 NON FS post1", "Ax 3D T1 NON FS post2", "Ax 3D T1 NON FS post3")
    truth = study(tmp_path, n_phases=4, fat_suppressed=False, series_descriptions=names)
    bland, _ = add_series(truth, "Ax T1 NON FS", seconds=-200, value=40000)  # a real non-FS T1: other family
    with caplog.at_level(logging.WARNING, logger="etl.transform.dicom"):
        inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert inv.phases[0].series_uid == truth.series_uids[0]
    assert inv.filtered == {bland: "non_fat_sat"} and inv.filter_fallback == ["non_fat_sat"]
    pre = inv.decisions[truth.series_uids[0]]
    assert pre.kept and pre.rule == "dynamic_set" and "non_fat_sat not applied" in pre.detail
    assert any("non_fat_sat not applied" in r.getMessage() and truth.series_uids[0] in r.getMessage()
               for r in caplog.records)


def test_single_series_derived_dynamic_beside_original_t1(tmp_path: Path) -> None:
    """A DERIVED single-series dynamic next to an ORIGINAL "ax t1" of the same geometry: the dynamic."""
    truth = study(tmp_path, layout="single_series", image_type=DERIVED)
    t1, _ = add_series(truth, "ax t1", seconds=-300)
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert {ph.series_uid for ph in inv.phases} == {truth.series_uids[0]}
    assert rules(inv) == {truth.series_uids[0]: "single_series_dynamic", t1: "single_series_dynamic"}
    assert inv.filter_fallback == ["derived"] and not inv.filtered
    assert "derived not applied" in inv.decisions[truth.series_uids[0]].detail


# ------------------------------------------------------------------ layouts of the four collections
def test_duke_per_phase_with_bland_t1_before_the_named_pre(tmp_path: Path) -> None:
    """Duke: "ax dyn pre", "ax dyn 1st pass"... one series per phase, and an ORIGINAL non-fat-sat "ax t1" of the
    same geometry acquired before: not a phase, since "ax dyn pre" names the pre-contrast phase."""
    names = ("ax dyn pre", "ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass")
    truth = study(tmp_path, n_phases=4, series_descriptions=names)
    t1, _ = add_series(truth, "ax t1", seconds=-400)
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert inv.decisions[t1].rule == "before_named_pre" and truth.series_uids[0] in inv.decisions[t1].detail


def test_duke_without_a_named_pre_needs_the_recorded_uid(tmp_path: Path, caplog) -> None:
    """Without "pre" in any description the bland "ax t1" is taken as phase 0, with a warning naming it; the
    recorded pre-contrast series UID (manifest tcia_series_uid) settles it."""
    names = ("ax 3d dyn", "ax 3d dyn 1st pass", "ax 3d dyn 2nd pass", "ax 3d dyn 3rd pass")
    truth = study(tmp_path, n_phases=4, series_descriptions=names)
    t1, _ = add_series(truth, "ax t1", seconds=-400)
    with caplog.at_level(logging.WARNING, logger="etl.transform.dicom"):
        loose = scan(truth.root)
    assert loose.phases[0].series_uid == t1 and len(loose.phases) == 5
    assert any(t1 in r.getMessage() and "description family of 'ax t1' differs" in r.getMessage()
               for r in caplog.records)
    assert "--series-uids" in loose.decisions[t1].detail
    inv = scan(truth.root, series_uids=[truth.series_uids[0]])
    assert_is_truth(inv, truth)
    assert inv.decisions[t1].rule == "before_recorded_pre"
    assert {inv.decisions[u].rule for u in truth.series_uids} == {"dynamic_set"}


def test_ispy2_single_series_with_maps(tmp_path: Path) -> None:
    """ISPY2: "ISPY2: VOLSER: uni-lateral cropped: original" holds all phases; PE2 and SER maps beside it."""
    truth = study(tmp_path, layout="single_series", vendor="SIEMENS",
                  series_descriptions=("ISPY2: VOLSER: uni-lateral cropped: original",))
    pe2, _ = add_series(truth, "ISPY2: VOLSER: uni-lateral cropped: PE2", MAP, seconds=900)
    ser, _ = add_series(truth, "ISPY2: VOLSER: uni-lateral cropped: SER", MAP, seconds=901)
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert inv.filtered == {pe2: "parametric_map", ser: "parametric_map"} and not inv.filter_fallback


def test_ispy1_single_series_with_multi_position_subtraction(tmp_path: Path) -> None:
    """A subtraction series with one position per post-contrast phase beside the single-series dynamic: the
    dynamic is the DCE, whatever the filter does."""
    truth = study(tmp_path, layout="single_series", view="sagittal", bilateral=False,
                  series_descriptions=("SAG VIBRANT BILAT DYN",))
    sub, _ = add_series(truth, "SAG VIBRANT SUB", MAP, seconds=600, n_positions=2)
    for series_filter in (True, False):
        inv = scan(truth.root, series_filter=series_filter)
        assert_is_truth(inv, truth)
        assert inv.decisions[sub].rule == ("series_filter subtraction" if series_filter else "single_series_dynamic")


def test_separate_pre_and_multi_phase_post_series(tmp_path: Path) -> None:
    """A pre-contrast series and a post-contrast series holding several phases, one description family."""
    truth = study(tmp_path, layout="single_series", n_phases=4, series_descriptions=("t1_fl3d_tra_dyn",))
    pre_uid = pydicom.uid.generate_uid()
    for f in truth.files[:truth.spec.n_slices]:  # phase 0's files become their own series
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = pre_uid, "t1_fl3d_tra_dyn_pre", 5
        ds.save_as(f, enforce_file_format=True)
    t1, _ = add_series(truth, "t1_fl3d_tra", seconds=-300)  # not of the family: not a phase
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert rules(inv) == {pre_uid: "same_family", truth.series_uids[0]: "single_series_dynamic",
                          t1: "single_series_dynamic"}
    # a pre-contrast series named otherwise is not joined, but its decision says what to do
    for f in truth.files[:truth.spec.n_slices]:
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "Ax T1 pre"
        ds.save_as(f, enforce_file_format=True)
    inv = scan(truth.root)
    assert len(inv.phases) == 3 and inv.decisions[pre_uid].rule == "single_series_dynamic"
    assert "names it pre-contrast" in inv.decisions[pre_uid].detail
    assert len(scan(truth.root, series_uids=[pre_uid, truth.series_uids[0]]).phases) == 4


def test_nact_per_phase_sagittal_all_series_kept(tmp_path: Path) -> None:
    """NACT-like sagittal per-phase study without any other series: every series is a phase (dynamic_set)."""
    truth = study(tmp_path, view="sagittal", bilateral=False, series_descriptions=("Sag Dynamic",) * 3)
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert set(rules(inv).values()) == {"dynamic_set"}


def test_filter_taking_the_whole_dynamic_is_not_applied(tmp_path: Path) -> None:
    """Every phase's description matches a rule ("sub-millimetre"), and a T1 of another geometry would be left:
    the filter would turn a 3-phase case into a 1-phase one, so it is not applied to the dynamic."""
    names = ("T1 dyn sub-mm pre", "T1 dyn sub-mm post1", "T1 dyn sub-mm post2")
    truth = study(tmp_path, series_descriptions=names)
    other, _ = add_series(truth, "ax t1", seconds=-300, matrix=(16, 24))
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert inv.filter_fallback == ["subtraction"] and inv.decisions[other].rule == "other_geometry"
    assert all("would leave 1 phase(s) of the 3" in inv.decisions[u].detail for u in truth.series_uids)


def test_series_numbered_descriptions_are_not_ser_maps(tmp_path: Path) -> None:
    """ "ser 2"-style descriptions ("series 2") are phases, not the SER parametric map."""
    names = ("ax dyn ser 1", "ax dyn ser 2", "ax dyn ser#3")
    truth = study(tmp_path, series_descriptions=names)
    inv = scan(truth.root)
    assert_is_truth(inv, truth)
    assert not inv.filtered


# ------------------------------------------------------------------ recorded series UIDs
def test_recorded_uids_are_exactly_the_phases(tmp_path: Path) -> None:
    truth = study(tmp_path, n_phases=4)
    extra, _ = add_series(truth, "Ax Vibrant MultiPhase FS post4", seconds=900)
    assert len(scan(truth.root).phases) == 5
    inv = scan(truth.root, series_uids=truth.series_uids)
    assert_is_truth(inv, truth)
    assert inv.decisions[extra].rule == "not_recorded"
    assert {inv.decisions[u].rule for u in truth.series_uids} == {"recorded_series"}
    with pytest.raises(DicomError, match="recorded series 1.2.3.4 not found"):
        scan(truth.root, series_uids=["1.2.3.4"])


def test_recorded_series_of_another_geometry_is_refused(tmp_path: Path) -> None:
    truth = study(tmp_path)
    other, _ = add_series(truth, "ax t1", seconds=-300, matrix=(16, 24))
    with pytest.raises(DicomError, match=f"recorded series {other} is not a phase"):
        scan(truth.root, series_uids=[truth.series_uids[0], other])


def test_convert_series_uids_from_manifest_and_file(cli, tmp_path: Path) -> None:
    """`convert --series-uids from-manifest` reads tcia_series_uid of the shipped manifest; a FILE lists
    patient_id, series_uid rows (several per patient allowed)."""
    from etl.caselist import read_manifest
    from etl.resources import data_path

    uid = next(c.tcia_series_uid for c in read_manifest(data_path("manifests/mama-mia-v1.csv"))
               if c.patient_id == "DUKE_001")
    names = ("ax 3d dyn", "ax 3d dyn 1st pass", "ax 3d dyn 2nd pass")  # no "pre": the manifest decides
    truth = study(tmp_path, name="DUKE_001", series_descriptions=names, headers={"tcia_series_uid": uid})
    assert truth.series_uids[0] == uid
    t1, _ = add_series(truth, "ax t1", seconds=-400)
    res = cli("convert", truth.root, tmp_path / "out", "--series-uids", "from-manifest")
    assert res.exit_code == 0, res.stderr
    assert "DUKE_001: converted, 3 phases" in res.stdout
    img = nib.load(Layout.from_definition(tmp_path / "out").image("DUKE_001", 0))
    assert np.asarray(img.dataobj).max() < 40000  # the pre-contrast, not the "ax t1" (values >= 50000)

    listing = tmp_path / "uids.csv"
    listing.write_text("patient_id,series_uid\n" + "".join(f"DUKE_001,{u}\n" for u in truth.series_uids))
    res = cli("convert", truth.root, tmp_path / "dry", "--series-uids", listing, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "DUKE_001: 3 phases" in res.stdout
    line = next(x for x in res.stdout.splitlines() if f"series {t1} " in x)
    assert line.endswith("(ignored: rule not_recorded: not among the recorded series UIDs)"), line
    for u in truth.series_uids:
        assert "(rule recorded_series)" in next(x for x in res.stdout.splitlines() if f"series {u} " in x)
    listing.write_text("patient_id,series_uid\nDUKE_002,1.2.3\n")
    res = cli("convert", truth.root, tmp_path / "none", "--series-uids", listing)
    assert res.exit_code != 0 and "no series UIDs recorded for DUKE_001" in res.stderr


def test_dry_run_names_the_rule_for_every_series(cli, tmp_path: Path) -> None:
    names = ("Ax 3D T1 NON FS pre", "Ax 3D T1 NON FS post1", "Ax 3D T1 NON FS post2")
    truth = study(tmp_path, fat_suppressed=False, series_descriptions=names)
    sub, _ = add_series(truth, "Ax SUB 1", MAP, seconds=300)
    res = cli("convert", truth.root, tmp_path / "out", "--dry-run")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    pre = next(x for x in lines if f"series {truth.series_uids[0]} " in x)
    assert "-> phase 0 (rule dynamic_set: series_filter rule non_fat_sat not applied" in pre
    assert next(x for x in lines if f"series {truth.series_uids[2]} " in x).endswith("-> phase 2 (rule dynamic_set)")
    assert next(x for x in lines if f"series {sub} " in x).endswith("(ignored: series_filter rule subtraction)")
    assert any("series filter not applied: rule(s) non_fat_sat" in x for x in lines)


# ------------------------------------------------------------------ the inventory as data
def test_inventory_tsv_and_dry_run_formats(cli, tmp_path: Path) -> None:
    """convert writes {patient_id}.inventory.tsv beside the imaging JSON; --dry-run --format json|tsv prints
    the same rows: series, description, image type, geometry, images, temporal positions, kept, rule, phase."""
    import csv
    import io
    import json

    truth = study(tmp_path, name="INV_1", layout="single_series", series_descriptions=("Ax Vibrant MultiPhase",))
    sub, _ = add_series(truth, "Ax SUB", MAP, seconds=300, n_positions=2)
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    tsv = (tmp_path / "out" / "imaging" / "inv_1.inventory.tsv").read_text()
    rows = {r["series_uid"]: r for r in csv.DictReader(io.StringIO(tsv), delimiter="\t")}
    dyn = rows[truth.series_uids[0]]
    assert (dyn["description"], dyn["image_type"], dyn["n_images"], dyn["temporal_positions"], dyn["kept"],
            dyn["rule"], dyn["phase_index"]) == ("Ax Vibrant MultiPhase", "ORIGINAL\\PRIMARY\\OTHER", "18", "3",
                                                 "true", "single_series_dynamic", "0,1,2")
    assert dyn["geometry"] == "24x20x6 @ 2x2 mm"
    assert (rows[sub]["kept"], rows[sub]["rule"], rows[sub]["temporal_positions"], rows[sub]["phase_index"]) == \
        ("false", "series_filter subtraction", "2", "")

    res = cli("convert", truth.root, tmp_path / "dry", "--dry-run", "--format", "json")
    assert res.exit_code == 0, res.stderr
    (case,) = json.loads(res.stdout)
    assert case["patient_id"] == "INV_1" and case["phases"] == 3 and case["error"] is None
    assert {r["series_uid"]: r["rule"] for r in case["series"]} == {u: r["rule"] for u, r in rows.items()}
    res = cli("convert", truth.root, tmp_path / "dry", "--dry-run", "--format", "tsv")
    got = list(csv.DictReader(io.StringIO(res.stdout), delimiter="\t"))
    assert [(r["patient_id"], r["series_uid"], r["rule"]) for r in got] == \
        [("INV_1", u, rows[u]["rule"]) for u in rows]
    assert not (tmp_path / "dry").exists()
