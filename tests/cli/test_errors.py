"""The command line a new user meets: usage errors through the installed console script (never a traceback),
help in pipeline order, one exit-code rule for every command, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MAMAMIA = str(Path(sys.executable).with_name("mamamia"))  # the installed console script, not CliRunner


def _script(*args: str | os.PathLike[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAMAMIA, *map(str, args)], capture_output=True, text=True, timeout=timeout)


# (arguments, what the last line must contain, case-insensitively: click's wording differs between versions)
USAGE_ERRORS = {
    "unknown command": (["querry"], "no such command 'querry'; did you mean 'query'?"),
    "unknown subcommand": (["release", "verfy"], "no such command 'verfy'; did you mean 'verify'?"),
    "unknown option": (["--foo"], "no such option"),
    "misspelled option": (["validate", "x.csv", "--sevrity", "error"], "; did you mean --severity"),
    "missing argument": (["validate"], "missing argument 'path'"),
    "bad choice": (["query", "x.csv", "--format", "yaml"], "'yaml' is not one of 'table', 'csv', 'json'"),
    "extra argument": (["query", "x.csv", "--columns", "a", "b"], "got unexpected extra argument"),
    "missing option": (["clinical", "build", "--source", "duke", "FILE"], "missing option '--out'"),
    "missing required option": (["export", "nnunet", "rel"], "missing option '--dataset-id'"),
    "bad int": (["export", "nnunet", "rel", "-d", "seven", "--out", "x"], "invalid value for '--dataset-id'"),
}


@pytest.mark.parametrize("name", sorted(USAGE_ERRORS))
def test_usage_errors_exit_2_without_traceback(name: str) -> None:
    args, expected = USAGE_ERRORS[name]
    proc = _script(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last.lower(), proc.stderr
    assert "--foo" in last if name == "unknown option" else True
    assert proc.stderr.strip().splitlines()[0].startswith("Usage: mamamia")  # the usage line comes first


def test_plain_mamamia_prints_the_help_in_pipeline_order() -> None:
    from etl.cli import COMMAND_MODULES

    proc = _script()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # as click does for a group without command
    assert "Usage: mamamia [OPTIONS] COMMAND [ARGS]..." in proc.stdout
    listed = [line.split()[1] for line in proc.stdout.splitlines()
              if line.startswith("│ ") and line[2] != " " and line.split()[1] in COMMAND_MODULES]
    registered = [m for m in COMMAND_MODULES if m in listed]
    assert listed == registered and {"extract", "convert", "release", "validate", "export", "demo"} <= set(listed)
    assert _script("--help").stdout.strip() == proc.stdout.strip()


def test_version_and_help_exit_0() -> None:
    from etl import __version__

    assert _script("--version").stdout.strip() == f"mamamia-etl {__version__}"
    proc = _script("export", "nnunet", "--help")
    assert proc.returncode == 0 and "--dataset-id" in proc.stdout


# every command on a path that does not exist: exit 2 and one line naming the path
MISSING_PATH = {
    "extract tcia": ["extract", "tcia", "--manifest", "{m}/manifest.csv", "--cache", "{t}/cache"],
    "cache ls": ["cache", "ls", "--cache", "{m}"],
    "cache verify": ["cache", "verify", "--cache", "{m}"],
    "manifest from-table": ["manifest", "from-table", "{m}/table.xlsx"],
    "convert": ["convert", "{m}", "{t}/staged"],
    "clinical build": ["clinical", "build", "--source", "duke={m}/duke.xlsx", "--out", "{t}/out.parquet"],
    "clinical concordance": ["clinical", "concordance", "{m}/a.xlsx", "--reference", "{m}/b.xlsx"],
    "split": ["split", "{m}/table.csv", "--out", "{t}/split.csv"],
    "segment": ["segment", "{m}"],
    "release build": ["release", "build", "{m}/def.yaml", "--out", "{t}/rel"],
    "release verify": ["release", "verify", "{m}"],
    "release diff": ["release", "diff", "{m}", "{m}2"],
    "validate": ["validate", "{m}/table.csv"],
    "summary": ["summary", "{m}/table.csv"],
    "query": ["query", "{m}/table.csv", "--where", "pcr == 1"],
    "export nnunet": ["export", "nnunet", "{m}", "-d", "1", "--out", "{t}/raw"],
    "export monai": ["export", "monai", "{m}", "--out", "{t}/datalist.json"],
    "report": ["report", "{m}"],
    "review prepare": ["review", "prepare", "{m}"],
    "review agreement": ["review", "agreement", "{m}"],
}


@pytest.mark.parametrize("name", sorted(MISSING_PATH))
def test_a_missing_path_is_exit_2_for_every_command(name: str, tmp_path: Path, cli) -> None:
    missing = tmp_path / "nope"
    args = [a.format(m=missing, t=tmp_path) for a in MISSING_PATH[name]]
    res = cli(*args)
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], res.stderr


def test_findings_are_exit_1_and_success_exit_0(tmp_path: Path, v1_table, cli) -> None:
    from etl.tables import write_table

    ok = write_table(v1_table.head(20), tmp_path / "ok.parquet")
    assert cli("validate", ok, "--summary").exit_code == 0
    bad = v1_table.head(20).copy()
    bad.loc[0, "age"] = 250
    assert cli("validate", write_table(bad, tmp_path / "bad.parquet"), "--summary").exit_code == 1


def test_ctrl_c_in_demo_exits_130_with_one_line(tmp_path: Path) -> None:
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while a stage runs."""
    proc = subprocess.Popen([MAMAMIA, "demo", "--out", str(tmp_path / "demo")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until a stage that runs through the nested command line has started
        seen.append(line)
        if line.startswith("[demo] extract-tcia: extract") or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in err and "$ mamamia" not in err  # no stage log tail
    assert err.count("error:") == 1
