"""Where the files that ship with convgen live: the Jinja2 templates and the example configs.

``templates/`` sits at the repository root.  The wheel installs it as ``convgen/templates``
(see ``pyproject.toml``); a source checkout or an editable install finds it beside the package.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["examples_dir", "templates_dir"]

_PACKAGE = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """The folder of Jinja2 templates: inside the installed package, else the repository's."""
    for candidate in (_PACKAGE / "templates", _PACKAGE.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"convgen's templates are missing: looked in {_PACKAGE / 'templates'}"
                            f" and {_PACKAGE.parent / 'templates'}; reinstall convgen")


def examples_dir() -> Path:
    """The folder of bundled example layer files."""
    return _PACKAGE / "examples"
