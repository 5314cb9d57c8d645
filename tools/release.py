#!/usr/bin/env python
"""One release, one source: the optlab version, the tag Colab installs and the branch it opens.

    python tools/release.py --check    # exit 1 unless everything names v<optlab.__version__>
    python tools/release.py 0.2.0      # set version 0.2.0 everywhere, rewrite the setup cells

The version lives in ``optlab/__init__.py`` (``__version__``); ``pyproject.toml`` reads it
(``dynamic = ["version"]``).  ``_config.yml`` names its tag ``v<version>`` twice: ``release``
(what every chapter's setup cell installs in Colab, via ``tools/setup_cell.py``) and
``repository.branch`` (what the Colab and repository buttons open).  This tool sets all of
them and rewrites the setup cells; then follow the release procedure of CONTRIBUTING.md
(re-run the chapters, test, commit, ``git tag v<version>``, ``git push origin v<version>``).
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _book import ROOT, config  # noqa: E402

INIT = ROOT / "optlab" / "__init__.py"
CONFIG = ROOT / "_config.yml"
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?$")


def package_version() -> str:
    """``optlab.__version__``, read from the source without importing it."""
    for node in ast.walk(ast.parse(INIT.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"no __version__ in {INIT.relative_to(ROOT)}")


def tag(version: str | None = None) -> str:
    return f"v{version or package_version()}"


def problems() -> list[str]:
    """Where the version, the release tag and the branch disagree (empty: nowhere)."""
    import setup_cell
    import tomllib

    want, cfg, out = tag(), config(), []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if "version" in project or "version" not in project.get("dynamic", []):
        out.append("pyproject.toml: the version must be dynamic (read from optlab/__init__.py), not written there")
    if cfg.get("release") != want:
        out.append(f"_config.yml: release is {cfg.get('release')!r}, not {want!r} (optlab.__version__)")
    if cfg.get("repository", {}).get("branch") != want:
        out.append(f"_config.yml: repository.branch is {cfg['repository'].get('branch')!r}, not {want!r}: "
                   "the Colab button would open other notebooks than the release the setup cell installs")
    if not setup_cell.install_source(cfg).endswith(f"@{want}"):
        out.append(f"the setup cell installs {setup_cell.install_source(cfg)!r}, not the tag {want}")
    return out


def set_version(version: str) -> None:
    if not VERSION.match(version):
        raise SystemExit(f"{version!r} is not a version like 0.2.0")
    text = INIT.read_text()
    new = re.sub(r'(?m)^__version__\s*=\s*["\'][^"\']*["\']', f'__version__ = "{version}"', text)
    if new == text and package_version() != version:
        raise SystemExit(f"could not set __version__ in {INIT.relative_to(ROOT)}")
    INIT.write_text(new)
    cfg = CONFIG.read_text()
    cfg = re.sub(r"(?m)^release:.*$", f"release: {tag(version)}", cfg)
    cfg = re.sub(r"(?m)^(\s+branch:).*$", rf"\1 {tag(version)}", cfg)
    CONFIG.write_text(cfg)
    subprocess.run([sys.executable, str(ROOT / "tools" / "setup_cell.py")], check=True, cwd=ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("version", nargs="?", help="the new version, e.g. 0.2.0 (without the v)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless version, release and branch agree")
    args = ap.parse_args(argv)
    if args.version:
        set_version(args.version)
        print(f"optlab {args.version}: _config.yml release and branch {tag(args.version)}, setup cells rewritten.\n"
              "Next (CONTRIBUTING.md, 'Releasing'): python tools/execute.py; make test; commit; "
              f"git tag {tag(args.version)}; git push origin {tag(args.version)}")
    found = problems()
    for line in found:
        print(line)
    if not found and not args.version:
        print(f"one release, one source: optlab {package_version()}, tag {tag()}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
