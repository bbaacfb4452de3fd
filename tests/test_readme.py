"""The README is the front door: its test command is CI's, and it documents every option."""

from __future__ import annotations

import re
from pathlib import Path

from ssmrec.cli.common import FLAG_NAMES, OPTIONS

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    install = blocks[0].strip().splitlines()[0]
    test = next(b.strip() for b in blocks if "pytest" in b)
    assert install in ci.splitlines()
    assert test in ci.splitlines()


def test_readme_lists_every_train_option():
    readme = (ROOT / "README.md").read_text()
    for name in OPTIONS:
        flag = FLAG_NAMES.get(name, [f"--{name.replace('_', '-')}"])[0]
        assert f"`{flag}`" in readme, name


def test_the_first_section_says_where_the_data_must_be():
    """The quick start's ``SSMREC_DATA=../shared/data`` is relative: the first section says it
    means a ``shared/`` folder beside the clone, and what to set when the data is elsewhere."""
    readme = (ROOT / "README.md").read_text()
    first = readme.split("## Install and a first result", 1)[1].split("\n## ", 1)[0]
    assert "SSMREC_DATA=../shared/data" in first
    text = " ".join(first.split())
    assert "a `shared/` folder beside the clone" in text
    assert "set `SSMREC_DATA` to that folder's absolute path" in text and "`--data-dir`" in text
