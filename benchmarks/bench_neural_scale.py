"""Memory and seconds per epoch of mult_vae and lightgcn on 20 million synthetic events.

Issue 11's memory target: "Mult-VAE and LightGCN train on the 20-million-interaction
synthetic set (the scalable generator, items capped at 20,000 for the VAEs) within 8 GiB;
report seconds per epoch."

Each model runs in its own child process (so its peak RSS is its own):

1. ``recoforge.data.powerlaw.scalable_interactions(N, n_items=20_000, seed=0)`` (default
   users N // 50; repeated (user, item) events collapse, so the pairs are fewer than N);
2. ``rf.create(model, epochs=1, seed=0, device="cpu")`` with the model's default
   hyperparameters (or overrides: ``--models "lightgcn:batch_size=262144;n_layers=2"``),
   fitted through the ordinary ``fit``; the only change is that the model's batch source
   is wrapped (:class:`TimedBatches`, an instance attribute over ``_batches``) to time
   each batch and to stop the epoch after ``--max-batches`` batches or ``--max-seconds``
   of training, whichever comes first;
3. memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end (the whole process:
   generation, CSR, graph, training) and a thread sampling ``VmRSS`` of
   ``/proc/self/status`` every 0.1 s (peak per phase).

Seconds per epoch: measured when the whole epoch ran; otherwise extrapolated as the
fit's wall time (the measured batches plus everything outside the batch loop: CSR,
sampler, graph, scoring state) plus the batches not run at the mean time of the measured
ones (the median is reported too; on a shared machine the mean is the safer rate).

Run (niced; RECOFORGE_NUM_THREADS sets torch's threads)::

    RECOFORGE_NUM_THREADS=2 nice .venv/bin/python benchmarks/bench_neural_scale.py \
        --models mult_vae,lightgcn [--max-seconds 600] [--max-batches 0]

Writes benchmarks/results/neural_scale.md (``--out`` to change); ``--child MODEL`` runs
one model and prints its measurements as JSON (used by the parent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "neural_scale.md"
GIB = 1 << 30
TARGET_GIB = 8.0


class RssSampler(threading.Thread):
    """Samples VmRSS of this process every ``interval`` seconds; peak per named phase."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.phase = interval, "start"
        self.peaks: dict[str, int] = {}
        self._halt = threading.Event()

    @staticmethod
    def current() -> int:
        """VmRSS in bytes."""
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        rss = self.current()
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def enter(self, phase: str) -> None:
        self.sample()
        self.phase = phase
        self.sample()

    def stop(self) -> None:
        self.sample()
        self._halt.set()
        self.join()


class TimedBatches:
    """A batch source that times each batch and stops after a budget of batches/seconds.

    The time of batch k is from its yield to the next request, i.e. the trainer's step on
    it (loss, backward, optimiser), plus the production of the next batch.
    """

    def __init__(self, inner: Any, max_batches: int, max_seconds: float) -> None:
        self.inner, self.max_batches, self.max_seconds = inner, max_batches, max_seconds
        self.batch_size, self.n_rows = inner.batch_size, inner.n_rows
        self.times: list[float] = []
        self.loop_seconds = 0.0

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        start = last = time.perf_counter()
        for batch in self.inner:
            yield batch
            now = time.perf_counter()
            self.times.append(now - last)
            last = now
            if (self.max_batches and len(self.times) >= self.max_batches) \
                    or now - start >= self.max_seconds:
                break
        self.loop_seconds = time.perf_counter() - start


def _generate(n_interactions: int, n_items: int) -> tuple[Any, dict[str, Any]]:
    from recoforge.data.powerlaw import scalable_interactions

    start = time.perf_counter()
    data = scalable_interactions(n_interactions, n_items=n_items, seed=0)
    inter = data.interactions
    arrays = sum(a.nbytes for a in (inter.users, inter.items, inter.values))
    info = {"n_interactions": n_interactions, "users": len(data.user_index),
            "items": len(data.item_index), "pairs": len(inter),
            "generate_s": time.perf_counter() - start, "dataset_bytes": arrays}
    return data, info


def _matrix_info(data: Any) -> dict[str, Any]:
    matrix = data.matrix()  # cached on the interactions: the fit reuses it
    nbytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    active = int((matrix.getnnz(axis=1) > 0).sum())
    return {"csr_bytes": nbytes, "active_users": active}


def run_child(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One model: generate, fit one (possibly truncated) epoch, measure. JSON-able."""
    sampler = RssSampler()
    sampler.start()
    import recoforge as rf
    from recoforge.threads import get_num_threads

    sampler.enter("generate")
    data, info = _generate(args.n_interactions, args.n_items)
    sampler.enter("csr")
    info.update(_matrix_info(data))
    info["rss_before_fit"] = sampler.current()
    name, overrides = parse_model_spec(model_name)
    model = rf.create(name, **{"epochs": 1, "seed": 0, "device": "cpu", **overrides})
    timed: list[TimedBatches] = []
    original = model._batches

    def timed_batches(*a: Any, **k: Any) -> TimedBatches:
        timed.append(TimedBatches(original(*a, **k), args.max_batches, args.max_seconds))
        return timed[-1]

    model._batches = timed_batches
    sampler.enter("fit")
    start = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - start
    sampler.stop()
    batches = timed[0]
    info.update(_epoch_figures(batches, fit_s))
    info.update(model=model_name, threads=get_num_threads(), params=_params(model),
                phase_peaks=sampler.peaks,
                ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return info


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"lightgcn:batch_size=262144"`` -> ("lightgcn", {"batch_size": 262144})."""
    name, _, rest = spec.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--models: expected key=value after {name}:, got {item!r}")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        overrides[key] = value
    return name, overrides


def _params(model: Any) -> dict[str, Any]:
    names = ("hidden_dim", "latent_dim", "embedding_dim", "n_layers", "batch_size",
             "n_negatives", "negative_sampler")
    return {n: getattr(model.config, n) for n in names if hasattr(model.config, n)}


def _epoch_figures(batches: TimedBatches, fit_s: float) -> dict[str, Any]:
    times, total = batches.times, len(batches)
    overhead = fit_s - batches.loop_seconds
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    complete = len(times) == total
    rest = (total - len(times)) * statistics.fmean(times)
    epoch_s = fit_s if complete else fit_s + rest
    return {"fit_s": fit_s, "fit_overhead_s": overhead, "batches_measured": len(times),
            "batches_per_epoch": total, "first_batch_s": times[0],
            "median_batch_s": steady, "mean_batch_s": statistics.fmean(times),
            "loop_s": batches.loop_seconds, "epoch_complete": complete,
            "epoch_s": epoch_s}


# ---------------------------------------------------------------------------- parent
def _child_command(model: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, __file__, "--child", model,
            "--n-interactions", str(args.n_interactions), "--n-items", str(args.n_items),
            "--max-batches", str(args.max_batches), "--max-seconds", str(args.max_seconds)]


def _run_models(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for model in args.models.split(","):
        print(f"running {model} ...", flush=True)
        done = subprocess.run(_child_command(model, args), capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            results.append({"model": model, "error": done.stderr.strip().splitlines()[-1]})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    return results


def _row(r: dict[str, Any], command: str) -> str:
    if "error" in r:
        return f"| {r['model']} | failed: {r['error']} |||||||||"
    peak = r["ru_maxrss"] / GIB
    if r["epoch_complete"]:
        method = f"measured: one full epoch ({r['batches_per_epoch']} batches)"
    else:
        method = (f"extrapolated: {r['batches_measured']} of {r['batches_per_epoch']} "
                  f"batches timed, mean {r['mean_batch_s']:.2f} s/batch")
    size = f"{r['n_interactions'] / 1e6:g}M events"
    return (f"| {r['model']} | {size} | {r['users']:,} | {r['items']:,} | {r['pairs']:,} "
            f"| {peak:.2f} | {r['epoch_s']:,.0f} | {method} | `{command}` |")


def _details(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return []
    peaks = ", ".join(f"{k} {v / GIB:.2f}" for k, v in r["phase_peaks"].items())
    return [f"- {r['model']}: params {r['params']}, {r['threads']} torch thread(s); "
            f"active users {r['active_users']:,}; dataset arrays "
            f"{r['dataset_bytes'] / GIB:.3f} GiB, CSR {r['csr_bytes'] / GIB:.3f} GiB; "
            f"generation {r['generate_s']:.1f} s; RSS before fit "
            f"{r['rss_before_fit'] / GIB:.2f} GiB; VmRSS peaks by phase (GiB): {peaks}; "
            f"ru_maxrss {r['ru_maxrss'] / GIB:.2f} GiB; fit wall {r['fit_s']:.1f} s "
            f"(batch loop {r['loop_s']:.1f} s, outside the loop {r['fit_overhead_s']:.1f} "
            f"s); first batch {r['first_batch_s']:.2f} s, median "
            f"{r['median_batch_s']:.2f} s, mean {r['mean_batch_s']:.2f} s."]


def write_report(results: list[dict[str, Any]], args: argparse.Namespace,
                 load_before: str, command: str) -> None:
    ok = [r for r in results if "error" not in r]
    verdict = ("holds" if ok and len(ok) == len(results)
               and all(r["ru_maxrss"] / GIB <= TARGET_GIB for r in ok) else "does not hold")
    lines = ["# mult_vae and lightgcn at 20 million events: memory and seconds per epoch",
             "", f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores "
             f"(shared with other jobs), Python {platform.python_version()}",
             f"- load average before: {load_before}; after: {_load()}",
             f"- command: `{command}`",
             "- data: `scalable_interactions(N, n_items=20_000, seed=0)`, default users "
             "N // 50; each model in its own process, device cpu, seed 0, the model's "
             "default hyperparameters, epochs=1", "",
             "| model | data | users | items | pairs | peak RSS GiB | s / epoch | method "
             "| command |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    lines += [_row(r, command) for r in results]
    lines += ["", f"Target \"within {TARGET_GIB:g} GiB\" (peak RSS of the whole process: "
              f"generation, CSR, training): **{verdict}**.", "", "## Details", ""]
    for r in results:
        lines += _details(r)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mult_vae,lightgcn")
    parser.add_argument("--n-interactions", type=int, default=20_000_000)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--max-batches", type=int, default=0, help="0: no cap")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="training seconds after which the epoch is cut")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args)))
        return
    load_before = _load()
    threads = os.environ.get("RECOFORGE_NUM_THREADS", "all")
    command = (f"RECOFORGE_NUM_THREADS={threads} nice .venv/bin/python "
               f"benchmarks/bench_neural_scale.py "
               + shlex.join(argv if argv is not None else sys.argv[1:]))
    write_report(_run_models(args), args, load_before, command.strip())


if __name__ == "__main__":
    main()
