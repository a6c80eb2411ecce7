"""The stage table (``stages.yaml``) expanded against a rebuild's variables: commands, inputs, outputs, state.

Expansion is the only logic here: which arguments a stage gets, which paths it reads and writes, and whether
the ledger says it is done. What the stages are and what they run is data in ``stages.yaml``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import ConfigError
from etl.rebuild.ledger import Ledger, fingerprint
from etl.rebuild.spec import RebuildSpec

STAGES_FILE = Path(__file__).with_name("stages.yaml")


class Unset(Exception):
    """A placeholder whose variable has no value."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Formatter(string.Formatter):
    """``str.format`` over the variables, calling lazy (callable) values and refusing unset ones."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        obj, used = super().get_field(field_name, args, kwargs)
        if callable(obj):
            obj = obj()
        if obj is None:
            raise Unset(field_name)
        return obj, used

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        value = kwargs.get(key) if isinstance(key, str) else None
        if isinstance(key, str) and key not in kwargs:
            raise ConfigError(f"stages.yaml uses the unknown variable {{{key}}}", str(STAGES_FILE))
        return value() if callable(value) else value


_FMT = _Formatter()


def fill(template: str, ctx: dict[str, Any]) -> str:
    return _FMT.vformat(str(template), (), ctx)


def lookup(expr: str, ctx: dict[str, Any]) -> Any:
    """The value of ``name`` or ``name[key]`` (None when unset)."""
    try:
        value, _ = _FMT.get_field(expr, (), ctx)
    except (Unset, KeyError):
        return None
    return value


@dataclass
class Command:
    argv: list[str]
    fingerprint: list[str]  # argv without the volatile arguments (parallelism, server addresses)
    allow_failure: bool = False

    @property
    def text(self) -> str:
        return "mamamia " + " ".join(_quote(a) for a in self.argv)


@dataclass
class PathDecl:
    path: Path
    kind: str
    optional: bool = False
    ignore: tuple[str, ...] = ()

    def fingerprint(self) -> dict[str, Any] | None:
        return fingerprint(self.path, self.kind, self.ignore)


@dataclass
class Stage:
    name: str
    title: str
    declared: bool
    commands: list[Command] = field(default_factory=list)
    inputs: list[PathDecl] = field(default_factory=list)
    outputs: list[PathDecl] = field(default_factory=list)
    cases: dict[str, Any] = field(default_factory=dict)
    state: str = "run"  # run | done | absent (not declared by the definition)
    reason: str = ""


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


_KEYS = {
    "stage": {"name", "title", "if", "inputs", "outputs", "cases", "commands"},
    "path": {"path", "kind", "optional", "ignore", "each"},
    "command": {"argv", "if", "each", "allow_failure"},
}


def load_table(path: Path = STAGES_FILE) -> list[dict[str, Any]]:
    """The stage table, with every key checked (a misspelt ``optional`` would silently make an input required)."""
    from etl.yamlfile import load_yaml_mapping

    stages = load_yaml_mapping(path, "rebuild stage table").get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError("the rebuild stage table lists no stages", str(path))
    for i, st in enumerate(stages):
        where = f"{path}: stages[{i}]"
        items = [("stage", st)] if isinstance(st, dict) else []
        if not items or "name" not in st:
            raise ConfigError("a stage must be a mapping with a name", where)
        items += [("path", d) for d in (st.get("inputs") or []) + (st.get("outputs") or [])]
        items += [("command", c) for c in st.get("commands") or []]
        for what, item in items:
            unknown = sorted(set(item) - _KEYS[what]) if isinstance(item, dict) else ["(not a mapping)"]
            if unknown:
                raise ConfigError(f"stage {st['name']}: unknown {what} key {unknown[0]}", where)
            if what == "path" and item.get("kind", "tree") not in ("file", "tree"):
                raise ConfigError(f"stage {st['name']}: kind must be file or tree", where)
    return stages


def stage_names(table: list[dict[str, Any]] | None = None) -> list[str]:
    return [str(s["name"]) for s in (table or load_table())]


def _args(items: list[Any], ctx: dict[str, Any], stage: str) -> tuple[list[str], list[str]]:
    """(argv, argv without volatile arguments) of one command template."""
    argv: list[str] = []
    stable: list[str] = []
    for item in items:
        if isinstance(item, dict) and "each" in item:
            values = lookup(str(item["each"]), ctx) or []
            pairs = values.items() if isinstance(values, dict) else ((None, v) for v in values)
            for key, value in pairs:
                sub = dict(ctx, key=key, value=value) if key is not None else dict(ctx, item=value)
                a, s = _args(list(item["args"]), sub, stage)
                argv += a
                stable += s
            continue
        if isinstance(item, dict):
            if "if" in item and not lookup(str(item["if"]), ctx):
                continue
            if "flag" in item:
                words = [str(item["flag"])]
            else:
                try:
                    words = [str(item["opt"]), fill(item["value"], ctx)]
                except Unset:
                    continue
            argv += words
            if not item.get("volatile"):
                stable += words
            continue
        try:
            word = fill(item, ctx)
        except Unset as exc:
            raise ConfigError(f"stage {stage} needs {{{exc.name}}}, which the definition does not set",
                              "rebuild section") from None
        argv.append(word)
        stable.append(word)
    return argv, stable


def _paths(decls: list[dict[str, Any]], ctx: dict[str, Any]) -> list[PathDecl]:
    out: list[PathDecl] = []
    for d in decls:
        if "each" in d:
            values = lookup(str(d["each"]), ctx) or {}
            pairs = values.items() if isinstance(values, dict) else ((None, v) for v in values)
            for key, value in pairs:
                sub = dict(ctx, key=key, value=value) if key is not None else dict(ctx, item=value)
                out += _paths([{k: v for k, v in d.items() if k != "each"}], sub)
            continue
        try:
            p = Path(fill(d["path"], ctx))
        except Unset:
            continue  # an input the definition does not declare (no exclusions file, no base table)
        out.append(PathDecl(p, str(d.get("kind", "tree")), bool(d.get("optional", False)),
                            tuple(str(g) for g in d.get("ignore") or ())))
    return out


def expand(spec: RebuildSpec, table: list[dict[str, Any]] | None = None) -> list[Stage]:
    """Every stage of the table with its commands and paths for this rebuild (absent ones kept, for the status)."""
    ctx = spec.variables
    stages: list[Stage] = []
    for raw in table or load_table():
        name = str(raw["name"])
        declared = "if" not in raw or bool(lookup(str(raw["if"]), ctx))
        st = Stage(name, str(raw.get("title", name)), declared, cases=dict(raw.get("cases") or {}))
        if not declared:
            st.state, st.reason = "absent", "not declared by the definition"
            stages.append(st)
            continue
        for cmd in raw.get("commands") or []:
            if "if" in cmd and not lookup(str(cmd["if"]), ctx):
                continue
            items = lookup(str(cmd["each"]), ctx) if "each" in cmd else [None]
            for item in items or []:
                sub = dict(ctx, item=item) if item is not None else ctx
                argv, stable = _args(list(cmd["argv"]), sub, name)
                allow = bool(lookup(str(cmd["allow_failure"]), sub)) if "allow_failure" in cmd else False
                st.commands.append(Command(argv, stable, allow))
        st.inputs = _paths(list(raw.get("inputs") or []), ctx)
        st.outputs = _paths(list(raw.get("outputs") or []), ctx)
        stages.append(st)
    return stages


def overlaps(a: Path, b: Path) -> bool:
    """One path is the other or contains it."""
    return a == b or a in b.parents or b in a.parents


def assess(stage: Stage, ledger: Ledger) -> tuple[str, str]:
    """("done" | "run", why) from the ledger and the paths as they are now."""
    entry = ledger.get(stage.name)
    if entry is None:
        return "run", "never ran"
    if entry.get("status") != "ok":
        return "run", f"last run {entry.get('status', 'unfinished')}"
    if entry.get("commands") != [c.fingerprint for c in stage.commands]:
        return "run", "command changed"
    recorded_in = entry.get("inputs") or {}
    for decl in stage.inputs:
        key = ledger.key(decl.path)
        if recorded_in.get(key) != decl.fingerprint():
            return "run", f"input changed: {key}"
    if set(recorded_in) - {ledger.key(d.path) for d in stage.inputs}:
        return "run", "inputs changed"
    recorded_out = entry.get("outputs") or {}
    for decl in stage.outputs:
        key = ledger.key(decl.path)
        now = decl.fingerprint()
        if now is None and not decl.optional:
            return "run", f"output missing: {key}"
        if recorded_out.get(key) != now:
            return "run", f"output changed: {key}"
    return "done", "outputs complete and up to date"
