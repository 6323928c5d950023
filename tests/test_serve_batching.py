"""Dynamic batching: concurrent items share batches, results go back to their callers, errors stay per item."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_fixtures import live_server, served_model, tiny_index, tiny_model  # noqa: F401

from mrl.serve.batching import DynamicBatcher


def run_batcher(items: list[int], *, max_batch: int, max_wait_ms: float, fail: set[int] = frozenset(), explode: bool = False) -> tuple[list[Any], list[list[int]]]:
    batches: list[list[int]] = []

    def work(batch: list[int]) -> list[Any]:
        batches.append(list(batch))
        if explode:
            raise RuntimeError("model crashed")
        return [ValueError(f"bad {x}") if x in fail else 2 * x for x in batch]

    async def main() -> list[Any]:
        b = DynamicBatcher("t", work, max_batch=max_batch, max_wait_ms=max_wait_ms)
        b.start()
        out = await asyncio.gather(*(b.submit(x) for x in items), return_exceptions=True)
        await b.stop()
        return list(out)

    return asyncio.run(main()), batches


def test_concurrent_items_share_batches_and_get_their_own_results() -> None:
    out, batches = run_batcher(list(range(20)), max_batch=8, max_wait_ms=20)
    assert out == [2 * x for x in range(20)]
    assert max(len(b) for b in batches) == 8 and len(batches) == 3  # 8 + 8 + 4
    assert sorted(x for b in batches for x in b) == list(range(20))


def test_max_batch_one_runs_every_item_alone() -> None:
    out, batches = run_batcher(list(range(6)), max_batch=1, max_wait_ms=20)
    assert out == [0, 2, 4, 6, 8, 10] and all(len(b) == 1 for b in batches)


def test_an_item_error_fails_only_that_item_and_a_batch_error_fails_its_batch() -> None:
    out, _ = run_batcher(list(range(5)), max_batch=8, max_wait_ms=5, fail={3})
    assert isinstance(out[3], ValueError) and [out[i] for i in (0, 1, 2, 4)] == [0, 2, 4, 8]
    out, _ = run_batcher(list(range(3)), max_batch=8, max_wait_ms=5, explode=True)
    assert all(isinstance(o, RuntimeError) for o in out)


def test_an_item_larger_than_the_batch_runs_alone_and_stop_drains_the_queue() -> None:
    seen: list[list[int]] = []

    async def main() -> list[Any]:
        b = DynamicBatcher("t", lambda xs: (seen.append(list(xs)), xs)[1], max_batch=4, max_wait_ms=50)
        b.start()
        tasks = [asyncio.create_task(b.submit(x, size=s)) for x, s in ((1, 1), (2, 10), (3, 1))]
        await asyncio.sleep(0)
        await b.stop()  # everything queued before stop still runs
        return [await t for t in tasks]

    assert asyncio.run(main()) == [1, 2, 3]
    assert [2] in seen


def test_concurrent_http_requests_are_batched(served_model: Any, tiny_index: Path, live_server: Any) -> None:
    from mrl.serve import Batching, ServeConfig, create_app

    app = create_app(ServeConfig(model="tiny-mrl", index=tiny_index, batching=Batching(max_wait_ms=50, search_max_wait_ms=50)), model=served_model)
    with live_server(app) as srv:
        errors: list[str] = []

        def hit(i: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                r = c.post("/v1/embeddings", json={"input": f"text number {i}", "dimensions": 8})
                if r.status_code != 200 or len(r.json()["data"][0]["embedding"]) != 8:
                    errors.append(r.text)
                r = c.post("/v1/search", json={"input": f"a red boat {i}", "k": 3})
                if r.status_code != 200:
                    errors.append(r.text)

        threads = [threading.Thread(target=hit, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        metrics = httpx.get(srv.url + "/metrics").text
    count = _metric(metrics, 'mrl_batch_items_count{queue="embed"}')
    total = _metric(metrics, 'mrl_batch_items_sum{queue="embed"}')
    assert total == 24 and count < total  # 12 embedding + 12 search-text requests, fewer batches than requests
    assert _metric(metrics, 'mrl_batch_items_count{queue="search"}') < 12


def _metric(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[-1])


@pytest.mark.parametrize("size", [1])
def test_batcher_refuses_submit_before_start(size: int) -> None:
    b = DynamicBatcher("t", lambda xs: xs, max_batch=2, max_wait_ms=1)

    async def main() -> None:
        await b.submit(1, size)

    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(main())
