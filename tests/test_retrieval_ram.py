"""The RAM-bounded benchmark's budget arithmetic (benchmarks/retrieval_ram.py, retrieval_ram_report.py): fit, projection, setting choice, rendering."""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("retrieval_ram", Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval_ram.py")
ram = importlib.util.module_from_spec(spec)
sys.modules["retrieval_ram"] = ram  # its dataclasses look their module up by name
_path = list(sys.path)
spec.loader.exec_module(ram)  # puts benchmarks/ on sys.path for its sibling imports: undo that for the rest of the session
sys.path[:] = _path
report = sys.modules["retrieval_ram_report"]  # loaded by retrieval_ram as its sibling


def test_rows_that_fit_keeps_the_headroom_free():
    # 24 GiB with 25 % kept free leaves 18 GiB: 18 * 2**30 / 512 rows
    assert report.rows_that_fit(512, 0, 24, 0.25) == 18 * 2**30 // 512
    assert report.rows_that_fit(512, 2**30, 24, 0.25) == 17 * 2**30 // 512  # fixed bytes come off first
    assert report.rows_that_fit(512, 30 * 2**30, 24, 0.25) == 0


def test_pick_prefers_the_fastest_setting_at_target_else_the_best_recall():
    sweep = [{"recall": 0.995, "qps": 100}, {"recall": 0.991, "qps": 300}, {"recall": 0.98, "qps": 900}, {"recall": 0.992, "qps": 200}]
    assert [s["qps"] for s in report.pick(sweep, 0.99)] == [300, 200]
    assert [s["qps"] for s in report.pick(sweep, 0.999)] == [100]  # none reaches it: the best recall


def test_marginal_bytes_drop_the_ivf_centroids():
    n, dim = 81_920, 384
    c = {"serialized_bpv": 200.0, "rss_bpv": 150.0, "fixed_bytes": 1.0}
    assert report.marginal_bpv(c, n, dim) == 200.0 - report.peers.nlist_for(n) * dim * 4 / n
    assert report.marginal_bpv({"serialized_bpv": 200.0, "rss_bpv": 150.0, "fixed_bytes": 0.0}, n, dim) == 200.0
    assert report.fits(512, 512) and not report.fits(512.5, 512)
    assert report.resident_bpv({"serialized_bpv": 285.0, "rss_bpv": 394.0}) == 394.0  # the larger of the two measures


def test_stage_key_reads_the_persisted_file_name():
    assert ram._stage_key("first.3.128-int8-hnsw-m16.faiss") == "128-int8-hnsw-m16"


def test_render_lists_only_what_fits_each_budget():
    row = {"setting": "ef=48, c=20", "recall": 0.991, "qps": 1000.0, "p50_ms": 0.2, "scored": 900.0}
    cfgs = [{"name": "peer small", "family": "peer", "describe": "small peer", "params": "-", "serialized_bpv": 400.0, "rss_bpv": 390.0, "build_s": 10.0, "fixed_bytes": 0.0, "best": row},
            {"name": "peer big", "family": "peer", "describe": "big peer", "params": "-", "serialized_bpv": 700.0, "rss_bpv": 700.0, "build_s": 10.0, "fixed_bytes": 0.0, "best": {**row, "qps": 2000.0}}]
    r = {"N": 1000, "D": 384, "k": 10, "target": 0.99, "budgets": [512, 1024], "ram_gib": 24.0, "headroom": 0.25, "configs": cfgs}
    text = report.render(r)
    b512, rest = text.split("**Budget 1024")
    assert "small peer" in b512 and "| big peer" not in b512 and "Over this budget: peer big (700 B)" in b512
    assert "| big peer | - | ef=48, c=20 | 0.9910 | 2,000 |" in rest and "| small peer | - | ef=48, c=20 | 0.9910 | 1,000 | 0.200 / - | 900 | 400; 390 | 0.50x |" in rest
    # projection: 18 GiB / 400 B = 48.3M rows, 0.37 GiB at 1M
    assert "| small peer | 400 | 0.37 | 48.3M |" in text
