"""Expected faults: typed one-line errors naming the case or file, and the other cases go on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from etl.errors import InputUnreadable, SegmentError
from etl.layout import Layout
from etl.segment.config import load_config
from etl.segment.io import find_cases, scan_cases, write_nifti
from etl.segment.nnunet import TINY_MODEL, TRAINER_DIR, export_case, resolve_model


def _clone(layout: Layout, src: str, dst: str, expert: bool = True) -> None:
    for k, p in enumerate(layout.images(src)):
        q = layout.image(dst, k)
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, q)
    if expert and layout.expert_mask(src).exists():
        shutil.copy(layout.expert_mask(src), layout.expert_mask(dst))


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray, dtype: type = np.int16) -> None:
    write_nifti(path, data, nib.Nifti1Image(np.zeros(data.shape, np.int16), affine), dtype=dtype, level=1)


@pytest.fixture
def faulty(phantom_staged: Path, tmp_path: Path, rewrite_case) -> Path:
    """Two good cases plus one of each input fault, on a copy of the phantom staged directory."""
    root = tmp_path / "staged"
    root.mkdir()
    layout = Layout.from_definition(root)
    src = Layout.from_definition(phantom_staged)
    for pid in ("SYN_7001", "SYN_7002"):
        for k, p in enumerate(src.images(pid)):
            layout.image(pid, k).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, layout.image(pid, k))
        layout.expert_mask(pid).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src.expert_mask(pid), layout.expert_mask(pid))
    (root / "images" / "EMPTY_0001").mkdir()  # no phase files at all
    _clone(layout, "SYN_7001", "GAP_0001")
    layout.image("GAP_0001", 1).unlink()  # 0000, 0002, 0003 present: a gap, not a 1-phase case
    _clone(layout, "SYN_7001", "SHIFT_0001")  # phase 0002 moved by 5 mm: same shape, other affine
    img = nib.load(str(layout.image("SHIFT_0001", 2)))
    aff = img.affine.copy()
    aff[0, 3] += 5.0
    _rewrite(layout.image("SHIFT_0001", 2), np.asarray(img.dataobj), aff)
    _clone(layout, "SYN_7001", "SHAPE_0001")  # phase 0002 two rows short
    img = nib.load(str(layout.image("SHAPE_0001", 2)))
    _rewrite(layout.image("SHAPE_0001", 2), np.asarray(img.dataobj)[:-2], img.affine)
    _clone(layout, "SYN_7001", "CORRUPT_0001")  # truncated gzip
    b = layout.image("CORRUPT_0001", 1).read_bytes()
    layout.image("CORRUPT_0001", 1).write_bytes(b[: len(b) // 2])
    _clone(layout, "SYN_7002", "EXPGRID_0001")  # expert mask one slice short
    m = nib.load(str(layout.expert_mask("EXPGRID_0001")))
    _rewrite(layout.expert_mask("EXPGRID_0001"), np.asarray(m.dataobj)[:, :, :-1], m.affine, np.uint8)
    _clone(layout, "SYN_7002", "ZERO_0001", expert=False)  # an all-zero image
    for p in layout.images("ZERO_0001"):
        img = nib.load(str(p))
        _rewrite(p, np.zeros(img.shape), img.affine)
    for pid, kind in (("OBL_0001", "oblique"), ("SAG_0001", "sagittal")):
        _clone(layout, "SYN_7002", pid)
        rewrite_case(root, pid, kind)
    return root


def test_scan_reports_unusable_folders(faulty: Path) -> None:
    layout = Layout.from_definition(faulty)
    cases, problems = scan_cases(layout)
    bad = dict(problems)
    assert sorted(bad) == ["EMPTY_0001", "GAP_0001"]
    assert isinstance(bad["GAP_0001"], InputUnreadable)
    assert bad["GAP_0001"].where == str(layout.image("GAP_0001", 1)) and "0002" in bad["GAP_0001"].what
    assert "GAP_0001" not in [c.patient_id for c in cases] and len(cases) == 9
    with pytest.raises(InputUnreadable):
        find_cases(layout)


def test_export_checks_the_phase_grid(faulty: Path, tmp_path: Path) -> None:
    """nnU-Net input: a phase on another grid is an error naming it (was a ValueError, or a silent misfit)."""
    layout = Layout.from_definition(faulty)
    cases = {c.patient_id: c for c in scan_cases(layout)[0]}
    for pid in ("SHIFT_0001", "SHAPE_0001"):
        with pytest.raises(SegmentError, match="grid of phase 0000") as err:
            export_case(cases[pid], tmp_path / "imagesTs", load_config())
        assert err.value.where == str(layout.image(pid, 2))
    with pytest.raises(SegmentError, match="expert mask is not on the image grid"):
        export_case(cases["EXPGRID_0001"], tmp_path / "imagesTr", load_config(), labels_folder=tmp_path / "labelsTr")


def test_ftv_cli_goes_on_past_faults(cli, faulty: Path) -> None:
    layout = Layout.from_definition(faulty)
    # a finished case whose mask got corrupted afterwards: QC names it, the other rows are written
    _clone(layout, "SYN_7002", "BADMASK_0001")
    layout.automatic_mask("BADMASK_0001").parent.mkdir(parents=True, exist_ok=True)
    layout.automatic_mask("BADMASK_0001").write_bytes(b"not a nifti")

    res = cli("segment", faulty, "--ftv", "--jobs", "2")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 7 case(s) failed")
    for pid, where in (("EMPTY_0001", layout.image("EMPTY_0001", 0)), ("GAP_0001", layout.image("GAP_0001", 1)),
                       ("SHIFT_0001", layout.image("SHIFT_0001", 2)), ("SHAPE_0001", layout.image("SHAPE_0001", 2)),
                       ("CORRUPT_0001", layout.image("CORRUPT_0001", 1)),
                       ("EXPGRID_0001", layout.expert_mask("EXPGRID_0001")),
                       ("BADMASK_0001", layout.automatic_mask("BADMASK_0001"))):
        assert any(line.startswith(f"ERROR etl.segment: {pid}: ") and f"({where})" in line
                   for line in res.stderr.splitlines()), (pid, res.stderr)
    assert "segmented 6 case(s) with FTV" in res.stdout
    for pid in ("SHIFT_0001", "SHAPE_0001", "GAP_0001", "CORRUPT_0001"):
        assert not layout.automatic_mask(pid).exists()
    qc = pd.read_parquet(faulty / "segmentation_qc.parquet").set_index("patient_id")
    assert sorted(qc.index) == ["EXPGRID_0001", "OBL_0001", "SAG_0001", "SYN_7001", "SYN_7002", "ZERO_0001"]
    row = qc.loc["EXPGRID_0001"]  # expert on another grid: volume and count kept, no agreement figures
    assert row["has_expert"] and row["mask_volume_mm3"] > 0 and pd.isna(row["dice"]) and pd.isna(row["hd95_mm"])
    assert qc.loc["ZERO_0001", "mask_volume_mm3"] == 0.0 and qc.loc["ZERO_0001", "lesion_count"] == 0
    for pid in ("OBL_0001", "SAG_0001"):  # the same lesion, stored on a rotated / permuted grid
        assert qc.loc[pid, "dice"] >= 0.8
        img, mask = nib.load(str(layout.image(pid, 1))), nib.load(str(layout.automatic_mask(pid)))
        assert mask.shape == img.shape and np.array_equal(mask.affine, img.affine)
        assert qc.loc[pid, "mask_volume_mm3"] == pytest.approx(qc.loc["SYN_7002", "mask_volume_mm3"])
    assert nib.aff2axcodes(nib.load(str(layout.automatic_mask("SAG_0001"))).affine) != ("L", "P", "S")


def _model_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "model" / TRAINER_DIR
    shutil.copytree(TINY_MODEL / TRAINER_DIR, dst)
    return dst


def test_model_folder_faults(tmp_path: Path) -> None:
    m = _model_copy(tmp_path)
    (m / "plans.json").unlink()
    with pytest.raises(SegmentError, match="plans.json is missing") as err:
        resolve_model(m.parent)
    assert err.value.where == str(m / "plans.json")
    shutil.copy(TINY_MODEL / TRAINER_DIR / "plans.json", m / "plans.json")
    ds = json.loads((m / "dataset.json").read_text())
    ds["channel_names"] = {"0": "pre", "1": "post"}
    (m / "dataset.json").write_text(json.dumps(ds))
    with pytest.raises(SegmentError, match="expects 2 input channels") as err:
        resolve_model(m)
    assert err.value.where == str(m / "dataset.json")
    (m / "dataset.json").write_text("{not json")
    with pytest.raises(SegmentError, match="cannot read model file"):
        resolve_model(m)
    shutil.copy(TINY_MODEL / TRAINER_DIR / "dataset.json", m / "dataset.json")
    assert resolve_model(m, folds=(0, 0)).folds == (0,)
    (m / "fold_1").mkdir()  # a fold without its checkpoint (partial download): not silently left out
    with pytest.raises(SegmentError, match="--folds 0") as err:
        resolve_model(m)
    assert err.value.where == str(m / "fold_1" / "checkpoint_final.pth")
    assert resolve_model(m, folds=(0,)).folds == (0,)
    with pytest.raises(SegmentError, match=r"fold\(s\) \[1\] requested"):
        resolve_model(m, folds=(0, 1))


def test_corrupt_checkpoint_is_one_line(cli, phantom_staged: Path, tmp_path: Path) -> None:
    m = _model_copy(tmp_path)
    ckpt = m / "fold_0" / "checkpoint_final.pth"
    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    for junk in (b"junk\n", ckpt.read_bytes()[:100_000]):  # not a checkpoint; a truncated one
        ckpt.write_bytes(junk)
        res = cli("segment", root, "--model", m, "--device", "cpu")
        assert res.exit_code == 1 and "Traceback" not in res.stderr, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot load the nnU-Net model") and last.endswith(f"({ckpt})")
        assert len(last) < 500


def test_nnunet_case_failure_is_typed(phantom_staged: Path, tmp_path: Path) -> None:
    """An nnU-Net/SimpleITK error on one input becomes a SegmentError naming the case's image."""
    from etl.segment.nnunet import Predictor, predict_case

    case = find_cases(Layout.from_definition(phantom_staged))[0]
    pred = Predictor(resolve_model(None), device="cpu")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated\nmulti-line failure")

    pred._p.predict_single_npy_array = boom  # type: ignore[method-assign]
    with pytest.raises(SegmentError, match="RuntimeError: simulated multi-line failure") as err:
        predict_case(pred, case, load_config(), tmp_path / "work")
    assert err.value.where == str(case.phases[1])
    assert not list((tmp_path / "work").rglob("*.nii.gz"))  # the export and partial outputs are cleared


BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "nnunetv2"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _Block())
"""


def test_without_the_extra(phantom_staged: Path, tmp_path: Path) -> None:
    """torch/nnunetv2 unimportable: table tools import, nnU-Net gives the install hint, --ftv works."""
    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    code = BLOCKER + f"""
import etl.cli, etl.tables, etl.segment.stage
from etl.segment import nnunet_available
assert not nnunet_available()
assert etl.cli.run(["segment", {str(root)!r}]) == 1
assert etl.cli.run(["segment", {str(root)!r}, "--ftv"]) == 0
assert "torch" not in sys.modules and "nnunetv2" not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "error: nnU-Net is not installed" in out.stderr and "--ftv" in out.stderr
    assert "Traceback" not in out.stderr
    assert "segmented 6 case(s) with FTV" in out.stdout


def test_non_finite_voxels_read_as_no_signal(cli, phantom_staged: Path, tmp_path: Path) -> None:
    """NaN slabs (e.g. outside a resampled field of view) must not blank the whole mask."""
    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    layout = Layout.from_definition(root)
    for p in layout.images("SYN_7001"):
        img = nib.load(str(p))
        data = np.asarray(img.dataobj).astype(np.float32)
        data[:3] = np.nan
        data[-2:, :, 0] = np.inf
        write_nifti(p, data, img, dtype=np.float32, level=1)
    res = cli("segment", root, "--ftv")
    assert res.exit_code == 0, res.stderr
    assert "non-finite voxel(s) read as 0" in res.stderr and str(layout.image("SYN_7001", 0)) in res.stderr
    qc = pd.read_parquet(root / "segmentation_qc.parquet").set_index("patient_id")
    assert qc.loc["SYN_7001", "dice"] >= 0.8
    phases = np.stack([np.asarray(nib.load(str(p)).dataobj) for p in layout.images("SYN_7001")])
    from etl.segment.nnunet import input_channel
    from etl.segment.io import read_phases

    got = input_channel(read_phases(find_cases(layout)[0])[0], load_config())
    assert np.isfinite(got).all() and np.isnan(phases).any()
