"""Phase selection: which study, which geometry and which series are the case's dynamic, and why.

Every series of the case gets a ``Decision`` naming the rule that decided (listed by ``--dry-run`` and in
``inventory.tsv``). The rules, in order:

- ``recorded_series``: series UIDs recorded for the case (``convert --series-uids``) settle it. Several
  recorded UIDs are exactly the phases; one recorded UID holding several temporal positions is the
  dynamic; one recorded single-phase UID is the pre-contrast phase, and the later series of its study and
  geometry complete the dynamic (``before_recorded_pre`` drops the earlier ones, ``not_recorded`` the
  other geometries).
- ``single_series_dynamic``: a series holding several temporal positions is the dynamic of its geometry;
  other series of that geometry are not phases of it, except series of the same description family
  (a separate pre-contrast series before a multi-phase post-contrast series: ``same_family``).
- ``dynamic_set``: otherwise the single-phase series of one geometry form the dynamic (one per phase),
  except series of another description family acquired before a series whose description names it the
  pre-contrast phase (``before_named_pre``); a phase whose family differs from all the others' is kept
  with a warning.
- ``series_filter <rule>`` (schemas/imaging_headers.yaml) proposes series that are not DCE. It is not
  applied, with a warning naming the rule, where it would remove part of a dynamic: to a series whose
  description family is a kept phase's (``family_of_dynamic``), and to the unfiltered dynamic when
  filtering would remove all of it, or leave its case with one phase where there were several
  (``filter_fallback``).
- The case's study is the first (by study time) with a multi-phase dynamic; in it, the geometry with the
  most phases (``other_geometry``, ``later_study`` for the rest).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from etl.errors import DicomError
from etl.transform.dicom.model import Decision, Phase
from etl.transform.dicom.series_filter import SeriesRule, description_family, names_pre_contrast

log = logging.getLogger("etl.transform.dicom")


@dataclass
class Selection:
    """The dynamic's phases (acquisition order) and a decision for every series that has phases."""

    phases: list[Phase]
    study: str
    studies: list[str]
    decisions: dict[str, Decision] = field(default_factory=dict)
    filtered: dict[str, str] = field(default_factory=dict)  # series a series_filter rule removed -> rule
    not_applied: dict[str, str] = field(default_factory=dict)  # series a rule proposed but did not remove -> rule


def _key(phases: list[Phase]) -> tuple:
    s0 = phases[0].slices[0]
    return (s0.study_uid, s0.signature)


def _images(phases: list[Phase]) -> int:
    return sum(len(p.slices) for p in phases)


def _start(phases: list[Phase]) -> float:
    times = [p.time for p in phases if p.time is not None]
    return min(times) if times else math.inf


def _dynamic_of(group: dict[str, list[Phase]], families: dict[str, str | None],
                required: Collection[str] = ()) -> tuple[list[str], dict[str, Decision]]:
    """The series of one geometry that form its dynamic, and why the others do not."""
    multi = [u for u, ph in group.items() if len(ph) > 1]
    if not multi:
        return _from_named_pre(group, families, required)
    first = min(ph.slices[0].series_number or 0 for phs in group.values() for ph in phs)
    dyn = max(multi, key=lambda u: (len(group[u]), _images(group[u]),
                                    -((group[u][0].slices[0].series_number or first) - first), u))
    fam = families.get(dyn)
    members, dropped = [dyn], {}
    for u, phases in group.items():
        if u == dyn:
            continue
        if u in required or (len(phases) == 1 and fam is not None and families.get(u) == fam):
            members.append(u)
        else:
            note = f"not a phase: series {dyn} holds the dynamic ({len(group[dyn])} phases)"
            if len(phases) == 1 and names_pre_contrast(phases[0].slices[0].description) and \
                    _start(phases) < _start(group[dyn]):
                note += ("; its description names it pre-contrast but it is not of the dynamic's description "
                         "family: if it is phase 0, record the case's series UIDs (--series-uids)")
            dropped[u] = Decision(False, "single_series_dynamic", note)
    return members, dropped


def _from_named_pre(group: dict[str, list[Phase]], families: dict[str, str | None],
                    required: Collection[str]) -> tuple[list[str], dict[str, Decision]]:
    """One series per phase: all of them, except series of another description family acquired before the
    series whose description names it the pre-contrast phase (Duke's "ax t1" before "ax dyn pre")."""
    members, dropped = sorted(group), dict[str, Decision]()
    pres = [u for u in members if names_pre_contrast(group[u][0].slices[0].description)]
    if not pres:
        return members, dropped
    pre = min(pres, key=lambda u: (_start(group[u]), u))
    t0, fam = _start(group[pre]), families.get(pre)
    for u in members:
        if u not in required and families.get(u) != fam and _start(group[u]) < t0:
            dropped[u] = Decision(False, "before_named_pre",
                                  f"acquired before series {pre} '{group[pre][0].slices[0].description}', the "
                                  "pre-contrast phase by its description, and not of its description family")
    return [u for u in members if u not in dropped], dropped


@dataclass
class _Choice:
    study: str
    studies: list[str]
    members: list[str]
    decisions: dict[str, Decision]

    def n_phases(self, cands: dict[str, list[Phase]]) -> int:
        return sum(len(cands[u]) for u in self.members)


def _choose(cands: dict[str, list[Phase]], families: dict[str, str | None], kept_rule: str = "",
            required: Collection[str] = ()) -> _Choice:
    """The study and the geometry whose dynamic is the case's, among ``cands`` (series -> phases)."""
    sets: dict[tuple, dict[str, list[Phase]]] = defaultdict(dict)
    for uid, phases in cands.items():
        sets[_key(phases)][uid] = phases
    dyn = {key: _dynamic_of(group, families, required) for key, group in sets.items()}

    def n_phases(key: tuple) -> int:
        return sum(len(sets[key][u]) for u in dyn[key][0])

    study_time: dict[str, float] = {}
    for phases in cands.values():
        s0 = phases[0].slices[0]
        t = s0.study_clock if s0.study_clock is not None else _start(phases)
        study_time[s0.study_uid] = min(study_time.get(s0.study_uid, math.inf), t)
    studies = sorted(study_time, key=lambda u: (study_time[u], u))
    dynamic = [u for u in studies if any(n_phases(k) > 1 for k in sets if k[0] == u)]
    study = (dynamic or studies)[0]
    best = max((k for k in sets if k[0] == study),
               key=lambda k: (n_phases(k), sum(_images(sets[k][u]) for u in dyn[k][0])))
    members, dropped = dyn[best]
    decisions: dict[str, Decision] = {}
    multi = [u for u in members if len(cands[u]) > 1]
    for uid in cands:
        if uid in members:
            if kept_rule:
                rule = kept_rule
            elif uid in multi:
                rule = "single_series_dynamic"
            elif multi:
                rule = "same_family"
            else:
                rule = "dynamic_set"
            decisions[uid] = Decision(True, rule)
        elif uid in dropped:
            decisions[uid] = dropped[uid]
        elif cands[uid][0].slices[0].study_uid != study:
            decisions[uid] = Decision(False, "later_study", "a later study of the patient")
        else:
            decisions[uid] = Decision(False, "other_geometry", "another geometry than the dynamic")
    return _Choice(study, studies, members, decisions)


def _recorded(cands: dict[str, list[Phase]], recorded: list[str], where_: str) -> tuple[dict[str, list[Phase]],
                                                                                       dict[str, Decision]]:
    """Restrict the candidates to what the recorded series UIDs allow (see the module docstring)."""
    missing = [u for u in recorded if u not in cands]
    if missing:
        raise DicomError(f"recorded series {', '.join(missing)} not found among the case's image series with "
                         f"geometry ({len(cands)} found)", where_)
    if len(recorded) > 1 or len(cands[recorded[0]]) > 1:
        keep = set(recorded)
        return ({u: p for u, p in cands.items() if u in keep},
                {u: Decision(False, "not_recorded", "not among the recorded series UIDs")
                 for u in cands if u not in keep})
    pre = recorded[0]
    key, t0 = _key(cands[pre]), _start(cands[pre])
    allowed: dict[str, list[Phase]] = {}
    dropped: dict[str, Decision] = {}
    for uid, phases in cands.items():
        if uid != pre and _key(phases) != key:
            dropped[uid] = Decision(False, "not_recorded", "another study or geometry than the recorded series")
        elif uid != pre and t0 != math.inf and _start(phases) < t0:
            dropped[uid] = Decision(False, "before_recorded_pre",
                                    f"acquired before the recorded pre-contrast series {pre}")
        else:
            allowed[uid] = phases
    return allowed, dropped


def _flag_odd_family(members: list[str], cands: dict[str, list[Phase]], families: dict[str, str | None],
                     decisions: dict[str, Decision], where_: str) -> None:
    """Warn about a phase series whose description family differs from the one all other phases share
    (Duke's bland "ax t1" beside "ax dyn pre/1st pass/..."): taken, but a curator should look."""
    if len(members) < 3:
        return
    fams = [families.get(u) for u in members]
    for fam in set(fams) - {None}:
        odd = [u for u, f in zip(members, fams) if f != fam]
        if fams.count(fam) >= 2 and len(odd) == 1:
            uid = odd[0]
            desc = cands[uid][0].slices[0].description
            note = (f"description family of '{desc}' differs from the other phases' ('{fam}'): check it is a "
                    "phase, or record the case's series UIDs (--series-uids)")
            decisions[uid] = Decision(decisions[uid].kept, decisions[uid].rule,
                                      "; ".join(x for x in (decisions[uid].detail, note) if x))
            log.warning("%s: series %s taken as a phase, but its %s", where_, uid, note)


def select(cands: dict[str, list[Phase]], hits: dict[str, str], rules: list[SeriesRule],
           recorded: list[str] | None = None, where_: str = "") -> Selection:
    """The case's dynamic among ``cands`` (series with checked phases), given the series filter's proposals
    ``hits`` (series -> rule) and the recorded series UIDs, if any. Warnings name every rule not applied."""
    families = {u: description_family(p[0].slices[0].description) for u, p in cands.items()}
    pre_decisions: dict[str, Decision] = {}
    required: Collection[str] = ()
    kept_rule = ""
    if recorded:
        cands, pre_decisions = _recorded(cands, recorded, where_)
        hits = {u: r for u, r in hits.items() if u in cands and u not in recorded}
        required = recorded
        if len(recorded) > 1 or len(cands[recorded[0]]) > 1:
            hits, kept_rule = {}, "recorded_series"
    by_rule = {r.name: r for r in rules}
    not_applied: dict[str, str] = {}
    notes: dict[str, str] = {}

    def kept(drop: dict[str, str]) -> dict[str, list[Phase]]:
        return {u: p for u, p in cands.items() if u not in drop}

    # 1. a description rule that fired on a series of a kept phase's family cannot tell it from the dynamic
    filtered = dict(hits)
    if filtered:
        mine = _choose(kept(filtered), families, kept_rule, required) if kept(filtered) else None
        member_families = {families[u] for u in (mine.members if mine else ())} - {None}
        member_keys = {_key(cands[u]) for u in (mine.members if mine else ())}
        for uid, rule in list(filtered.items()):
            spec = by_rule.get(rule)
            if (spec is not None and spec.tag == "SeriesDescription" and len(cands[uid]) == 1
                    and families[uid] in member_families and _key(cands[uid]) in member_keys):
                del filtered[uid]
                not_applied[uid] = rule
                notes[uid] = (f"series_filter rule {rule} not applied: same description family "
                              f"'{families[uid]}' as the dynamic's phases")
    # 2. never let the filter take away the whole dynamic, or leave one phase where there were several
    if filtered:
        full = _choose(cands, families, kept_rule, required)
        rest = kept(filtered)
        part = _choose(rest, families, kept_rule, required) if rest else None
        n_full = full.n_phases(cands)
        n_part = part.n_phases(cands) if part else 0
        removed = [u for u in full.members if u in filtered]
        if n_part < n_full and removed and (len(removed) == len(full.members) or n_part < 2):
            for uid in removed:
                rule = filtered.pop(uid)
                not_applied[uid] = rule
                notes[uid] = (f"series_filter rule {rule} not applied: it would leave {n_part} phase(s) of the "
                              f"{n_full} of the unfiltered dynamic")
    choice = _choose(kept(filtered), families, kept_rule, required) if kept(filtered) else None
    if choice is None:  # only reachable with an empty candidate set
        raise DicomError("no series with patient geometry", where_)
    decisions = dict(pre_decisions)
    for uid in cands:
        if uid in filtered:
            decisions[uid] = Decision(False, f"series_filter {filtered[uid]}",
                                      f"ignored by series_filter rule {filtered[uid]}")
        else:
            d = choice.decisions[uid]
            decisions[uid] = Decision(d.kept, d.rule, notes.get(uid, d.detail)) if uid in notes else d
    for uid, rule in not_applied.items():
        log.warning("%s: series %s '%s': %s", where_, uid, cands[uid][0].slices[0].description, notes[uid])
    _flag_odd_family(choice.members, cands, families, decisions, where_)
    multi = [u for u in choice.members if len(cands[u]) > 1]
    others = [u for u, d in decisions.items() if d.rule == "single_series_dynamic" and not d.kept]
    if multi and others:
        log.warning("%s: series %s holds the dynamic (%d phases); %d other series of its geometry are not phases "
                    "of it: %s", where_, multi[0], len(cands[multi[0]]), len(others), ", ".join(sorted(others)))
    if recorded:
        lost = [u for u in recorded if not decisions[u].kept]
        if lost:
            raise DicomError(f"recorded series {', '.join(lost)} is not a phase of the dynamic "
                             f"({decisions[lost[0]].detail})", where_)
    phases = [ph for u in choice.members for ph in cands[u]]
    return Selection(phases=phases, study=choice.study, studies=choice.studies, decisions=decisions,
                     filtered=filtered, not_applied=not_applied)
