"""FAISS HNSW through VectorIndex against the exact backend, one thread each.

Issue 8's target: on 1,000,000 synthetic 64-d item vectors, HNSW retrieval must reach
recall@10 of at least 0.99 of the exact backend's lists at a query throughput at least 10x
the exact backend's, both on ONE thread (``recoforge.threads.set_num_threads(1)``: BLAS,
numba and FAISS's OpenMP all follow it).

Data (seeded): ``--clusters`` Gaussian clusters in 64-d; centres ~ N(0, I), members =
centre + ``--spread`` * N(0, I); queries are drawn the same way under another seed (users
living where the items are). Metric: inner product ("dot"), as factorised models score.
Recall@10 = |HNSW top-10 ∩ exact top-10| / 10, averaged over the queries. Queries/s are
timed over every query in one ``search`` call after a warm-up of 50 queries.

Run (opt-in; needs faiss-cpu, extra ``ann``)::

    nice python benchmarks/bench_vector_index.py [--n-items 1000000] [--queries 2000]

Writes benchmarks/results/vector_index.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import recoforge as rf
from recoforge.ranking.index import VectorIndex
from recoforge.threads import set_num_threads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vector_index.md"
K = 10


def clustered_vectors(n: int, dim: int, n_clusters: int, spread: float,
                      seed: int) -> np.ndarray:
    """``n`` float32 vectors from a seeded mixture of Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((n_clusters, dim))
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        labels = rng.integers(0, n_clusters, stop - start)
        noise = rng.standard_normal((stop - start, dim))
        out[start:stop] = centres[labels] + spread * noise
    return out


def timed_search(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """(top-K indices, queries per second) after a 50-query warm-up."""
    index.search(queries[:50], K)
    start = time.perf_counter()
    found, _ = index.search(queries, K)
    return found, len(queries) / (time.perf_counter() - start)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [np.intersect1d(f, t).size for f, t in zip(found, truth)]
    return float(np.mean(hits)) / K


def run(args: argparse.Namespace) -> list[dict]:
    set_num_threads(1)
    items = clustered_vectors(args.n_items, args.dim, args.clusters, args.spread, seed=0)
    queries = clustered_vectors(args.queries, args.dim, args.clusters, args.spread, seed=1)
    print(f"data: {items.shape} items, {queries.shape} queries", flush=True)

    start = time.perf_counter()
    exact = VectorIndex.build(items, metric="dot", backend="exact")
    exact_build = time.perf_counter() - start
    truth, exact_qps = timed_search(exact, queries)
    rows = [{"backend": "exact", "parameters": "BLAS blocks + top-k", "build s": exact_build,
             "queries/s": exact_qps, "recall@10": 1.0, "speed-up": 1.0}]
    print(rows[-1], flush=True)
    del exact

    start = time.perf_counter()
    hnsw = VectorIndex.build(items, metric="dot", backend="hnsw", M=args.m,
                             ef_construction=args.ef_construction)
    hnsw_build = time.perf_counter() - start
    print(f"hnsw built in {hnsw_build:.1f} s", flush=True)
    for ef in args.ef_search:
        hnsw.set_search_params(ef_search=ef)
        found, qps = timed_search(hnsw, queries)
        rows.append({"backend": "hnsw",
                     "parameters": f"M={args.m}, ef_construction={args.ef_construction}, "
                                   f"ef_search={ef}",
                     "build s": hnsw_build, "queries/s": qps,
                     "recall@10": recall_at_k(found, truth), "speed-up": qps / exact_qps})
        print(rows[-1], flush=True)
    return rows


def write(rows: list[dict], args: argparse.Namespace, load_before: str) -> None:
    import faiss

    target = next((r for r in rows[1:] if r["parameters"].endswith(f"={args.target_ef}")),
                  rows[-1])
    met = target["recall@10"] >= 0.99 and target["speed-up"] >= 10
    command = " ".join(["nice", "python", "benchmarks/bench_vector_index.py", *sys.argv[1:]])
    lines = [
        "# Vector index: FAISS HNSW vs exact retrieval, one thread",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs (load average at the start "
        f"{load_before}; at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}), "
        f"Python {platform.python_version()}, recoforge {rf.__version__}, "
        f"faiss {faiss.__version__}, numpy {np.__version__}.",
        f"Command: `{command}`",
        "",
        f"Data: {args.n_items:,} item vectors and {args.queries:,} query vectors, "
        f"{args.dim}-d, from {args.clusters:,} Gaussian clusters (centres N(0, I), members "
        f"centre + {args.spread} N(0, I); items seed 0, queries seed 1). Metric: inner "
        "product. Every backend runs on ONE thread (`set_num_threads(1)`: BLAS, numba, "
        "FAISS OpenMP). Recall@10: overlap of each HNSW top-10 with the exact top-10. "
        "Queries/s: one `search` call over all queries after a 50-query warm-up. HNSW "
        "indexes (v, sqrt(R^2 - |v|^2)) for dot products (equal norms, same scores).",
        "",
        "| backend | parameters | build s | queries/s | recall@10 | speed-up vs exact |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['parameters']} | {r['build s']:.1f} | "
                     f"{r['queries/s']:,.0f} | {r['recall@10']:.4f} | {r['speed-up']:.1f}x |")
    lines += [
        "",
        f"Target (issue 8, on 1,000,000 vectors): recall@10 >= 0.99 of exact at >= 10x its "
        f"throughput. With ef_search={args.target_ef}: recall@10 "
        f"{target['recall@10']:.4f}, {target['speed-up']:.1f}x: "
        f"{'met' if met else 'NOT met'}"
        f"{'' if args.n_items >= 1_000_000 else f' (on {args.n_items:,} vectors only)'}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=lambda s: [int(v) for v in s.split(",")],
                        default=[32, 64, 128])
    parser.add_argument("--target-ef", type=int, default=64,
                        help="the ef_search whose row is checked against the target")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    write(run(args), args, load_before)


if __name__ == "__main__":
    main()
