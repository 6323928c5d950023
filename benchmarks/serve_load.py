"""Load generator for `mrl serve` (loopback only; every loop is bounded and stops by itself).

Each mode starts `python -m mrl serve ...` as a separate process on a free 127.0.0.1 port, drives it
from client threads (one persistent ``http.client`` connection per thread: the lightest client the
standard library has, so the client's own CPU cost stays small on the shared 2-core machine), stops
it with SIGTERM, and writes a JSON record under ``benchmarks/out/serve/``. ``report`` turns the
records into the RESULTS.md section.

    flock /work/coord/cpu.lock .venv/bin/python benchmarks/serve_load.py embeddings
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/serve_load.py search --index IDX --queries Q.npy
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/serve_load.py soak --index IDX --queries Q.npy --seconds 600
    flock /work/coord/cpu.lock .venv/bin/python benchmarks/serve_load.py reload --index IDX --queries Q.npy
    .venv/bin/python benchmarks/serve_load.py report
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "serve"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def server(args: list[str], *, log: Path) -> Iterator[tuple[str, int, int]]:
    """``mrl serve ARGS`` on a free loopback port; yields (host, port, pid); SIGTERM at exit."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mrl", "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.time() + 300
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"mrl serve exited: see {log}")
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    raise SystemExit(f"mrl serve did not start in 300 s: see {log}")
                time.sleep(0.2)
            yield "127.0.0.1", port, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- client
class Client:
    """One keep-alive connection; ``post`` returns (status, seconds, parsed body or None).

    A server may close a keep-alive connection that sat idle (uvicorn: after 5 s); as every HTTP
    client library does, a request that fails on such a reused connection before any response
    byte is retried once on a fresh one (counted in ``reconnects``, not as an error).
    """

    def __init__(self, host: str, port: int, key: str | None = None) -> None:
        self.host, self.port = host, port
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        self.reconnects = 0
        self.last_error = ""

    def _fresh(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)

    def post(self, path: str, body: bytes, *, parse: bool = False) -> tuple[int, float, Any]:
        t0 = time.perf_counter()
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._fresh()
                if attempt:
                    self.last_error = repr(exc)
                    return 0, time.perf_counter() - t0, None
                self.reconnects += 1
                t0 = time.perf_counter()
            except (OSError, http.client.HTTPException) as exc:
                self._fresh()
                self.last_error = repr(exc)
                return 0, time.perf_counter() - t0, None
        dt = time.perf_counter() - t0
        if resp.status != 200:
            self.last_error = f"{resp.status} {data[:200]!r}"
        return resp.status, dt, (json.loads(data) if parse and resp.status == 200 else None)


def drive(host: str, port: int, path: str, bodies: list[bytes], *, concurrency: int, total: int, warmup: int = 0, max_seconds: float = 120.0) -> dict[str, Any]:
    """``total`` POSTs spread over ``concurrency`` threads (each a fixed share, all stopping at
    ``max_seconds`` at the latest); latency percentiles over the requests made."""
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    reconnects = [0] * concurrency
    samples: list[str] = []
    per = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    start = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        c = Client(host, port)
        for j in range(warmup):
            c.post(path, bodies[(i * 7919 + j) % len(bodies)])
        start.wait()
        deadline = time.perf_counter() + max_seconds
        for j in range(per[i]):
            if time.perf_counter() > deadline:
                break
            status, dt, _ = c.post(path, bodies[(i * 104729 + j) % len(bodies)])
            lat[i].append(dt)
            if status != 200:
                errors[i] += 1
                samples.append(c.last_error)
        reconnects[i] = c.reconnects

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = np.array([x for xs in lat for x in xs])
    return {"concurrency": concurrency, "requests": int(all_lat.size), "errors": int(sum(errors)), "seconds": wall, "rps": all_lat.size / wall,
            "p50_ms": 1e3 * float(np.percentile(all_lat, 50)), "p99_ms": 1e3 * float(np.percentile(all_lat, 99)), "mean_ms": 1e3 * float(all_lat.mean()),
            "reconnects": int(sum(reconnects)), "error_samples": samples[:5], "loadavg": os.getloadavg()}


def short_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """Short texts (3-10 words): the start of WordNet noun definitions, shuffled."""
    from mrl.data.wordnet import load_synsets

    rng = np.random.default_rng(seed)
    defs = [" ".join(s.definition.split()[: int(rng.integers(3, 11))]) for s in load_synsets()]
    return [defs[i] for i in rng.choice(len(defs), size=n, replace=False)]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (the shared 2-core CPU box), Python {platform.python_version()}"


def metric_value(host: str, port: int, name: str) -> float:
    """Sum of every exported series of ``name`` (all label sets) in /metrics; 0 when none exists yet
    (a labelled prometheus counter exports no series before its first increment)."""
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", "/metrics")
    lines = c.getresponse().read().decode().splitlines()
    return float(sum(float(line.split()[-1]) for line in lines if line.startswith((name + " ", name + "{"))))


def batch_totals(host: str, port: int, queue: str) -> tuple[float, float]:
    """(units, batches) run so far by a batch queue, from /metrics (0 before its first batch)."""
    return metric_value(host, port, f'mrl_batch_size_sum{{queue="{queue}"}}'), metric_value(host, port, f'mrl_batch_size_count{{queue="{queue}"}}')


def search_costs(host: str, port: int) -> dict[str, float]:
    """Running totals from /metrics that split a search request's server time (see :func:`cost_split`)."""
    names = {"requests": 'mrl_request_duration_seconds_count{endpoint="/v1/search"}', "server_s": 'mrl_request_duration_seconds_sum{endpoint="/v1/search"}',
             "batches": 'mrl_batch_run_seconds_count{queue="search"}', "run_s": 'mrl_batch_run_seconds_sum{queue="search"}',
             "wait_s": 'mrl_batch_queue_wait_seconds_sum{queue="search"}'}
    return {k: metric_value(host, port, v) for k, v in names.items()}


def cost_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per request, in ms, over one level: time inside the server (middleware start to response end),
    of it the search batch run in the worker thread (shared by the requests of a batch) and the
    oldest request's queue wait per batch."""
    d = {k: after[k] - before[k] for k in before}
    n = max(d["requests"], 1.0)
    return {"server_ms": 1e3 * d["server_s"] / n, "batch_run_ms_per_request": 1e3 * d["run_s"] / n, "queue_wait_ms_per_batch": 1e3 * d["wait_s"] / max(d["batches"], 1.0)}


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Mean units per batch between two :func:`batch_totals` readings (warm-up included)."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1.0)


# ---------------------------------------------------------------------- modes
def mode_embeddings(a: argparse.Namespace) -> dict[str, Any]:
    """Both servers (batching off = ``--max-batch 1``, on) run side by side; each concurrency level
    drives one, then the other right after (order alternating by level), so load from other jobs on
    the shared machine falls on both configurations alike. The idle server costs no CPU."""
    texts = short_texts()
    bodies = [json.dumps({"input": t, "model": a.model}).encode() for t in texts]
    configs = {"off": ["--max-batch", "1"], "on": ["--max-batch", str(a.max_batch), "--batch-wait-ms", str(a.wait_ms)]}
    rows = []
    with contextlib.ExitStack() as stack:
        servers = {b: stack.enter_context(server(["--model", a.model, "--threads", str(a.threads), *extra], log=OUT / f"embeddings-{b}.log"))
                   for b, extra in configs.items()}
        for level, c in enumerate(a.concurrency):
            for batching in ("off", "on") if level % 2 == 0 else ("on", "off"):
                host, port, _ = servers[batching]
                n = a.requests * c if c > 1 else a.requests
                before = batch_totals(host, port, "embed")
                r = drive(host, port, "/v1/embeddings", bodies, concurrency=c, total=min(n, a.max_requests), warmup=3, max_seconds=a.max_seconds)
                r["batching"] = batching
                r["mean_batch_texts"] = mean_batch(before, batch_totals(host, port, "embed"))
                rows.append(r)
                print(json.dumps(r), flush=True)
    return {"mode": "embeddings", "model": a.model, "threads": a.threads, "max_batch": a.max_batch, "wait_ms": a.wait_ms, "text_words": "3-10",
            "order": "per level: off then on, on then off, ... (both servers up)", "rows": rows}


def load_queries(path: Path, n: int) -> np.ndarray:
    q = np.load(path, mmap_mode="r")
    return np.ascontiguousarray(q[:n], dtype=np.float32)


def mode_search(a: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from mrl.index import MatryoshkaIndex

    faiss.omp_set_num_threads(a.threads)
    q = load_queries(a.queries, a.n)
    index = MatryoshkaIndex.load(a.index, verify=False)
    funnel = a.funnel or (str(index.funnel) if index.funnel else f"{index.dim}:{a.k}")
    # in-process: the same funnel, one query per call, as the server runs it (one worker thread)
    for i in range(50):
        index.search(q[i : i + 1], a.k, funnel=funnel)
    lat = []
    t0 = time.perf_counter()
    for i in range(q.shape[0]):
        t = time.perf_counter()
        index.search(q[i : i + 1], a.k, funnel=funnel)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    lat_a = np.array(lat)
    inproc = {"where": "in-process", "concurrency": 1, "requests": len(lat), "errors": 0, "seconds": wall, "rps": len(lat) / wall,
              "p50_ms": 1e3 * float(np.percentile(lat_a, 50)), "p99_ms": 1e3 * float(np.percentile(lat_a, 99)), "mean_ms": 1e3 * float(lat_a.mean()),
              "loadavg": os.getloadavg()}
    t0 = time.perf_counter()
    index.search(q, a.k, funnel=funnel)
    inproc_batch_qps = q.shape[0] / (time.perf_counter() - t0)
    print(json.dumps(inproc), flush=True)
    del index
    bodies = [json.dumps({"vectors": [v.tolist()], "k": a.k, "funnel": funnel}).encode() for v in q]
    rows = [inproc]
    with server(["--index", str(a.index), "--threads", str(a.threads)], log=OUT / "search.log") as (host, port, pid):
        for c in a.concurrency:
            before, costs = batch_totals(host, port, "search"), search_costs(host, port)
            r = drive(host, port, "/v1/search", bodies, concurrency=c, total=a.n, warmup=20)
            r["where"] = "HTTP"
            r["mean_batch_queries"] = mean_batch(before, batch_totals(host, port, "search"))
            r["cost_split"] = cost_split(costs, search_costs(host, port))
            rows.append(r)
            print(json.dumps(r), flush=True)
        rss = rss_mb(pid)
    info = json.loads((a.index / "manifest.json").read_text())
    return {"mode": "search", "index": str(a.index), "count": info.get("count"), "dim": info.get("dim"), "dtype": info.get("dtype"), "funnel": funnel, "k": a.k,
            "threads": a.threads, "queries": str(a.queries), "inprocess_batch_qps": inproc_batch_qps, "server_rss_mb": rss, "rows": rows, "note": a.note}


def mixed_traffic(host: str, port: int, q: np.ndarray, texts: list[str], stop: threading.Event, k: int) -> tuple[list[threading.Thread], dict[str, list[int]], list[str]]:
    """Client threads: 3 embeddings (1-4 texts, random dimensions), 2 search-by-text, 2 search-by-vector."""
    counts: dict[str, list[int]] = {}  # kind -> [ok, failed, reconnects]
    errors: list[str] = []
    lock = threading.Lock()

    def loop(kind: str, make: Callable[[np.random.Generator], tuple[str, bytes]], seed: int) -> None:
        rng = np.random.default_rng(seed)
        c = Client(host, port)
        ok = bad = 0
        while not stop.is_set():
            path, body = make(rng)
            status, _, _ = c.post(path, body)
            ok += status == 200
            if status != 200:
                bad += 1
                errors.append(f"{kind}: {c.last_error}")
        with lock:
            counts.setdefault(kind, [0, 0, 0])
            counts[kind][0] += ok
            counts[kind][1] += bad
            counts[kind][2] += c.reconnects

    def emb(rng: np.random.Generator) -> tuple[str, bytes]:
        n = int(rng.integers(1, 5))
        return "/v1/embeddings", json.dumps({"input": [texts[int(i)] for i in rng.integers(0, len(texts), n)], "dimensions": int(rng.choice([64, 128, 384]))}).encode()

    def stext(rng: np.random.Generator) -> tuple[str, bytes]:
        return "/v1/search", json.dumps({"input": texts[int(rng.integers(len(texts)))], "k": k, "return_text": True}).encode()

    def svec(rng: np.random.Generator) -> tuple[str, bytes]:
        return "/v1/search", json.dumps({"vectors": [q[int(rng.integers(len(q)))].tolist()], "k": k}).encode()

    plan = [("embeddings", emb)] * 3 + [("search-text", stext)] * 2 + [("search-vectors", svec)] * 2
    threads = [threading.Thread(target=loop, args=(kind, fn, i)) for i, (kind, fn) in enumerate(plan)]
    for t in threads:
        t.start()
    return threads, counts, errors


def override(a: argparse.Namespace) -> list[str]:
    """The mixed traffic asks for ``dimensions`` 64/128/384: a model that is not Matryoshka-trained
    (e.g. the packaged all-MiniLM-L6-v2) refuses them with a 400 unless the server is told otherwise."""
    return ["--allow-untrained-dimensions"] if a.allow_untrained_dimensions else []


def mode_soak(a: argparse.Namespace) -> dict[str, Any]:
    q = load_queries(a.queries, 2000)
    texts = short_texts()
    samples = []
    with server(["--model", a.model, "--index", str(a.index), "--threads", str(a.threads), *override(a)], log=OUT / "soak.log") as (host, port, pid):
        stop = threading.Event()
        threads, counts, errors = mixed_traffic(host, port, q, texts, stop, a.k)
        t0 = time.perf_counter()
        while (el := time.perf_counter() - t0) < a.seconds:
            samples.append({"t": round(el, 1), "rss_mb": rss_mb(pid), "requests": metric_value(host, port, "mrl_requests_total")})
            time.sleep(min(a.sample_s, max(a.seconds - el, 0.1)))
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        samples.append({"t": round(wall, 1), "rss_mb": rss_mb(pid)})
        server_errors = metric_value(host, port, "mrl_request_errors_total")
    total = sum(v[0] + v[1] for v in counts.values())
    return {"mode": "soak", "index": str(a.index), "model": a.model, "seconds": wall, "requests": total, "errors": sum(v[1] for v in counts.values()),
            "server_error_count": server_errors, "by_kind": counts, "error_samples": errors[:10], "reconnects": sum(v[2] for v in counts.values()),
            "rss": samples, "rps": total / wall, "loadavg_end": os.getloadavg()}


def mode_reload(a: argparse.Namespace) -> dict[str, Any]:
    """Mixed traffic while the served folder is rebuilt in place (vectors appended) and reloaded, plus
    plain reloads of the same folder, every ``--every`` seconds."""
    from mrl.index import MatryoshkaIndex

    q = load_queries(a.queries, 2000)
    texts = short_texts()
    reloads = []
    with server(["--model", a.model, "--index", str(a.index), "--threads", str(a.threads), *override(a)], log=OUT / "reload.log") as (host, port, pid):
        stop = threading.Event()
        threads, counts, errors = mixed_traffic(host, port, q, texts, stop, a.k)
        admin = Client(host, port)
        t0 = time.perf_counter()
        for i in range(a.reloads):
            time.sleep(a.every)
            if i % 2 == 0:  # rebuild: append 100 vectors to the served folder (a new segment, manifest swapped last)
                idx = MatryoshkaIndex.load(a.index, verify=False)
                new_ids = np.arange(100, dtype=np.int64) + int(idx.ids.max()) + 1
                idx.add(q[:100], new_ids)
                idx.save(a.index)
            status, dt, body = admin.post("/admin/reload", b"", parse=True)
            reloads.append({"status": status, "seconds": dt, "generation": body and body.get("generation"), "count": body and body.get("count"), "rebuilt": i % 2 == 0})
            print(json.dumps(reloads[-1]), flush=True)
        time.sleep(a.every)
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    total = sum(v[0] + v[1] for v in counts.values())
    return {"mode": "reload", "index": str(a.index), "seconds": wall, "requests": total, "errors": sum(v[1] for v in counts.values()), "by_kind": counts,
            "reloads": reloads, "failed_reloads": sum(r["status"] != 200 for r in reloads), "error_samples": errors[:10],
            "reconnects": sum(v[2] for v in counts.values()), "loadavg_end": os.getloadavg()}


# ---------------------------------------------------------------------- report
def mode_report(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_md import replace_section

    rec = {p.stem: json.loads(p.read_text()) for p in OUT.glob("*.json")}

    def cmd(r: dict[str, Any]) -> str:
        return f"\n\nCommand (run holding the CPU lock, finished {r['finished']}): `flock /work/coord/cpu.lock .venv/bin/python {r['command']}`"
    parts = [a.header.strip()] if a.header else []
    if "embeddings" in rec:
        e = rec["embeddings"]
        parts.append(f"### Embeddings: `{e['model']}`, one short text (3-10 words) per request\n\n"
                     f"Server torch threads {e['threads']}; batching on = up to {e['max_batch']} texts, {e['wait_ms']} ms collection window; off = `--max-batch 1`.\n\n"
                     f"{'Both servers up side by side, each level run on one and then the other (order alternating by level). ' if e.get('order') else ''}"
                     "Load = the machine's 1-minute load average when the level ended (2 cores; other jobs' tests may run unlocked).\n\n"
                     "| concurrency | batching | requests | errors | req/s | p50 ms | p99 ms | mean texts/batch | load |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in sorted(e["rows"], key=lambda r: (r["concurrency"], r["batching"])):
            parts[-1] += (f"\n| {r['concurrency']} | {r['batching']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                          f"| {r['mean_batch_texts']:.1f} | {r['loadavg'][0]:.1f} |")
        by = {(r["concurrency"], r["batching"]): r["rps"] for r in e["rows"]}
        gains = ", ".join(f"{c}: {by[(c, 'on')] / by[(c, 'off')]:.2f}x" for c in sorted({r['concurrency'] for r in e['rows']}) if (c, "on") in by and (c, "off") in by)
        parts[-1] += f"\n\nThroughput from dynamic batching (on/off) at concurrency {gains} (target >= 2x at 32)." + cmd(e)
    for s in sorted((r for r in rec.values() if r.get("mode") == "search"), key=lambda r: -(r.get("count") or 0)):
        ip = next(r for r in s["rows"] if r["where"] == "in-process")
        parts.append(f"### Search: {s['count']:,} x {s['dim']} ({s['dtype']}) index, funnel `{s['funnel']}`, k={s['k']}, one query vector per request\n\n"
                     f"{s.get('note') or ''}\n\n| where | concurrency | queries | errors | QPS | p50 ms | p99 ms | load |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in s["rows"]:
            load = f"{r['loadavg'][0]:.1f}" if "loadavg" in r else ""
            parts[-1] += f"\n| {r['where']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {load} |"
        http1 = next((r for r in s["rows"] if r["where"] == "HTTP" and r["concurrency"] == 1), None)
        if http1:
            parts[-1] += (f"\n\nHTTP adds {http1['p50_ms'] - ip['p50_ms']:.3f} ms at p50 for single queries (target <= 1 ms); in-process batch QPS "
                          f"(all queries in one call) {s['inprocess_batch_qps']:,.0f}; server RSS {s['server_rss_mb']:,.0f} MiB.")
        if http1 and "cost_split" in http1:
            cs = http1["cost_split"]
            parts[-1] += (f" Where the HTTP time goes at concurrency 1 (means per request, from the server's /metrics over the level, warm-up included): "
                          f"client mean {http1['mean_ms']:.3f} ms vs in-process mean {ip['mean_ms']:.3f} ms; inside the server {cs['server_ms']:.3f} ms, "
                          f"of which the search batch in the worker thread {cs['batch_run_ms_per_request']:.3f} ms and queue wait {cs['queue_wait_ms_per_batch']:.3f} ms; "
                          f"the rest of the server time is HTTP parsing, JSON/pydantic validation, the hop to the worker thread and the JSON response; "
                          f"client mean minus server time ({http1['mean_ms'] - cs['server_ms']:.3f} ms) is the loopback round trip and the Python client.")
        parts[-1] += cmd(s)
    if "soak" in rec:
        k = rec["soak"]
        rss = k["rss"]
        parts.append(f"### Soak: {k['seconds'] / 60:.1f} minutes of mixed traffic\n\n7 client threads: 3 embeddings (1-4 texts, dimensions 64/128/384), 2 search by text "
                     f"(return_text), 2 search by vector. {k['requests']:,} requests ({k['rps']:.0f}/s), **{k['errors']} errors** "
                     f"(server-side error counter: {np.nan_to_num(k['server_error_count']):.0f}). Server RSS: {rss[0]['rss_mb']:.0f} MiB at start (before the first request), {rss[1]['rss_mb']:.0f} MiB after {rss[1]['t']:.0f} s, "
                     f"{rss[len(rss) // 2]['rss_mb']:.0f} MiB at half time, {rss[-1]['rss_mb']:.0f} MiB at the end." + cmd(k))
    if "reload" in rec:
        r = rec["reload"]
        rs = [x["seconds"] for x in r["reloads"]]
        parts.append(f"### Hot reload under load\n\nThe same mixed traffic for {r['seconds']:.0f} s while the served folder was reloaded {len(rs)} times "
                     f"(every other time after appending 100 vectors to it in place, so the swap is to a rebuilt folder): {r['requests']:,} requests, "
                     f"**{r['errors']} failed**, {r['failed_reloads']} failed reloads; a reload (load + checksum verification + swap) took "
                     f"{min(rs):.2f}-{max(rs):.2f} s while traffic continued." + cmd(r))
    parts.append(f"Machine: {machine()}. Raw records: `benchmarks/out/serve/*.json` (not in git).")
    replace_section("serve", "\n\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("embeddings", "search", "soak", "reload", "report"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="all-MiniLM-L6-v2")
        p.add_argument("--index", type=Path)
        p.add_argument("--queries", type=Path, help="Query vectors .npy [N, D] from the index's model.")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--k", type=int, default=10)
        p.add_argument("--out", type=Path, default=None)
    e = sub.choices["embeddings"]
    e.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    e.add_argument("--requests", type=int, default=300, help="Requests per level (x concurrency above 1).")
    e.add_argument("--max-requests", type=int, default=3000)
    e.add_argument("--max-batch", type=int, default=64)
    e.add_argument("--wait-ms", type=float, default=2.0)
    e.add_argument("--max-seconds", type=float, default=90.0, help="Time cap per level.")
    s = sub.choices["search"]
    s.add_argument("--funnel", default=None)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    s.add_argument("--note", default="")
    k = sub.choices["soak"]
    k.add_argument("--seconds", type=float, default=600)
    k.add_argument("--sample-s", type=float, default=30)
    for name in ("soak", "reload"):
        sub.choices[name].add_argument("--allow-untrained-dimensions", action="store_true", help="Start the server with this override (see override()).")
    r = sub.choices["reload"]
    r.add_argument("--reloads", type=int, default=10)
    r.add_argument("--every", type=float, default=4.0)
    sub.choices["report"].add_argument("--header", default="")
    a = ap.parse_args()
    if a.mode == "report":
        return mode_report(a)
    if a.mode != "embeddings" and (a.index is None or a.queries is None):
        ap.error(f"{a.mode} needs --index and --queries")
    rec = {"embeddings": mode_embeddings, "search": mode_search, "soak": mode_soak, "reload": mode_reload}[a.mode](a)
    rec.update(machine=machine(), command=shlex.join(sys.argv), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    out = a.out or OUT / f"{a.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
