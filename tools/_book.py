"""Shared facts about the book for the maintenance tools: its root, config and chapters."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def config() -> dict:
    """The parsed ``_config.yml``."""
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _walk(entries):
    for entry in entries or []:
        if "file" in entry:
            yield entry["file"]
        for key in ("sections", "chapters"):
            yield from _walk(entry.get(key))
        for part in entry.get("parts", []):
            yield from _walk(part.get("chapters"))


def toc_files() -> list[str]:
    """Every file named in ``_toc.yml``, in book order, without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    files += list(_walk(toc.get("chapters")))
    for part in toc.get("parts", []):
        files += list(_walk(part.get("chapters")))
    return files


def notebooks() -> list[Path]:
    """The chapter notebooks in ``_toc.yml``, in book order (absolute paths)."""
    return [ROOT / (f + ".ipynb") for f in toc_files() if (ROOT / (f + ".ipynb")).exists()]


def resolve(paths) -> list[Path]:
    """Command-line paths (files, folders or nothing = every chapter) as notebooks."""
    if not paths:
        return notebooks()
    out = []
    for p in paths:
        p = Path(p).resolve()
        out += sorted(p.rglob("*.ipynb")) if p.is_dir() else [p]
    missing = [str(p) for p in out if not p.exists()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    return [p for p in out if ".ipynb_checkpoints" not in p.parts]


def title_of(path: Path) -> str:
    """A chapter's title: its first ``# `` heading (the file name if it has none)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            return cell.source.lstrip()[2:].splitlines()[0].strip()
    return path.stem
