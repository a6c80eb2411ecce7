"""The product's synthetic corpus (etl.synth) through NBIA stand-in -> extract -> export -> `mamamia convert`."""

from __future__ import annotations

import pytest

from etl.extract.cache import Cache
from etl.extract.export import export_tcia
from etl.extract.tcia import extract_tcia
from etl.standins.faults import Faults
from etl.standins.nbia import NbiaStandin


@pytest.fixture(scope="module")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from etl.synth.corpus import default_cases, write_corpus

    root = tmp_path_factory.mktemp("synth")
    cases = write_corpus(root / "dicom", default_cases(2), seed=1, profile=None)
    manifest = root / "manifest.csv"
    manifest.write_text("patient_id,dataset,tcia_collection,tcia_patient_id,tcia_series_uid\n" + "".join(
        f"{c.patient_id},{c.dataset},{c.tcia_collection},{c.tcia_patient_id},{c.series_uids[0]}\n" for c in cases.values()
    ))  # fmt: skip
    return root / "dicom", cases, manifest


@pytest.mark.slow
def test_synth_corpus_downloads_exports_and_converts(synth_corpus, tmp_path, fast, cli) -> None:
    root, cases, manifest = synth_corpus
    with NbiaStandin(root, Faults(http500=1, drop_mid_body=1, wrong_md5=1)) as s:
        res = extract_tcia(manifest, tmp_path / "c", api_url=s.api_url, policy=fast, shipped_exclusions=False)
    assert res.ok, res.failure_lines()
    assert res.count("fetched") == sum(len(c.series_uids) for c in cases.values())
    assert Cache(tmp_path / "c").verify(progress=False).ok
    exp = export_tcia(tmp_path / "c", manifest, tmp_path / "dicom", shipped_exclusions=False)
    for pid, case in cases.items():
        written = sorted(p.relative_to(tmp_path / "dicom" / pid) for p in (tmp_path / "dicom" / pid).rglob("*.dcm"))
        source = sorted(p.relative_to(case.folder) for p in case.folder.rglob("*.dcm"))
        assert written == source and exp.cases[pid] == len(source)
    out = cli("convert", tmp_path / "dicom", tmp_path / "staged")
    assert out.exit_code == 0, out.stderr
    for pid, case in cases.items():
        phases = sorted((tmp_path / "staged" / "images" / pid).glob("*.nii.gz"))
        assert len(phases) == case.truth.values.shape[0]  # every DCE phase came through the download
