"""benchmarks/bench_original.py refuses a folder that is not the original's checkout, by name, before any work."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_folder_that_is_not_the_original_is_named(tmp_path):
    (tmp_path / "modules").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_original.py"), "--original",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"--original {tmp_path}: not a Seed-VC v1 checkout" in done.stderr
    assert "Plachtaa/seed-vc" in done.stderr
