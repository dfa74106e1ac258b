"""A fixed-seed subset of bench/fuzz.py: 304 cases (38 of each mutation class), each in its own
subprocess, two at a time (about 4 minutes on 2 cores).

No traceback, no hang, nothing left on disk, every error one `edgeq: error:` line (the full run is
`python bench/fuzz.py --cases 5000`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fuzz_subset_has_no_bad_outcome(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--cases", "304", "--seed", "0", "--timeout", "60", "--jobs", "2",
                        "--json", str(tmp_path / "results.json")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "304 cases" in r.stdout and "0 bad" in r.stdout, r.stdout
