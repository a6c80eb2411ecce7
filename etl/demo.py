"""`mamamia demo`: every stage, offline, on a small synthetic corpus served by the loopback stand-ins.

The demo drives the real command line stage by stage, exactly as a curator would type it, so it doubles
as an end-to-end check of the CLI contract:

1. write a synthetic DCE-MRI corpus in TCIA's shape (and the lesion masks a previous release published);
2. serve it from the NBIA stand-in and the previous release from the Synapse stand-in;
3. `extract tcia` + `extract synapse` into a verified cache, `cache export` to DICOM folders;
4. `convert` to oriented NIfTI + imaging variables; `clinical build` from synthetic source spreadsheets in
   the real Duke / I-SPY1 layouts, carrying ISPY2 and NACT forward from the previous release;
5. `split` (stratified train/test + folds; the build reproduces it with ``--split``);
6. `segment` (the shipped tiny nnU-Net model, or FTV when nnU-Net is not installed);
7. `release build` (data card, checksums, built-in verify), then `release verify` with the source DICOM's
   identifying values searched for in the release; `summary`.

What the demo generates is declared in ``release/demo.yaml``. Each stage's own output goes to
``<out>/demo.log``; the terminal shows one line per stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError, EtlError
from etl.resources import data_path

log = logging.getLogger("etl.demo")

MARKER = ".mamamia-demo"


class DemoFailed(EtlError):
    """A stage of the demo exited non-zero."""


@dataclass
class DemoResult:
    out: Path
    release: Path
    seconds: dict[str, float] = field(default_factory=dict)
    segmentation: str = ""


def _nnunet_unusable(found: bool) -> str | None:
    """Why the nnU-Net path cannot run here, or None. Found is not enough: a broken install (a torch build
    that does not load, a torchvision that does not match) only shows on import, and the demo segments in
    this same process right after, so the import is not wasted."""
    if not found:
        return "not installed"
    try:
        import nnunetv2.inference.predict_from_raw_data  # noqa: F401  (imports torch too)
    except Exception as exc:  # any failure to import means: use FTV, and say why
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def load_demo_definition(path: str | Path | None = None) -> dict[str, Any]:
    src = Path(path) if path else data_path("release/demo.yaml")
    doc = load_yaml_mapping(src, "demo definition")
    if not doc.get("cases"):
        raise ConfigError("demo definition lists no cases", str(src))
    doc["_path"] = src
    return doc


def run_demo(out: str | Path, jobs: int = 2, echo: Callable[[str], None] = print,
             definition: str | Path | None = None) -> DemoResult:
    """Run every stage into ``out`` and return where the release is."""
    from etl.cli import run as cli
    from etl.segment.nnunet import nnunet_available
    from etl.standins.nbia import NbiaStandin
    from etl.standins.synapse import SynapseStandin
    from etl.synth.clinical_sources import write_clinical_sources
    from etl.synth.corpus import write_corpus
    from etl.synth.release_table import previous_release_table
    from etl.tables import write_table
    from etl.transform.manifest import manifest_from_table, write_manifest

    demo = load_demo_definition(definition)
    out = _prepare(Path(out))
    logfile = out / "demo.log"
    result = DemoResult(out=out, release=out / "release")
    seed = int(demo.get("seed", 0))
    cases = [dict(c, dataset=c["patient_id"].partition("_")[0]) for c in demo["cases"]]
    ids = [c["patient_id"] for c in cases]
    source_names = set(demo.get("sources", []))
    carried = [pid for pid in ids if pid.partition("_")[0].lower() not in source_names]
    release_def = Path(demo["_path"]).parent / demo.get("definition", "v1.yaml")

    work = out / "work"
    corpus, truth, previous_root = work / "corpus", work / "truth", work / "synapse_project"
    cache, dicom, previous = work / "cache", work / "dicom", work / "previous_release"
    staged, table = work / "staged", work / "clinical_and_imaging_info.parquet"
    manifest = work / "manifest.csv"

    def stage(name: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        echo(f"[demo] {name} ...")
        fn()
        result.seconds[name] = time.perf_counter() - start
        echo(f"[demo] {name}: done in {result.seconds[name]:.1f} s")

    def mamamia(*args: str | Path) -> None:
        argv = [str(a) for a in args]
        with logfile.open("a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            print(f"\n$ mamamia {' '.join(argv)}", flush=True)
            code = cli(argv)
        if code != 0:
            tail = "".join(logfile.read_text().splitlines(keepends=True)[-15:])
            echo(tail.rstrip())
            raise DemoFailed(f"`mamamia {argv[0]} {argv[1] if len(argv) > 1 else ''}` exited {code}", str(logfile))

    def write_inputs() -> None:
        written = write_corpus(corpus, cases, seed=seed, truth_dir=truth)
        manifest_table = previous_release_table(ids, seed=seed)
        write_manifest(_with_series(manifest_from_table(manifest_table), written), manifest)
        # the previous release on Synapse: its table (carried-forward collections) and expert masks
        write_table(previous_release_table(carried, seed=seed), previous_root / "clinical_and_imaging_info.xlsx")
        shutil.copytree(truth / "segmentations", previous_root / "segmentations")
        sources.update(write_clinical_sources(work / "sources", [p for p in ids if p not in carried], seed=seed))

    sources: dict[str, Path] = {}
    stage("write synthetic corpus, manifest, source spreadsheets", write_inputs)

    token = secrets.token_urlsafe(24)
    with NbiaStandin(corpus) as nbia, SynapseStandin(previous_root, token=token, root_id=demo["synapse_project"]) as syn, \
            _env(SYNAPSE_AUTH_TOKEN=token):
        stage("extract tcia (NBIA stand-in)",
              lambda: mamamia("extract", "tcia", "--manifest", manifest, "--cache", cache, "--api-url", nbia.api_url,
                              "--jobs", jobs))
        stage("extract synapse (Synapse stand-in)",
              lambda: mamamia("extract", "synapse", "--entity", demo["synapse_project"], "--cache", cache,
                              "--endpoint", syn.origin))
    def export() -> None:
        mamamia("cache", "verify", "--cache", cache)
        mamamia("cache", "export", "--cache", cache, "--manifest", manifest, "--out", dicom)
        mamamia("cache", "export", "--cache", cache, "--synapse", demo["synapse_project"], "--out", previous)

    stage("cache verify + export", export)
    stage("convert DICOM -> NIfTI + imaging variables",
          lambda: mamamia("convert", dicom, staged, "--jobs", jobs))

    def expert_masks() -> None:
        shutil.copytree(previous / "segmentations", staged / "segmentations", dirs_exist_ok=True)

    stage("stage expert masks from the previous release", expert_masks)
    stage("clinical build (sources + previous release + imaging)",
          lambda: mamamia("clinical", "build", *_source_args(sources), "--base",
                          previous / "clinical_and_imaging_info.xlsx", "--imaging", staged, "--manifest", manifest,
                          "--out", table))
    def split() -> None:
        from etl.release.definition import load_definition
        from etl.split import read_split

        settings = load_definition(release_def, staged=[staged], table=table).split
        mamamia("split", table, "--out", splits, "--seed", settings.seed, "--test-fraction", settings.test_fraction,
                "--folds", settings.folds,
                *(["--min-stratum", settings.min_stratum] if settings.min_stratum is not None else []))
        sp = read_split(splits)
        n_test = int((sp["split"] == "test").sum())
        echo(f"[demo]   {len(sp) - n_test} train / {n_test} test, {settings.folds} folds over train "
             f"(seed {settings.seed}; balance table in {logfile.name})")

    splits = work / "splits" / "train_test_splits.csv"
    stage("split (stratified by dataset x pcr x tumor_subtype)", split)
    why_not = _nnunet_unusable(nnunet_available())
    use_nnunet = why_not is None
    result.segmentation = "nnU-Net (tiny model)" if use_nnunet else "FTV (nnU-Net not installed)"
    if not use_nnunet:
        echo(f"[demo] note: nnU-Net v2 (torch + nnunetv2) is not importable ({why_not}), so masks come from the "
             "FTV fallback (PE/SER thresholds, no model); install the `segment` extra to use the shipped tiny model")
    stage(f"segment: {result.segmentation}",
          lambda: mamamia("segment", staged, *([] if use_nnunet else ["--ftv"]), "--device", "cpu"))
    stage("release build",
          lambda: mamamia("release", "build", release_def, "--out", result.release, "--staged", staged,
                          "--table", table, "--split", splits, "--only-staged"))
    # verify again from outside the build: checksums re-hashed, and the source DICOM's own identifying values
    # (the synthetic corpus carries names, birth dates, accession numbers) searched for in every file
    stage("release verify (checksums, schema, files, orientation, PHI vs the source DICOM)",
          lambda: mamamia("release", "verify", result.release, "--phi-from-dicom", dicom))
    return result


def _source_args(sources: dict[str, Path]) -> list[str]:
    return [arg for name, path in sorted(sources.items()) for arg in ("--source", f"{name}={path}")]


def _with_series(manifest, written):  # type: ignore[no-untyped-def]
    """The manifest's series UID column from what the corpus actually wrote (first series of each case)."""
    manifest = manifest.copy()
    manifest["tcia_series_uid"] = [written[pid].series_uids[0] for pid in manifest["patient_id"]]
    return manifest


def _prepare(out: Path) -> Path:
    """An empty demo folder; a previous demo run there is replaced, anything else is refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError("output folder exists and is not an earlier demo; choose another --out", str(out))
        shutil.rmtree(out / "work", ignore_errors=True)
        (out / "demo.log").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `mamamia demo`; safe to delete\n")
    return out.resolve()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
