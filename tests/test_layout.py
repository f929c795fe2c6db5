"""The README's layout table names every module and entry point the repository has, and nothing it lacks."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_readme_layout_matches_the_tree():
    table = layout_table()
    named = set(re.findall(r"`([^`\s]+)`", table))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:   # not a git checkout (an unpacked archive): list the files instead
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")]
    wanted = {p for p in tracked if p.endswith(".py") and "/" not in p}                # entry points
    wanted |= {p for p in tracked if re.fullmatch(r"modules/[^/]+\.py", p) and not p.endswith("__init__.py")}
    wanted |= {p.rsplit("/", 1)[0] + "/" for p in tracked if re.fullmatch(r"modules/[^/]+/[^/]+\.py", p)}
    missing = sorted(p for p in wanted if p not in named)
    assert not missing, f"README ## Layout does not mention: {missing}"
    # A bare file name in a row about a folder (`tiny.py` in the tests/ row) counts if some tracked file has it.
    gone = sorted(p for p in named if re.match(r"(modules/|[\w-]+\.py$)", p) and not (ROOT / p).exists()
                  and not any(t.endswith("/" + p) for t in tracked))
    assert not gone, f"README ## Layout names what the tree lacks: {gone}"
