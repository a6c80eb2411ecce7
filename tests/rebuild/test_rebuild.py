"""`mamamia rebuild` end to end against the loopback stand-ins: plan, partial run, resume, skip, rerun on change."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

STAGES = ["extract-tcia", "extract-synapse", "cache-export", "expert-masks", "convert", "clinical", "split",
          "segment", "review", "release", "verify"]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The status table's rows by stage name: [state, cases done, failed, seconds, why...]."""
    rows = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in STAGES:
            rows[cells[0]] = cells[1:]
    return rows


def ledger(work: Path) -> dict:
    return json.loads((work / "rebuild.ledger.json").read_text())["stages"]


def test_rebuild_plans_resumes_skips_and_reruns_what_changed(rebuild_inputs, cli, tmp_path):
    inp = rebuild_inputs
    work = tmp_path / "work"
    log = tmp_path / "rebuild.log"
    base = ["rebuild", inp.definition, "--work", work, *inp.args(), "--log", log]

    # 1. the plan of an empty work folder: every declared stage would run, review prepare is not declared
    res = cli(*base, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert f"4 case(s) in the manifest {inp.manifest}" in res.stdout
    rows = table_rows(res.stdout)
    assert [s for s in STAGES if rows[s][0] == "would run"] == [s for s in STAGES if s != "review"]
    assert rows["review"][0] == "absent"
    assert rows["extract-tcia"][-1] == "never ran" and rows["convert"][-1] == "after cache-export"
    assert f"[extract-tcia] mamamia extract tcia --manifest {inp.manifest}" in res.stdout
    assert f"--api-url {inp.api_url}" in res.stdout
    assert "[segment] mamamia segment" in res.stdout and "--ftv" in res.stdout
    assert not work.exists() or not (work / "rebuild.ledger.json").exists()

    # 2. a run stopped after convert (as a killed rebuild would be): extract..convert done, nothing after
    res = cli(*base, "--until", "convert")
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert rows["extract-tcia"][:3] == ["ran", "4/4", "0"]
    assert rows["cache-export"][:3] == ["ran", "4/4", "0"]
    assert rows["convert"][:3] == ["ran", "4/4", "0"]
    assert rows["expert-masks"][:2] == ["ran", "4"]
    assert {rows[s][0] for s in ("clinical", "split", "segment", "release", "verify")} == {"not selected"}
    assert sorted(ledger(work)) == ["cache-export", "convert", "expert-masks", "extract-synapse", "extract-tcia"]
    assert all(e["status"] == "ok" for e in ledger(work).values())
    assert len(list((work / "staged" / "imaging").glob("*.imaging.json"))) == 4
    assert not (work / "clinical_and_imaging_info.parquet").exists()
    converted = {p: p.stat().st_mtime_ns for p in (work / "staged" / "images").rglob("*.nii.gz")}

    # 3. the full run resumes at the first stage not done; the done ones are skipped, not redone
    res = cli(*base)
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    for s in ("extract-tcia", "extract-synapse", "cache-export", "expert-masks", "convert"):
        assert rows[s][0] == "up to date", (s, rows[s])
    for s in ("clinical", "split", "segment", "release", "verify"):
        assert rows[s][0] == "ran", (s, rows[s])
    assert rows["clinical"][1:3] == ["4/4", "0"] and rows["segment"][1:3] == ["4/4", "0"]
    assert {p: p.stat().st_mtime_ns for p in converted} == converted
    release = work / "release" / "mama-mia-1.0.0"
    assert res.stdout.strip().splitlines()[-1] == f"release: {release}"
    table = pd.read_parquet(release / "clinical_and_imaging_info.parquet")
    assert sorted(table["patient_id"]) == sorted(inp.ids)
    assert len(list((release / "segmentations" / "expert").glob("*.nii.gz"))) == 4  # from the Synapse stand-in
    assert len(list((release / "segmentations" / "automatic").glob("*.nii.gz"))) == 4  # FTV, as the definition says
    assert (release / "train_test_splits.csv").read_text() == (work / "splits" / "train_test_splits.csv").read_text()
    assert cli("release", "verify", release).exit_code == 0
    text = log.read_text()
    assert f"$ mamamia release verify {release} --phi-from-dicom {work / 'dicom'}" in text
    assert f"--base {work / 'synapse' / 'syn60868042' / 'clinical_and_imaging_info.xlsx'}" in text

    # 4. nothing changed: every stage is skipped and the release is left as it was
    sums = (release / "SHA256SUMS").stat().st_mtime_ns
    res = cli(*base)
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert {s: rows[s][0] for s in STAGES if s != "review"} == {s: "up to date" for s in STAGES if s != "review"}
    assert (release / "SHA256SUMS").stat().st_mtime_ns == sums
    res = cli(*base, "--dry-run")
    assert "nothing: every selected stage is up to date" in res.stdout

    # 5. an input changed (the Duke spreadsheet gets another patient's ages): clinical and what follows rerun
    from etl.synth.clinical_sources import write_duke_source

    old_ages = table.set_index("patient_id")["age"].to_dict()
    write_duke_source(inp.sources["duke"], ["DUKE_001", "DUKE_002"], seed=7)
    res = cli(*base, "--dry-run")
    rows = table_rows(res.stdout)
    assert rows["clinical"][0] == "would run" and rows["clinical"][-1] == f"input changed: {inp.sources['duke']}"
    assert rows["convert"][0] == "up to date" and rows["release"][-1] == "after clinical"
    res = cli(*base)
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert [s for s in STAGES if rows[s][0] == "ran"] == ["clinical", "split", "release", "verify"]
    new = pd.read_parquet(release / "clinical_and_imaging_info.parquet").set_index("patient_id")
    assert new.loc["ISPY1_1001", "age"] == old_ages["ISPY1_1001"] and new.loc["NACT_01", "age"] == old_ages["NACT_01"]
    assert [new.loc[p, "age"] for p in ("DUKE_001", "DUKE_002")] != [old_ages["DUKE_001"], old_ages["DUKE_002"]]

    # 6. killed in the middle of convert (the ledger says running, one case's outputs are gone): convert reruns
    #    and converts only that case
    entries = ledger(work)
    entries["convert"]["status"] = "running"
    (work / "rebuild.ledger.json").write_text(json.dumps({"version": 1, "stages": entries}))
    rows = table_rows(cli(*base, "--dry-run").stdout)
    assert rows["convert"][0] == "would run" and rows["convert"][-1] == "last run running"
    assert rows["cache-export"][0] == "up to date"
    for p in (work / "staged" / "images" / "NACT_01").glob("*"):
        p.unlink()
    (work / "staged" / "imaging" / "nact_01.imaging.json").unlink()
    res = cli(*base, "--until", "convert")
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert rows["convert"][0] == "ran" and rows["convert"][-1] == "last run running"
    assert "1 converted, 3 already done, 0 failed" in log.read_text().rsplit("$ mamamia convert", 1)[1]

    # 7. --from/--until: redo exactly the named stages, whatever the ledger says
    res = cli(*base, "--from", "segment", "--until", "segment")
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert rows["segment"][0] == "ran" and rows["segment"][-1] == "--from segment"
    assert {rows[s][0] for s in STAGES if s not in ("segment", "review")} == {"not selected"}

    # 8. a definition that asks for review prepare gets it after segment, through `mamamia review prepare`
    res = cli(*base, "--set", "review.prepare=true", "--dry-run")
    rows = table_rows(res.stdout)
    assert rows["review"][0] == "would run", rows["review"]
    assert rows["release"][-1] == "after clinical"  # NACT_01 was reconverted in 6.: its imaging values are new
    assert f"[review] mamamia review prepare {work / 'staged'} --definition {inp.definition}" in res.stdout
    res = cli(*base, "--set", "review.prepare=true", "--until", "review")
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert rows["review"][:3] == ["ran", "4/4", "0"] and rows["release"][0] == "not selected"
    assert len(list((work / "staged" / "review").glob("*/current.json"))) == 4


def test_a_missing_input_names_the_stage_and_path_before_anything_runs(rebuild_inputs, cli, tmp_path):
    work = tmp_path / "work"
    gone = tmp_path / "no-such-sheet.xlsx"
    res = cli("rebuild", rebuild_inputs.definition, "--work", work, *rebuild_inputs.args(), "--source", f"duke={gone}")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: stage clinical: input missing ({gone})"
    assert not (work / "cache").exists()  # nothing was downloaded
    res = cli("rebuild", rebuild_inputs.definition, "--work", work, "--source", f"duke={gone}", "--dry-run")
    assert res.exit_code == 2 and f"  [clinical] {gone}" in res.stdout


def test_a_failed_stage_stops_the_chain_with_the_status_table(rebuild_inputs, cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "clinical_and_imaging_info.parquet").write_bytes(b"not a parquet file")
    (work / "staged" / "images").mkdir(parents=True)
    res = cli("rebuild", rebuild_inputs.definition, "--work", work, "--from", "split", "--until", "segment")
    assert res.exit_code == 1
    rows = table_rows(res.stdout)
    assert rows["split"][0] == "failed"
    assert rows["segment"][0] == "pending" and rows["release"][0] == "not selected"
    assert rows["convert"][0] == "not selected"
    assert res.stderr.strip().splitlines()[-1].startswith("error: stage split failed: `mamamia split ")
    assert ledger(work)["split"]["status"] == "failed"


def test_unknown_stage_and_bad_rebuild_keys_are_one_line_errors(rebuild_inputs, cli, tmp_path):
    res = cli("rebuild", rebuild_inputs.definition, "--work", tmp_path, "--until", "convrt", "--dry-run")
    assert res.exit_code == 1 and "unknown stage 'convrt'" in res.stderr and "convert" in res.stderr
    res = cli("rebuild", rebuild_inputs.definition, "--work", tmp_path, "--set", "clinical.sourecs=x", "--dry-run")
    assert res.exit_code == 1 and "unknown key rebuild.clinical.sourecs" in res.stderr


def test_the_shipped_v1_definition_plans_every_public_source(cli, tmp_path):
    """release/v1.yaml is a complete rebuild: NBIA by manifest, both Synapse entities, sources, weights + FTV."""
    from etl.resources import data_path

    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("Clinical_and_Other_Features.xlsx", "I-SPY_1_All_Patient_Clinical_and_Outcome_Data.xlsx"):
        (sources / name).write_bytes(b"placeholder: the plan only checks that it is there")
    res = cli("rebuild", data_path("release/v1.yaml"), "--work", tmp_path, "--dry-run", "--jobs", "2",
              "--scheduler", "tcp://127.0.0.1:8786")
    assert res.exit_code == 0, res.stderr
    assert "1506 case(s) in the manifest" in res.stdout
    assert "--api-url https://nbia.cancerimagingarchive.net/nbia-api/services/v4/" in res.stdout
    assert "extract synapse --entity syn60868042" in res.stdout and "extract synapse --entity syn61247992" in res.stdout
    assert f"--base {tmp_path / 'synapse' / 'syn60868042' / 'clinical_and_imaging_info.xlsx'}" in res.stdout
    convert = next(line for line in res.stdout.splitlines() if "[convert]" in line)
    assert convert.endswith("--jobs 2 --scheduler tcp://127.0.0.1:8786")
    release = next(line for line in res.stdout.splitlines() if "[release]" in line)
    assert "mamamia release build " in release and release.endswith("--jobs 2 --scheduler tcp://127.0.0.1:8786")
    # --jobs and --scheduler are volatile: the ledger's command fingerprint is the same with or without them,
    # so a ledger written before the release build took them does not redo the stage
    from etl.rebuild.plan import expand
    from etl.rebuild.spec import load_spec

    def release_command(**run) -> tuple[list[str], list[str]]:
        stage = next(s for s in expand(load_spec(data_path("release/v1.yaml"), tmp_path, **run)) if s.name == "release")
        return stage.commands[0].argv, stage.commands[0].fingerprint

    argv, fingerprint = release_command(jobs=2, scheduler="tcp://127.0.0.1:8786")
    assert argv[-4:] == ["--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"]
    assert fingerprint == release_command()[1] == argv[:-4]
    # the weights are not there yet, so the plan says segment would use the declared FTV fallback
    assert "masks come from the declared FTV fallback" in res.stdout


def test_an_optional_synapse_entity_that_fails_is_noted_and_retried(rebuild_inputs, cli, tmp_path):
    """The weights are optional in v1: a failure there is `partial`, does not stop the chain, reruns next time."""
    work = tmp_path / "work"
    entities = '[{id: syn60868042, include: ["*.xlsx"]}, {id: syn99999999, optional: true}]'
    args = ["rebuild", rebuild_inputs.definition, "--work", work, *rebuild_inputs.args(), "--set",
            f"synapse.entities={entities}", "--from", "extract-synapse", "--until", "extract-synapse",
            "--log", tmp_path / "rebuild.log"]
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    rows = table_rows(res.stdout)
    assert rows["extract-synapse"][0] == "partial"
    assert "`mamamia extract synapse --entity syn99999999" in rows["extract-synapse"][-1]
    assert "(optional; rerun to retry)" in rows["extract-synapse"][-1]
    assert ledger(work)["extract-synapse"]["status"] == "partial"
    assert (work / "cache" / "synapse" / "ledger.sqlite").exists()  # the first entity was fetched
    res = cli("rebuild", rebuild_inputs.definition, "--work", work, "--set", f"synapse.entities={entities}",
              "--until", "extract-synapse", "--dry-run")
    assert table_rows(res.stdout)["extract-synapse"][-1] == "last run partial"
