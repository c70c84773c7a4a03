"""What the one-row-per-recipe benchmark scripts share (``batching_cost.py``, ``eval_cost.py``): the
``--recipes`` list checked against the script's recipes, and the rows written after each recipe."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def checked_recipes(spec: str, known: Mapping[str, object]) -> list[str]:
    """The comma-separated recipe names of ``spec``; an unknown one is an error naming it and the known ones."""
    names = [n for n in spec.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; known: {sorted(known)}")
    return names


def run_rows(names: list[str], run: Callable[[str], dict[str, Any]], out: Path, table: Path,
             write_table: Callable[[dict[str, Any], Path], None], command: str) -> dict[str, Any]:
    """``{"command", "machine", "rows"}`` with ``run(name)`` for each recipe, written to ``out`` (JSON) and
    ``table`` (Markdown) after each one: a long run cut short keeps what it measured."""
    from ctxrec.experiment import machine_description

    result: dict[str, Any] = {"command": command, "machine": machine_description(), "rows": []}
    for name in names:
        result["rows"].append(run(name))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        write_table(result, table)
    print(f"-> {out}")
    return result
