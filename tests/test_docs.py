"""Every relative link in the README and the docs points at a file that exists.

Cheap and independent of mkdocs: the site build (``mkdocs build --strict`` in ``.ci/run``) checks the
published site, this checks the Markdown as it is read in the repository.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def relative_links(markdown: str) -> list[str]:
    """Link targets that are paths relative to the file (no URL scheme, no bare anchor, no absolute path)."""
    text = _CODE.sub("", _FENCE.sub("", markdown))
    targets = _INLINE.findall(text) + _REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", t, re.IGNORECASE)]


def broken_links(path: Path) -> list[str]:
    out = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).exists():
            out.append(f"{path.relative_to(ROOT)}: {target}")
    return out


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_relative_links_resolve() -> None:
    broken = [b for p in markdown_files() for b in broken_links(p)]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_link_finder_sees_links_and_skips_code() -> None:
    text = (
        "See [a](docs/a.md#x), ![img](img/b.png \"title\"), [web](https://x.org) and [top](#top).\n"
        "[ref]: ../c.md\n"
        "`[not](code.md)`\n"
        "```\n[also not](fenced.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md#x", "img/b.png", "../c.md"]


def test_readme_maps_every_page_of_the_site() -> None:
    """The README's docs table names every page of the site's navigation but the home page (the README
    itself), the benchmark reports and the per-module API pages (reached from the API reference index)."""
    nav = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    readme_links = {t.split("#")[0] for t in relative_links((ROOT / "README.md").read_text())}
    pages = {f"docs/{p}" for p in nav
             if p != "index.md" and not p.startswith("benchmarks/") and ("/" not in p or p.endswith("/index.md"))}
    assert len(pages) >= 9
    assert pages <= readme_links, f"pages missing from the README's map: {sorted(pages - readme_links)}"


def _site_path() -> Callable[[str], str | None]:
    """The site's publishing rule, from the MkDocs hook itself (docs/hooks.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ctxrec_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule: Callable[[str], str | None] = module._site_path
    return rule


def test_site_links_point_at_published_files() -> None:
    """A page of the site may link only to files the site publishes: a link from docs/ to a script
    (say ``../benchmarks/x.py``) exists on disk, passes the test above, and fails ``mkdocs build --strict``."""
    site_path = _site_path()
    unpublished = []
    for page in markdown_files():
        for target in relative_links(page.read_text(encoding="utf-8")):
            resolved = (page.parent / target.split("#", 1)[0]).resolve()
            repo_path = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else None
            if resolved.is_dir() or repo_path is None or site_path(repo_path) is None:
                unpublished.append(f"{page.relative_to(ROOT)}: {target}")
    assert not unpublished, "links to files the site does not publish (write them as `code`):\n" + "\n".join(unpublished)
