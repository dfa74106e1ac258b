"""A fixed-seed subset of bench/fuzz.py: every mutation class twice, each case in its own subprocess.

No traceback, no hang, nothing left on disk, every error one `edgeq: error:` line (the full run is
`python bench/fuzz.py --cases 5000`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fuzz_subset_has_no_bad_outcome(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--cases", "16", "--seed", "0", "--timeout", "60",
                        "--json", str(tmp_path / "results.json")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "16 cases" in r.stdout and "0 bad" in r.stdout, r.stdout
