"""`mamamia demo`: every stage, offline, on a small synthetic corpus served by the loopback stand-ins.

The demo is `mamamia rebuild` (etl/rebuild) run against the loopback stand-ins with a generated corpus: one
code path for the demo and a curator's real rebuild, so the demo doubles as an end-to-end check of both:

1. write a synthetic DCE-MRI corpus in TCIA's shape, its manifest, the previous release (table + expert
   masks, served by the Synapse stand-in) and source spreadsheets in the real Duke / I-SPY1 layouts;
2. `mamamia rebuild` of the shipped release definition up to `segment`, every endpoint and source replaced by
   the demo's (extract TCIA + Synapse into verified caches, export, stage the published expert masks,
   convert, clinical build, split, segment with the shipped tiny nnU-Net model or the declared FTV fallback);
3. the review loop (etl/review/scripted.py): two scripted raters through the real rating app, kappa, blinded
   assignment to three experts, the phantom truth imported as their corrections, figures;
4. `mamamia rebuild` again: the stage ledger skips what is up to date (the corrections are kept: the expert
   mask stage never replaces an imported mask), then release build (with the data card) and release verify
   with the source DICOM's identifying values searched for in the release;
5. `review prepare` of the release, so that `mamamia review serve` opens fast.

What the demo generates is declared in ``etl/synth/demo.yaml``. Each stage's own output goes to
``<out>/demo.log``; the terminal shows one line per stage.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from etl.yamlfile import load_yaml_mapping
from etl.contracts import TABLE_XLSX
from etl.errors import ConfigError, EtlError
from etl.resources import data_path
from etl.types import StrPath

if TYPE_CHECKING:
    import pandas as pd

    from etl.synth.corpus import CorpusCase

log = logging.getLogger("etl.demo")

MARKER = ".mamamia-demo"
# what the demo generates: data beside the synthetic-corpus code, shipped inside the package
DEMO_FILE = Path(__file__).resolve().parent / "synth" / "demo.yaml"


class DemoFailed(EtlError):
    """A stage of the demo exited non-zero."""


@dataclass
class DemoResult:
    out: Path
    release: Path
    seconds: dict[str, float] = field(default_factory=dict)
    segmentation: str = ""


def load_demo_definition(path: StrPath | None = None) -> dict[str, Any]:
    """The demo corpus declaration (default: the shipped ``etl/synth/demo.yaml``), with ``_definition`` the
    release definition it names: a path beside the file, else a shipped data file such as ``release/v1.yaml``."""
    src = Path(path) if path else DEMO_FILE
    doc = load_yaml_mapping(src, "demo definition")
    if not doc.get("cases"):
        raise ConfigError("demo definition lists no cases", str(src))
    doc["_path"] = src
    name = str(doc.get("definition", "release/v1.yaml"))
    beside = src.parent / name
    if beside.is_file():
        doc["_definition"] = beside
    else:
        try:
            doc["_definition"] = data_path(name)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"release definition {name!r} is neither beside the demo file nor a shipped data file",
                              f"{src}: definition") from exc
    return doc


def run_demo(out: StrPath, jobs: int = 2, echo: Callable[[str], None] = print,
             definition: StrPath | None = None) -> DemoResult:
    """Run every stage into ``out`` and return where the release is."""
    from etl.cli import run as cli
    from etl.rebuild import run_rebuild
    from etl.rebuild.run import scoped_env
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
    release_def = Path(demo["_definition"])

    work = out / "work"
    corpus, truth, previous_root = work / "corpus", work / "truth", work / "synapse_project"
    staged, manifest = work / "staged", work / "manifest.csv"

    def stage(name: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        echo(f"[demo] {name} ...")
        fn()
        result.seconds[name] = time.perf_counter() - start
        echo(f"[demo] {name}: done in {result.seconds[name]:.1f} s")

    def mamamia(*args: StrPath) -> None:
        argv = [str(a) for a in args]
        start = logfile.stat().st_size if logfile.exists() else 0
        with logfile.open("a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            print(f"\n$ mamamia {' '.join(argv)}", flush=True)
            code = cli(argv)
        if code == 130:  # Ctrl-C inside the stage: stop the demo, without the stage's log tail
            raise KeyboardInterrupt
        if code != 0:  # the failing command's own output (its last lines), never an earlier stage's
            with logfile.open(encoding="utf-8", errors="replace") as fh:
                fh.seek(start)
                own = fh.read()
            echo("".join(own.splitlines(keepends=True)[-15:]).rstrip())
            raise DemoFailed(f"`mamamia {argv[0]} {argv[1] if len(argv) > 1 else ''}` exited {code}", str(logfile))

    sources: dict[str, Path] = {}

    def write_inputs() -> None:
        written = write_corpus(corpus, cases, seed=seed, truth_dir=truth)
        manifest_table = previous_release_table(ids, seed=seed)
        write_manifest(with_series(manifest_from_table(manifest_table), written), manifest)
        # the previous release on Synapse: its table (carried-forward collections) and expert masks
        write_table(previous_release_table(carried, seed=seed), previous_root / TABLE_XLSX)
        shutil.copytree(truth / "segmentations", previous_root / "segmentations")
        sources.update(write_clinical_sources(work / "sources", [p for p in ids if p not in carried], seed=seed))

    stage("write synthetic corpus, manifest, source spreadsheets", write_inputs)

    token = secrets.token_urlsafe(24)
    with NbiaStandin(corpus) as nbia, SynapseStandin(previous_root, token=token, root_id=demo["synapse_project"]) as syn, \
            scoped_env(SYNAPSE_AUTH_TOKEN=token):
        # the release definition's own `rebuild:` section, with the stand-ins and generated inputs in place of
        # the public endpoints and downloads (no model weights: segment uses the shipped tiny model)
        overrides: dict[str, Any] = {
            "manifest": str(manifest), "cache_verify": True,
            "tcia": {"api_url": nbia.api_url},
            "synapse": {"endpoint": syn.origin,
                        "entities": [{"id": demo["synapse_project"], "include": ["*.xlsx", "segmentations/expert/*"]}]},
            "expert_masks": {"entity": demo["synapse_project"]},
            "clinical": {"sources": {k: str(v) for k, v in sorted(sources.items())}},
            "segment": {"model": None, "device": "cpu"},
            "review": {"prepare": False},   # the views are rendered from the release at the end
            "release": {"dir": str(result.release), "only_staged": True, "report": True},
        }

        def rebuild(last: str | None = None) -> None:
            res = run_rebuild(release_def, work, overrides=overrides, jobs=jobs, last=last, echo=echo,
                              log_file=logfile, label="demo")
            for st in res.stages:
                if st.state == "ran" and st.seconds is not None:  # a stage rerun by the second pass adds up
                    result.seconds[st.name] = result.seconds.get(st.name, 0.0) + st.seconds
                if st.name == "segment" and st.state == "ran":
                    result.segmentation = (f"FTV ({st.note})" if st.note else "nnU-Net (tiny model)")
            if res.interrupted:
                raise KeyboardInterrupt
            if not res.ok:
                raise DemoFailed(res.failed or "rebuild failed", res.failed_where or str(logfile))

        rebuild(last="segment")

        def review_loop() -> None:  # etl/review/scripted.py: scripted raters and experts, real app and commands
            from etl.review.scripted import review_loop as loop

            loop(mamamia, echo, staged, truth, work, out / "figures", seed)

        stage("review: 2 raters via the app, kappa, 3 experts, corrections imported, figures", review_loop)
        rebuild()  # release build + verify; the stages before are up to date and skipped by the ledger
    # the rating app's six views per case, cached beside the (checksummed) release: `review serve` opens fast
    stage("review prepare (views for the rating app)",
          lambda: mamamia("review", "prepare", result.release, "--jobs", str(jobs)))
    return result


def with_series(manifest: pd.DataFrame, written: dict[str, CorpusCase]) -> pd.DataFrame:
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
