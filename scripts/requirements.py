"""Print the pinned requirements from pyproject.toml: the main ones, or an optional group."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
group = sys.argv[1] if len(sys.argv) > 1 else None
print("\n".join(project["optional-dependencies"][group] if group else project["dependencies"]))
