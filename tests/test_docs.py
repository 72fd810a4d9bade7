"""docs/DESIGN.md is the design file every reference points to, and its export table is the
study's export: the same columns in the same order."""

from __future__ import annotations

import re
import subprocess

from model.config import REPO_DIR
from study.service import EXPORT_COLUMNS

DESIGN = REPO_DIR / "docs/DESIGN.md"


def test_every_design_reference_points_into_the_repository():
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.cfg", "Makefile"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    stray = [
        f"{name}:{n}"
        for name in files
        if (REPO_DIR / name).is_file()
        for n, line in enumerate((REPO_DIR / name).read_text(errors="replace").splitlines(), 1)
        if re.search(r"(?<![\w/])DESIGN\.md", line)
    ]
    assert DESIGN.is_file()
    assert not stray, f"design references without the docs/ prefix (a clone has no other): {stray}"


def test_the_export_table_is_the_export():
    text = DESIGN.read_text()
    section = text.split("## Study: the export", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| (\w+) \| (?:str|int|float) \|", section, flags=re.M)
    assert documented == list(EXPORT_COLUMNS)
