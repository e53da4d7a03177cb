"""FAISS HNSW through VectorIndex against the exact backend, one thread each.

Issue 8's target: on 1,000,000 synthetic 64-d item vectors, HNSW retrieval must reach
recall@10 of at least 0.99 of the exact backend's lists at a query throughput at least 10x
the exact backend's, both on ONE thread (``recoforge.threads.set_num_threads(1)``: BLAS,
numba and FAISS's OpenMP all follow it; FAISS is also set directly).

Two seeded generators (``--data``), both scored by inner product ("dot"):

- ``clusters``: 1,000 Gaussian clusters; centres ~ N(0, I), members = centre + 0.5 N(0, I);
  queries drawn the same way under another seed. The within-cluster noise is isotropic in
  all 64 dimensions, so the neighbourhoods HNSW must walk have intrinsic dimension 64: a
  hard case, unlike learned embeddings.
- ``factors``: resembles the item factors of a matrix-factorisation model. z ~ N(0, I),
  coordinate j (1-based) scaled by j^-0.5 (variance decays as 1/j, as singular values
  of interaction matrices decay), a fixed random rotation (so no axis is special), and
  each item scaled by exp(0.5 g), g ~ N(0, 1) (log-normal norms: popular items have larger
  factors). Queries (user factors) have the same spectrum and rotation, no norm scaling
  (a query's norm does not change its ranking).

Per data set one run measures the exact backend and then, for each ``--configs`` entry
``M:ip`` (ip = T: the equal-norm coordinate of Bachrach et al. 2014, F: raw inner
products, best: whichever of T/F gave the higher recall at ``--target-ef`` with the
smallest M built so far), builds one HNSW index, times the exact backend again on the
first 500 queries (the load of the shared machine drifts during a build) and sweeps
``--ef-search``; speed-up is against that fresh exact figure. Recall@10 =
|HNSW top-10 ∩ exact top-10| / 10, averaged over the same queries. Queries/s: one
``search`` call over all queries after a 50-query warm-up; timed sections hold a file lock
(``--lock``) so two runs started side by side never time searches at the same moment.
Each finished configuration is appended to ``--json`` at once.

Run (opt-in; needs faiss-cpu, extra ``ann``)::

    nice python benchmarks/bench_vector_index.py --data clusters --json /tmp/vi_clusters.json
    nice python benchmarks/bench_vector_index.py --data factors --json /tmp/vi_factors.json
    python benchmarks/bench_vector_index.py --report /tmp/vi_clusters.json /tmp/vi_factors.json

``--report`` writes benchmarks/results/vector_index.md (``--out``), keeping any
hand-written ``## Notes`` section already there.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import recoforge as rf
from recoforge.ranking.index import VectorIndex
from recoforge.threads import set_num_threads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vector_index.md"
K = 10
CHUNK = 100_000
#: queries the exact backend is timed on again after each HNSW build
EXACT_RETIME = 500
GENERATORS = {
    "clusters": "1,000 Gaussian clusters: centres N(0, I), members centre + 0.5 N(0, I) "
                "(isotropic noise in all 64 dimensions); queries the same, another seed",
    "factors": "factor-like: z ~ N(0, I) with coordinate j scaled by j^-0.5, a fixed "
               "random rotation, items scaled by exp(0.5 g), g ~ N(0, 1) (log-normal "
               "norms); queries the same spectrum and rotation, unscaled",
}


def clustered_vectors(n: int, dim: int, seed: int, n_clusters: int = 1000,
                      spread: float = 0.5) -> np.ndarray:
    """``n`` float32 vectors from a seeded mixture of Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((n_clusters, dim))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        labels = rng.integers(0, n_clusters, stop - start)
        out[start:stop] = centres[labels] + spread * rng.standard_normal((stop - start, dim))
    return out


def factor_vectors(n: int, dim: int, seed: int, norm_sigma: float) -> np.ndarray:
    """``n`` float32 factor-like vectors: decaying spectrum, rotation, log-normal norms."""
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, dim + 1) ** -0.5
    rotation, _ = np.linalg.qr(np.random.default_rng(12345).standard_normal((dim, dim)))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        block = (rng.standard_normal((stop - start, dim)) * spectrum) @ rotation
        if norm_sigma:
            block *= np.exp(norm_sigma * rng.standard_normal(stop - start))[:, None]
        out[start:stop] = block
    return out


def make_data(name: str, n_items: int, n_queries: int, dim: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """(items seed 0, queries seed 1) of generator ``name``."""
    if name == "clusters":
        return clustered_vectors(n_items, dim, 0), clustered_vectors(n_queries, dim, 1)
    return factor_vectors(n_items, dim, 0, 0.5), factor_vectors(n_queries, dim, 1, 0.0)


def data_stats(items: np.ndarray, truth: np.ndarray) -> dict:
    """Effective dimension, norm spread and how concentrated the exact top-10 lists are."""
    sample = items[:: max(1, len(items) // 100_000)].astype(np.float64)
    eigen = np.linalg.eigvalsh(np.cov(sample, rowvar=False))
    norms = np.linalg.norm(items, axis=1)
    top_norm = norms >= np.quantile(norms, 0.99)
    return {"participation_ratio": float(eigen.sum() ** 2 / (eigen ** 2).sum()),
            "norm_p5_p95": [float(v) for v in np.quantile(norms, [0.05, 0.95])],
            "distinct_in_truth": float(np.unique(truth).size / truth.size),
            "truth_in_top1pct_norm": float(top_norm[truth].mean())}


@contextlib.contextmanager
def timing_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (other runs wait before timing a search)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def timed_search(index: VectorIndex, queries: np.ndarray,
                 lock: Path) -> tuple[np.ndarray, float]:
    """(top-K indices, queries per second) after a 50-query warm-up."""
    with timing_lock(lock):
        index.search(queries[:50], K)
        start = time.perf_counter()
        found, _ = index.search(queries, K)
        return found, len(queries) / (time.perf_counter() - start)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each exact top-K found in the approximate top-K."""
    return float((found[:, :, None] == truth[:, None, :]).any(axis=2).mean())


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def parse_configs(text: str) -> list[tuple[int, str]]:
    configs = []
    for token in text.split(","):
        m, ip = token.split(":")
        if ip not in ("T", "F", "best"):
            raise SystemExit(f"--configs: ip must be T, F or best, got {token!r}")
        configs.append((int(m), ip))
    return configs


def pick_transform(ip: str, rows: list[dict], target_ef: int) -> bool:
    """T/F as given; "best": the ip_transform with the higher recall at ``target_ef``."""
    if ip != "best":
        return ip == "T"
    built = [r for r in rows if r["backend"] == "hnsw" and r["ef_search"] == target_ef]
    smallest = min(r["M"] for r in built)
    best = max((r for r in built if r["M"] == smallest), key=lambda r: r["recall@10"])
    return bool(best["ip_transform"])


def run(args: argparse.Namespace) -> None:
    set_num_threads(1)
    import faiss

    faiss.omp_set_num_threads(1)
    items, queries = make_data(args.data, args.n_items, args.queries, args.dim)
    result: dict = {"data": args.data, "n_items": len(items), "n_queries": len(queries),
                    "dim": args.dim, "command": " ".join(["nice", "python", *sys.argv]),
                    "started": time.strftime("%Y-%m-%d %H:%M"), "load_start": load(),
                    "rows": []}
    start = time.perf_counter()
    exact = VectorIndex.build(items, metric="dot", backend="exact")
    build_s = time.perf_counter() - start
    truth, exact_qps = timed_search(exact, queries, args.lock)
    result["stats"] = data_stats(items, truth)
    rows = result["rows"]
    rows.append({"backend": "exact", "M": None, "ef_construction": None, "ip_transform": None,
                 "ef_search": None, "build s": build_s, "queries/s": exact_qps,
                 "recall@10": 1.0, "exact queries/s": exact_qps, "speed-up": 1.0,
                 "load": load()})
    save(result, args.json)
    for m, ip in parse_configs(args.configs):
        transform = pick_transform(ip, rows, args.target_ef)
        start = time.perf_counter()
        hnsw = VectorIndex.build(items, metric="dot", backend="hnsw", M=m,
                                 ef_construction=args.ef_construction,
                                 ip_transform=transform)
        build_s = time.perf_counter() - start
        # the exact backend again, now: the machine's load drifts during a long build
        exact_now = timed_search(exact, queries[:EXACT_RETIME], args.lock)[1]
        for ef in args.ef_search:
            hnsw.set_search_params(ef_search=ef)
            found, qps = timed_search(hnsw, queries, args.lock)
            rows.append({"backend": "hnsw", "M": m, "ef_construction": args.ef_construction,
                         "ip_transform": transform, "ef_search": ef, "build s": build_s,
                         "queries/s": qps, "recall@10": recall_at_k(found, truth),
                         "exact queries/s": exact_now, "speed-up": qps / exact_now,
                         "load": load()})
            print(rows[-1], flush=True)
        del hnsw
        save(result, args.json)
    result["load_end"] = load()
    save(result, args.json)


def save(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=1))
    print(f"saved {len(result['rows'])} rows to {path}", flush=True)


def table_line(data: str, r: dict) -> str:
    if r["backend"] == "exact":
        params = "- | - | - | -"
    else:
        params = (f"{r['M']} | {r['ef_construction']} | "
                  f"{'yes' if r['ip_transform'] else 'no'} | {r['ef_search']}")
    return (f"| {data} | {r['backend']} | {params} | {r['build s']:.1f} | "
            f"{r['queries/s']:,.0f} | {r['exact queries/s']:,.0f} | {r['recall@10']:.4f} | "
            f"{r['speed-up']:.1f}x |")


def verdict(result: dict) -> str:
    """Which HNSW rows of one data set meet recall@10 >= 0.99 at >= 10x exact."""
    hnsw = [r for r in result["rows"] if r["backend"] == "hnsw"]
    met = [r for r in hnsw if r["recall@10"] >= 0.99 and r["speed-up"] >= 10]
    name = f"`{result['data']}` ({result['n_items']:,} vectors)"
    if met:
        best = max(met, key=lambda r: r["speed-up"])
        return (f"- {name}: target MET by {len(met)} of {len(hnsw)} settings; fastest: "
                f"M={best['M']}, ip_transform={best['ip_transform']}, "
                f"ef_search={best['ef_search']}: recall@10 {best['recall@10']:.4f} at "
                f"{best['speed-up']:.1f}x exact.")
    top = max(hnsw, key=lambda r: r["recall@10"])
    return (f"- {name}: target NOT met by any of {len(hnsw)} settings; best recall@10 "
            f"{top['recall@10']:.4f} (M={top['M']}, ip_transform={top['ip_transform']}, "
            f"ef_search={top['ef_search']}) at {top['speed-up']:.1f}x exact.")


def report(paths: list[Path], out: Path) -> None:
    import faiss

    results = [json.loads(p.read_text()) for p in paths]
    lines = [
        "# Vector index: FAISS HNSW vs exact retrieval, one thread",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
        f"Python {platform.python_version()}, recoforge {rf.__version__}, "
        f"faiss {faiss.__version__}, numpy {np.__version__}. Every backend builds and "
        "searches on ONE thread (`set_num_threads(1)` and `faiss.omp_set_num_threads(1)`). "
        "Metric: inner product. Exact and HNSW of one data set are measured in the same run "
        "on the same queries; recall@10 is the overlap of each HNSW top-10 with the exact "
        "backend's top-10; queries/s is one `search` call over all queries after a 50-query "
        "warm-up; speed-up is against the exact backend of the same run, timed again (first "
        "500 queries) right after each HNSW build (column `exact queries/s`). `ip_transform`: "
        "yes = items indexed as (v, sqrt(R^2 - |v|^2)) (Bachrach et al. 2014), no = raw "
        "inner products.",
        "",
        "Commands:",
        "",
        *[f"    {r['command']}" for r in results],
        f"    python benchmarks/bench_vector_index.py --report "
        f"{' '.join(str(p) for p in paths)}",
        "",
        "## Data sets",
        "",
    ]
    for r in results:
        s = r["stats"]
        lines.append(
            f"- `{r['data']}`: {r['n_items']:,} items, {r['n_queries']:,} queries, "
            f"{r['dim']}-d; {GENERATORS[r['data']]}. Items seed 0, queries seed 1. "
            f"Effective dimension (participation ratio of the covariance eigenvalues) "
            f"{s['participation_ratio']:.1f}; item norms 5th-95th percentile "
            f"{s['norm_p5_p95'][0]:.2f}-{s['norm_p5_p95'][1]:.2f}; distinct items in the "
            f"exact top-10 lists {100 * s['distinct_in_truth']:.1f}% of the list entries; "
            f"{100 * s['truth_in_top1pct_norm']:.1f}% of those entries are among the 1% "
            f"largest-norm items. Run started {r['started']}, load average at the start "
            f"{r['load_start']}, at the end {r.get('load_end', 'n/a (run cut short)')}.")
    lines += ["", "## Results", "",
              "| data set | backend | M | efC | ip_transform | ef_search | build s | "
              "queries/s | exact queries/s | recall@10 | speed-up vs exact |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [table_line(r["data"], row) for r in results for row in r["rows"]]
    lines += ["", "## Target", "",
              "Issue 8: recall@10 >= 0.99 of exact at >= 10x its throughput, one thread, "
              "1,000,000 vectors.", "", *[verdict(r) for r in results], ""]
    notes = ""
    if out.exists() and "\n## Notes\n" in out.read_text():
        notes = out.read_text().split("\n## Notes\n", 1)[1]
        lines += ["## Notes", notes.rstrip("\n"), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(GENERATORS), default="factors")
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--configs", default="16:T,16:F,32:best",
                        help="comma-separated M:ip builds, ip in T, F, best")
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=lambda s: [int(v) for v in s.split(",")],
                        default=[64, 128, 256, 512])
    parser.add_argument("--target-ef", type=int, default=64,
                        help="the ef_search compared when --configs says 'best'")
    parser.add_argument("--json", type=Path, default=Path("vector_index.json"))
    parser.add_argument("--lock", type=Path, default=Path("/tmp/bench_vector_index.lock"))
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.report:
        report(args.report, args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
