"""MkDocs hooks that build the site from files where they live, so nothing is copied into docs/.

* The README is the site's home page, and the benchmark reports (``benchmarks/**/*.md`` with the
  result files they point at) and ``examples/`` are published beside the docs.
* Every relative link is written as it resolves on disk (so it also works when the files are read on
  a code host) and is rewritten here to where its target lands in the site. A link to a repository
  file that the site does not publish is left alone, so ``mkdocs build --strict`` reports it.
* ``docs/models.md`` gets each registered model kind's config reference from the config dataclasses
  (field, type, default and the field's docstring), so a new kind or a moved config class needs no docs edit.
"""

from __future__ import annotations

import dataclasses
import importlib
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
# Repository folders published as they are (site path = repository path), and the file types taken.
PUBLISHED = {"benchmarks": {".md", ".json", ".png", ".svg", ".csv", ".txt"}, "examples": None}
HOME = "README.md"

_INLINE = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_REFERENCE = re.compile(r"^(\s*\[[^\]]+\]:\s*)(\S+)", re.MULTILINE)
_CONFIG_MARKER = re.compile(r"^<!-- config: ([\w-]+) -->$", re.MULTILINE)


def _site_path(repo_path: str) -> str | None:
    """Where a repository file lands in the site, or None when the site does not publish it."""
    if repo_path == HOME:
        return "index.md"
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    top = repo_path.split("/", 1)[0]
    if top in PUBLISHED:
        suffixes = PUBLISHED[top]
        return repo_path if suffixes is None or Path(repo_path).suffix in suffixes else None
    return None


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / HOME)))
    for top in PUBLISHED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in rel and _site_path(rel) is not None:
                files.append(File.generated(config, rel, abs_src_path=str(path)))
    return files


def _rewrite(target: str, page_repo_path: str, page_site_path: str) -> str:
    """A link as written in the repository file -> the same link from the page's place in the site."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith(("#", "/")):
        return target
    path, hash_, anchor = target.partition("#")
    repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))
    site_target = _site_path(repo_target)
    if site_target is None:
        return target  # not published: mkdocs reports the link
    rel = posixpath.relpath(site_target, posixpath.dirname(page_site_path) or ".")
    return rel + hash_ + anchor


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    repo_path = Path(page.file.abs_src_path).resolve().relative_to(ROOT).as_posix()
    site_path = page.file.src_uri

    def fix(m: re.Match[str]) -> str:
        return m.group(1) + _rewrite(m.group(2), repo_path, site_path) + (m.group(3) if m.lastindex == 3 else "")

    markdown = _INLINE.sub(fix, markdown)
    markdown = _REFERENCE.sub(fix, markdown)
    if site_path == "models.md":
        markdown = _model_configs(markdown)
    return markdown


# ------------------------------------------------------------------------------ model configs
def _registered_models() -> dict[str, type]:
    """``kind -> Recommender class`` for every registered model, imported from this checkout's sources."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        models = importlib.import_module("ctxrec.models")
        return {kind: models.get_model_class(kind) for kind in models.MODELS}
    finally:
        sys.path.remove(str(ROOT / "src"))


def _config_helpers() -> Any:
    """``ctxrec.config`` of this checkout (its ``field_docs`` and ``nested_configs`` are shared with
    ``ctxrec config show``)."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        return importlib.import_module("ctxrec.config")
    finally:
        sys.path.remove(str(ROOT / "src"))


def _field_docs(cls: type) -> dict[str, str]:
    return dict(_config_helpers().field_docs(cls))


def _nested_configs(cls: type) -> dict[str, type]:
    return dict(_config_helpers().nested_configs(cls))


def _own_doc(cls: type) -> str:
    """The class docstring, not the signature dataclasses puts there when a class has none."""
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(f"{cls.__name__}(") else doc


def _cell(text: str) -> str:
    """Escape the pipes that would end a table cell (those in code spans do not)."""
    parts = re.split(r"(`+[^`]*`+)", text)
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def _config_table(cls: type, anchors: dict[type, str]) -> str:
    """Markdown table of a config dataclass: field, type, default, the field's docstring."""
    docs = _field_docs(cls)
    nested = _nested_configs(cls)
    rows = ["| field | type | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in nested:
            sub = nested[f.name]
            default = f"[`{sub.__name__}`]({anchors[sub]})"
        elif f.default is not dataclasses.MISSING:
            default = f"`{f.default!r}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{f.default_factory()!r}`"
        else:
            default = "required"
        type_ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append(f"| `{f.name}` | `{type_}` | {default} | {_cell(docs.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def _model_configs(markdown: str) -> str:
    """Replace ``<!-- config: KIND -->`` markers (and ``<!-- config: shared -->``) with config tables.

    A registered kind without a marker gets a section of its own (its class docstring and its config)
    where ``<!-- config: unlisted -->`` stands, so the page lists every kind.
    """
    models = _registered_models()
    configs = {kind: cls.config_class for kind, cls in models.items()}
    marked = set(_CONFIG_MARKER.findall(markdown))
    unknown = marked - set(configs) - {"shared", "unlisted"}
    if unknown:
        raise ValueError(f"docs/models.md has config markers for unregistered model kinds {sorted(unknown)}; "
                         f"registered: {sorted(configs)}")
    anchors: dict[type, str] = {cls: f"#{kind}" for kind, cls in configs.items()}
    shared: list[type] = []
    todo = list(configs.values())
    while todo:
        for sub in _nested_configs(todo.pop(0)).values():
            if sub not in anchors:
                anchors[sub] = f"#{sub.__name__.lower()}"
                shared.append(sub)
                todo.append(sub)

    unlisted = []
    for kind in sorted(set(configs) - marked):
        summary = (models[kind].__doc__ or "").strip().split("\n\n")[0]
        unlisted.append(f"## `{kind}` {{#{kind}}}\n\n{summary}\n\n{_config_table(configs[kind], anchors)}")

    def replace(m: re.Match[str]) -> str:
        kind = m.group(1)
        if kind == "shared":
            return "\n".join(
                f"### {c.__name__} {{#{c.__name__.lower()}}}\n\n{_own_doc(c)}\n\n"
                f"{_config_table(c, anchors)}" for c in shared)
        if kind == "unlisted":
            return "\n".join(unlisted)
        return _config_table(configs[kind], anchors)

    if unlisted and "unlisted" not in marked:
        markdown += "\n\n<!-- config: unlisted -->\n"
    return _CONFIG_MARKER.sub(replace, markdown)
