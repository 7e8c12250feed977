"""Benchmark: the interactive map page (`corpusmap.view.write_page`) at 100k, 1M and (optionally) 20M points.

Run by hand (not in CI); needs Debian's chromium and the playwright package:

    .venv/bin/python bench/bench_view.py                                   # 100,000 and 1,000,000 points
    .venv/bin/python bench/bench_view.py --sizes 20000000 --out /tmp/view  # the sampled path
    .venv/bin/python bench/bench_view.py --out /tmp/view --reuse           # measure the pages again

Data are synthetic but shaped like a real map: a Gaussian mixture of 60 clusters of varied size and spread
(two cluster levels, 12 and 60), years 2000-2025 (1% unknown), 30 labels tied to the clusters, 15 neighbours per
point drawn from its own cluster, and the titles and abstracts of the 74,728 real arXiv abstracts in
../shared/data recycled over the rows (so the texts, the search index and its buckets have real sizes). Ids,
titles and labels are lazy sequences: the benchmark process never holds n Python strings.

Each size is written in its own Python process (writer seconds and peak RSS are its own), then opened in
headless chromium (SwiftShader: the CPU rasterises WebGL, so frame times are far above a GPU's; they bound
the page's own cost from above). Reported: writer time; bytes per point of each part (page = HTML with the app
and manifest; points = coordinates and colour codes, loaded at once; titles, texts = lazily loaded chunks;
index = search buckets; density = the image under a sample); time to first draw; JS heap and the browser's
total RSS; frame intervals while panning and zooming; one two-word search; a click's details.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORPUSMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHROMIUM = os.environ.get("CORPUSMAP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--enable-precise-memory-info", "--js-flags=--max-old-space-size=16384"]
PARTS = ("page", "points", "titles", "texts", "index", "density")


class Lazy:
    """A read-only sequence computed from the row number (ids, recycled titles, labels)."""

    def __init__(self, n: int, item):
        self.n, self.item = n, item

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self.item(i) for i in range(*key.indices(self.n))]
        if not -self.n <= key < self.n:
            raise IndexError(key)
        return self.item(key % self.n)

    def __iter__(self):
        return (self.item(i) for i in range(self.n))


def real_texts() -> tuple[list, list]:
    titles, abstracts = [], []
    with gzip.open(SHARED / "arxiv_2025_2026.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            titles.append(r.get("title"))
            abstracts.append(r.get("abstract"))
    return titles, abstracts


def synthetic(n: int, seed: int = 0):
    """PageData of n points: clustered coordinates, real recycled texts, in-cluster neighbours."""
    from corpusmap.view import ClusterLevel, PageData

    rng = np.random.default_rng(seed)
    fine_k, coarse_k, k = 60, 12, 15
    centres = rng.normal(size=(fine_k, 2)) * 30
    weights = rng.dirichlet(np.full(fine_k, 1.5))
    fine = rng.choice(fine_k, size=n, p=weights).astype(np.int32)
    spread = rng.uniform(1.0, 4.0, fine_k)
    x = (centres[fine, 0] + rng.standard_normal(n) * spread[fine]).astype(np.float32)
    y = (centres[fine, 1] + rng.standard_normal(n) * spread[fine]).astype(np.float32)
    coarse_of = np.argmin(((centres[:, None] - centres[None, :coarse_k]) ** 2).sum(-1), axis=1)
    coarse = coarse_of[fine].astype(np.int32)
    years = (2000 + (fine % 20) + rng.integers(0, 6, n)).astype(np.float64)
    years[rng.random(n) < 0.01] = np.nan
    label_codes = ((fine * 7 + rng.integers(0, 3, n)) % 30).astype(np.int8)
    label_names = [f"cs.{chr(65 + i % 26)}{chr(65 + i // 26)}" for i in range(30)]
    neighbors = _cluster_neighbours(fine, k, rng)
    titles, abstracts = real_texts()
    m = len(titles)
    words = sorted({w for t in titles[:5000] for w in (t or "").lower().split() if w.isalpha() and len(w) > 5})
    pick = rng.choice(len(words), size=(fine_k, 3))
    fine_names = [", ".join(words[j] for j in row) for row in pick]
    coarse_names = [fine_names[c].split(",")[0] for c in range(coarse_k)]
    return PageData(
        x=x, y=y,
        ids=Lazy(n, lambda i: f"{2500 + (i // 100_000) % 100}.{i % 100_000:05d}"),
        titles=Lazy(n, lambda i: titles[i % m]),
        abstracts=lambda start, stop: {"abstract": [abstracts[i % m] for i in range(start, stop)]},
        years=years,
        labels=Lazy(n, lambda i: label_names[label_codes[i]]),
        neighbors=neighbors,
        clusters=[ClusterLevel("coarse", coarse, coarse_names), ClusterLevel("fine", fine, fine_names)],
        info={"method": "synthetic Gaussian mixture", "parameters": {"clusters": fine_k, "seed": seed}},
        excess={"2024": ["delve", "intricate", "underscore", "pivotal", "showcasing"]},
    )


def _cluster_neighbours(codes: np.ndarray, k: int, rng) -> np.ndarray:
    """k random rows of each row's own cluster (a stand-in for a kNN graph, block by block)."""
    n = len(codes)
    order = np.argsort(codes, kind="stable").astype(np.int32)
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty((n, k), dtype=np.int32)
    for a in range(0, n, 1_000_000):
        c = codes[a:a + 1_000_000]
        offset = (rng.random((len(c), k)) * sizes[c][:, None]).astype(np.int64)
        out[a:a + 1_000_000] = order[starts[c][:, None] + offset]
    return out


def write_one(n: int, out: Path) -> dict:
    """In a child process: build the data, write the page, report sizes, seconds and peak RSS."""
    from corpusmap.view import write_page

    began = time.perf_counter()
    data = synthetic(n)
    made = time.perf_counter() - began
    result = write_page(out / f"map_{n}.html", data, title=f"synthetic map, {n:,} points")
    return {"n": n, "drawn": result.n_points, "sampled": result.sampled, "search": result.search,
            "files": result.files, "bytes": result.bytes, "data_seconds": made, "write_seconds": result.seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "html": str(result.html)}


FRAMES_JS = """async (frames) => {
  const sp = window.corpusmap.scatter();
  const raf = () => new Promise((r) => requestAnimationFrame(r));
  const run = async (step) => {
    const out = [];
    await raf(); await raf();
    let last = performance.now();
    for (let i = 0; i < frames; i++) {
      step(i);
      await raf();
      const now = performance.now();
      out.push(now - last);
      last = now;
    }
    return out;
  };
  const target = sp.get('cameraTarget');
  const distance = sp.get('cameraDistance');
  const pan = await run((i) => sp.set({ cameraTarget: [target[0] + 0.004 * i, target[1] + 0.002 * i] }));
  const zoom = await run((i) => sp.set({ cameraDistance: distance * Math.pow(0.97, i) }));
  sp.set({ cameraTarget: target, cameraDistance: distance });
  return { pan, zoom };
}"""


def browser_rss_mib(profile_marker: str) -> float:
    """Total resident memory of the browser's processes (found by their profile directory)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if profile_marker not in cmdline:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure_page(html: Path, frames: int) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="corpusmap-bench-profile-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        began = time.perf_counter()
        page.goto(Path(html).as_uri(), wait_until="commit", timeout=600_000)
        page.wait_for_function("window.corpusmap && (window.corpusmap.ready || window.corpusmap.error)",
                               timeout=900_000, polling=250)
        wall = time.perf_counter() - began
        error = page.evaluate("window.corpusmap.error")
        timing = page.evaluate("window.corpusmap.timing")
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        rss = browser_rss_mib(profile)
        result = {"open_seconds": wall, "points_loaded_s": timing.get("points", 0) / 1000,
                  "first_draw_s": timing.get("firstDraw", 0) / 1000, "error": error or (errors[0] if errors else None),
                  "js_heap_mib": metrics.get("JSHeapUsedSize", 0) / 2**20, "browser_rss_mib": rss}
        if error:
            context.close()
            return result
        f = page.evaluate(FRAMES_JS, frames)
        result["pan_ms"] = (statistics.median(f["pan"]), float(np.percentile(f["pan"], 95)))
        result["zoom_ms"] = (statistics.median(f["zoom"]), float(np.percentile(f["zoom"], 95)))
        if page.evaluate("!!document.getElementById('cm-search') && !document.getElementById('cm-search').disabled"):
            result["search_index"] = page.evaluate("""async () => { const t = performance.now();
                const c = await window.corpusmap.count('neural network'); return [c, performance.now() - t]; }""")
            result["search"] = page.evaluate("""async () => { const t = performance.now();
                const c = await window.corpusmap.search('language model'); return [c, performance.now() - t]; }""")
        ms = page.evaluate("""async () => { const t = performance.now();
            await window.corpusmap.pick(12345 % window.corpusmap.n);
            return performance.now() - t; }""")
        result["click_ms"] = ms
        context.close()
    return result


def _pair(v) -> str:
    return f"{v[0]:.0f} / {v[1]:.0f}" if v else "—"


def table(rows: list[dict]) -> str:
    head = ["n", "drawn", "write s", "files", "MB", *[f"B/pt {p}" for p in PARTS], "first draw s", "JS heap MiB",
            "browser RSS MiB", "pan ms (med/p95)", "zoom ms (med/p95)", "search: index ms", "search + redraw ms",
            "click ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        b = r["bytes"]
        cells = [f"{r['n']:,}", f"{r['drawn']:,}", f"{r['write_seconds']:.1f}", f"{r['files']:,}",
                 f"{sum(b.values()) / 1e6:.0f}", *[f"{b[p] / r['n']:.1f}" for p in PARTS]]
        m = r.get("browser") or {}
        if m.get("error"):
            cells += [f"error: {m['error']}"] + [""] * 7
        else:
            cells += [f"{m.get('first_draw_s', 0):.1f}", f"{m.get('js_heap_mib', 0):.0f}",
                      f"{m.get('browser_rss_mib', 0):.0f}", _pair(m.get("pan_ms")), _pair(m.get("zoom_ms")),
                      f"{m['search_index'][1]:.0f}" if m.get("search_index") else "off",
                      f"{m['search'][1]:.0f}" if m.get("search") else "off", f"{m.get('click_ms', 0):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated point counts")
    parser.add_argument("--out", type=Path, default=None, help="folder for the pages (default: a temp folder)")
    parser.add_argument("--frames", type=int, default=30, help="frames measured while panning and zooming")
    parser.add_argument("--reuse", action="store_true", help="measure pages written by an earlier run in --out")
    parser.add_argument("--write", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="corpusmap-bench-view-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.write:
        print(json.dumps(write_one(args.write, out)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        written = out / f"map_{n}.json"
        if args.reuse and written.is_file():
            row = json.loads(written.read_text())
        else:
            proc = subprocess.run([sys.executable, __file__, "--write", str(n), "--out", str(out)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            written.write_text(json.dumps(row))
        print(f"wrote {n:,} points in {row['write_seconds']:.1f} s (data {row['data_seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB): {row['bytes']}", flush=True)
        row["browser"] = measure_page(Path(row["html"]), args.frames)
        print(json.dumps(row["browser"]), flush=True)
        rows.append(row)
    print()
    print(table(rows))
    print(f"\npages in {out}; frame times with SwiftShader (software WebGL) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
