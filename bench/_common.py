"""Helpers shared by the benchmarks: real abstracts from ../shared/data and measuring a child process."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def abstracts(name: str = "arxiv_2025_2026", n: int | None = None) -> list[str]:
    out = []
    with gzip.open(SHARED / f"{name}.jsonl.gz", "rt") as fh:
        for line in fh:
            out.append(json.loads(line)["abstract"])
            if n and len(out) >= n:
                break
    return out


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python; it prints one JSON line; add its peak RSS (MiB) and wall time."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - began
    return result


PEAK_RSS = "import resource; peak_mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"
