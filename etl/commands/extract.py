"""`mamamia extract`: download from TCIA (NBIA) and Synapse into a verified cache; run loopback stand-ins."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from etl.extract.outcome import RunResult
    from etl.extract.retry import RetryPolicy
    from etl.standins.base import LoopbackServer
    from etl.standins.faults import Faults

NBIA_DEFAULT = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
SYNAPSE_DEFAULT = "https://repo-prod.prod.sagebase.org"

extract_app = typer.Typer(
    help="Download source data into a content-addressed, verified, resumable cache.",
    no_args_is_help=True,
)


def _policy(retries: int, timeout: float, backoff: float, max_backoff: float) -> RetryPolicy:
    from etl.extract.retry import RetryPolicy

    if retries < 0 or timeout <= 0 or backoff < 0 or max_backoff < 0:
        from etl.errors import UsageError

        raise UsageError("--retries/--backoff must be >= 0 and --timeout > 0", "options")
    return RetryPolicy(attempts=retries + 1, base_delay=backoff, max_delay=max_backoff, timeout=timeout)


def _report_failures(kind: str, res: RunResult) -> None:
    """Exit 1 after listing every failure; a run that gave up on a dead service says so first."""
    lines = res.failure_lines()
    if res.gave_up:
        typer.echo(f"error: {res.gave_up}; stopped early, rerun to resume", err=True)
    typer.echo(f"error: {len(lines)} {kind} failed:", err=True)
    for line in lines:
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(1)


@extract_app.command("tcia")
def tcia(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest CSV (patient_id, dataset, tcia_collection, "
                                  "tcia_patient_id, tcia_series_uid), e.g. manifests/mama-mia-v1.csv."),
    cache: Path = typer.Option(..., "--cache", "-c", help="Cache directory (created if missing)."),
    api_url: str = typer.Option(NBIA_DEFAULT, "--api-url", help="NBIA v4 REST base URL (a mirror, or a stand-in "
                                "from `mamamia extract serve-nbia`)."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=32, help="Series downloaded in parallel."),
    series_only: bool = typer.Option(False, "--series-only", help="Fetch only each case's tcia_series_uid instead of "
                                     "every series NBIA lists for the patient."),
    modality: str = typer.Option("MR", "--modality", help="Only series of this modality ('' for all)."),
    exclusions: Optional[Path] = typer.Option(None, "--exclusions", help="Extra exclusions CSV (patient_id, reason); "
                                              "the shipped manifests/exclusions.csv always applies."),
    no_md5: bool = typer.Option(False, "--no-md5", help="Use getImage instead of getImageWithMD5Hash (no per-file md5)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N manifest cases (trial runs)."),
    retries: int = typer.Option(4, "--retries", help="Retries per request/series after the first attempt."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds without data before a request is abandoned."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry delay in seconds (doubles each retry)."),
    max_backoff: float = typer.Option(30.0, "--max-backoff", help="Longest delay between retries, seconds."),
) -> None:
    """Download the manifest's DICOM series from NBIA; exit 1 listing every series that failed."""
    from etl.extract.tcia import extract_tcia

    res = extract_tcia(
        manifest, cache, api_url=api_url, jobs=jobs, series_only=series_only, exclusions=exclusions,
        modality=modality, md5=not no_md5, policy=_policy(retries, timeout, backoff, max_backoff), limit=limit,
    )  # fmt: skip
    mb = res.fetched_bytes / 1e6
    typer.echo(
        f"tcia: {res.count('fetched')} series fetched ({mb:.1f} MB, {mb / res.seconds if res.seconds else 0:.1f} MB/s), "
        f"{res.count('cached')} already cached, {res.n_failed} failed, "
        f"{len(res.excluded)} case(s) excluded; cache {cache}"
    )
    if not res.ok:
        _report_failures("series/cases", res)


@extract_app.command("synapse")
def synapse(
    entity: str = typer.Option(..., "--entity", "-e", help="Synapse id of a project, folder or file "
                               "(MAMA-MIA dataset: syn60868042; nnU-Net weights: syn61247992)."),
    cache: Path = typer.Option(..., "--cache", "-c", help="Cache directory (created if missing)."),
    endpoint: str = typer.Option(SYNAPSE_DEFAULT, "--endpoint", help="Synapse base URL (repo/auth/file services live "
                                 "under /repo/v1, /auth/v1, /file/v1)."),
    include: list[str] = typer.Option([], "--include", "-i", help="Only files whose relative path matches this glob "
                                      "(repeatable), e.g. 'images/DUKE_*/*' or '*.xlsx'."),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, max=16, help="Files downloaded in parallel."),
    config: Optional[Path] = typer.Option(None, "--synapse-config", help="synapseclient config file with the token "
                                          "(default ~/.synapseConfig); SYNAPSE_AUTH_TOKEN takes precedence."),
    retries: int = typer.Option(4, "--retries", help="Retries per request/file after the first attempt."),
    timeout: float = typer.Option(70.0, "--timeout", help="Seconds without data before a request is abandoned."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry delay in seconds (doubles each retry)."),
    max_backoff: float = typer.Option(30.0, "--max-backoff", help="Longest delay between retries, seconds."),
) -> None:
    """Download a Synapse folder tree, md5-verified; the token comes from SYNAPSE_AUTH_TOKEN or the config."""
    from etl.extract.synapse import extract_synapse

    res = extract_synapse(
        entity, cache, endpoint=endpoint, include=list(include), jobs=jobs,
        policy=_policy(retries, timeout, backoff, max_backoff), config_path=str(config) if config else None,
    )  # fmt: skip
    mb = res.fetched_bytes / 1e6
    typer.echo(
        f"synapse {entity}: {res.count('fetched')} file(s) fetched ({mb:.1f} MB), {res.count('cached')} already cached, "
        f"{res.count('linked')} matched by md5, {res.n_failed} failed; cache {cache}"
    )
    if not res.ok:
        _report_failures("files", res)


def _faults(fault: list[str], target: list[str]) -> Faults:
    from etl.errors import ConfigError
    from etl.standins.faults import Faults

    try:
        return Faults.parse(fault, target)
    except ValueError as exc:
        raise ConfigError(str(exc), "--fault") from exc


_FAULT_HELP = ("Fault knob name=value, repeatable: http500=K, http503=K, http429=K (retry_after=SECONDS), "
               "html_200=K, bad_json=K, drop_mid_body=K, truncate_zip=K, empty_zip=K, duplicate_entry=K, "
               "extra_entries=K, nested_folder=K, wrong_md5=K, missing_md5=K, zip_slip=K, slow_first_byte=SECONDS "
               "with slow_count=K, zip_bomb=K, zip_bomb_lying=K (with bomb_mb=MB), oversize_series=K, "
               "overlong_content=K (Synapse), no_content_length=K (K='always' for permanent).")  # fmt: skip


def _serve(server: LoopbackServer, url_line: str, seconds: Optional[float]) -> None:
    with server:
        typer.echo(url_line)
        typer.echo("serving on 127.0.0.1 until Ctrl-C" + (f" or {seconds:g} s" if seconds else ""), err=True)
        try:
            server.wait(seconds)
        except KeyboardInterrupt:
            pass
    typer.echo(f"stopped after {len(server.log)} request(s)", err=True)


@extract_app.command("serve-nbia")
def serve_nbia(
    corpus: Path = typer.Option(..., "--corpus", help="DICOM corpus: <corpus>/<Collection>/<PatientID>/<SeriesUID>/*.dcm."),
    seconds: Optional[float] = typer.Option(None, "--for", help="Stop after this many seconds."),
    idle: float = typer.Option(3600.0, "--idle", help="Stop after this many seconds without a request."),
    fault: list[str] = typer.Option([], "--fault", help=_FAULT_HELP),
    target: list[str] = typer.Option([], "--target", help="Restrict faults to requests about these ids (repeatable)."),
) -> None:
    """Run the NBIA v4 stand-in on 127.0.0.1 for offline rehearsal; prints the --api-url to use."""
    from etl.errors import InputUnreadable
    from etl.standins.nbia import NbiaStandin

    if not corpus.is_dir():
        raise InputUnreadable("corpus directory not found", str(corpus))
    server = NbiaStandin(corpus, _faults(fault, target), idle_timeout=idle).start()
    _serve(server, f"api-url: {server.api_url}  ({len(server.series)} series)", seconds)


@extract_app.command("serve-synapse")
def serve_synapse(
    root: Path = typer.Option(..., "--root", help="Directory served as a Synapse project tree."),
    root_id: str = typer.Option("syn60868042", "--root-id", help="Synapse id given to the root folder."),
    seconds: Optional[float] = typer.Option(None, "--for", help="Stop after this many seconds."),
    idle: float = typer.Option(3600.0, "--idle", help="Stop after this many seconds without a request."),
    require_token: bool = typer.Option(True, "--require-token/--any-token", help="Accept only the token in "
                                       "SYNAPSE_AUTH_TOKEN (401 for any other); --any-token accepts every bearer."),
    fault: list[str] = typer.Option([], "--fault", help=_FAULT_HELP),
    target: list[str] = typer.Option([], "--target", help="Restrict faults to requests about these ids or file names."),
) -> None:
    """Run the Synapse REST stand-in on 127.0.0.1; prints the --endpoint and --entity to use."""
    import os

    from etl.errors import ConfigError, InputUnreadable
    from etl.standins.synapse import SynapseStandin

    if not root.is_dir():
        raise InputUnreadable("root directory not found", str(root))
    token = os.environ.get("SYNAPSE_AUTH_TOKEN") if require_token else None
    if require_token and not token:
        raise ConfigError("set SYNAPSE_AUTH_TOKEN to the token the stand-in should accept (or use --any-token)",
                          "SYNAPSE_AUTH_TOKEN")  # fmt: skip
    server = SynapseStandin(root, token=token, faults=_faults(fault, target), root_id=root_id, idle_timeout=idle).start()
    _serve(server, f"endpoint: {server.origin}  entity: {root_id}  ({len(server.entities)} entities)", seconds)


def register(app: typer.Typer) -> None:
    """Add `mamamia extract ...` to the root app."""
    app.add_typer(extract_app, name="extract")
