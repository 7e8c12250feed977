"""The info panel's rows: the map's parameters and its evaluation, formatted here so the page only shows text."""
from __future__ import annotations

import json
from typing import Any, Mapping

Section = dict  # {"title": str, "rows": [[key, value], ...]}


def info_sections(info: Mapping[str, Any], summary: list[list[str]]) -> list[Section]:
    """Sections for the panel: the map (summary + scalar info), evaluation, parameters, other tables."""
    info = dict(info or {})
    evaluation = info.pop("evaluation", None)
    parameters = info.pop("parameters", None)
    map_rows = list(summary)
    tables = []
    for key, value in info.items():
        if isinstance(value, Mapping):
            tables.append({"title": str(key), "rows": _flat_rows(value)})
        else:
            map_rows.append([str(key), format_value(value)])
    sections = [{"title": "Map", "rows": map_rows}]
    if evaluation:
        sections.append({"title": "Evaluation", "rows": evaluation_rows(evaluation)})
    if parameters:
        rows = [[PARAMETER_NAMES.get(key, key), value] for key, value in _flat_rows(parameters)]
        sections.append({"title": "Parameters", "rows": rows})
    return sections + tables


#: map parameters whose names alone do not say which neighbours they count
PARAMETER_NAMES = {"k": "k (neighbours in t-SNE's affinities)", "neighbours_used": "neighbours used of the graph",
                   "stored_k": "neighbours stored in the graph (k of corpusmap neighbors)"}


def evaluation_rows(evaluation: Mapping[str, Any]) -> list[list[str]]:
    """kNN recall, kNN accuracy with its chance level, year RMSE with its chance level, then anything else, and
    last the evaluation's notes (``notes``: what it skipped or what its numbers mean, e.g. a year column of one
    year, a label column where kNN accuracy is near chance whatever the map), one row each.

    Takes one space's metrics (as in ``eval/metrics.json``) or a dict with a ``spaces`` list of them (and the k
    they share beside it).
    """
    notes = evaluation.get("notes")
    notes = [notes] if isinstance(notes, str) else list(notes or [])
    note_rows = [["note", str(note)] for note in notes if note is not None and str(note).strip()]
    if isinstance(evaluation.get("spaces"), list):
        rows = []
        for space in evaluation["spaces"]:
            name = str(space.get("space", "?"))
            own = {key: val for key, val in space.items() if key not in ("space", "kind")}
            own.setdefault("k", evaluation.get("k"))
            rows += [[f"{name}: {k}", v] for k, v in evaluation_rows(own)]
        return rows + [[str(key), format_value(value)] for key, value in evaluation.items()
                       if key not in ("spaces", "k", "notes") and value is not None] + note_rows
    rows = []
    k = evaluation.get("k")
    suffix = f"@{k}" if k else ""
    for key, value in evaluation.items():
        if value is None or key in ("k", "notes"):
            continue
        if key == "knn_recall":
            rows.append([f"kNN recall{suffix}", _pct(value)])
        elif key == "knn_accuracy":
            acc, chance = _pair(value, "accuracy")
            majority = value.get("chance_majority") if isinstance(value, Mapping) else None
            chance_text = "" if chance is None else f" (chance {_pct(chance)}" + (
                f" stratified, {_pct(majority)} majority class)" if majority is not None else ")")
            rows.append([f"kNN accuracy{suffix}", _pct(acc) + chance_text])
        elif key == "year_rmse":
            rmse, chance = _pair(value, "rmse")
            rows.append(["year RMSE", f"{rmse:.2f}" + (f" (chance {chance:.2f})" if chance is not None else "")])
        else:
            rows.append([str(key), format_value(value)])
    return rows + note_rows


def _pair(value: Any, main: str) -> tuple[float, Any]:
    if isinstance(value, Mapping):
        return float(value[main]), value.get("chance")
    return float(value), None


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%"


def _flat_rows(d: Mapping[str, Any], prefix: str = "") -> list[list[str]]:
    rows = []
    for key, value in d.items():
        if isinstance(value, Mapping) and value:
            rows += _flat_rows(value, f"{prefix}{key}.")
        elif value is not None:
            rows.append([f"{prefix}{key}", format_value(value)])
    return rows


def format_value(value: Any) -> str:
    """A short readable text for a parameter value."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float)) for v in value):
            return ", ".join(format_value(v) for v in value)
        return json.dumps(value, default=str)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)
