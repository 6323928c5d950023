"""Keeping the rotation fit orthogonal: projected AdamW (a Newton-Schulz polar step after every update,
:func:`mrl.models.rotation.project_orthogonal_`, what ``fit_adaptor(kind="rotation")`` does) against
``torch.nn.utils.parametrizations.orthogonal`` (matrix_exp and cayley maps), same loss, batches, steps,
lr and start (the mean-last PCA rotation), on cached MiniLM vectors of WordNet training texts.

Reports ms per step (one torch thread, as the fit runs), the geometry loss per prefix on held-out
vectors after the fit (lower is better) and the orthogonality error max|W W^T - I|.

    nice -n 19 .venv/bin/python benchmarks/rotation_orthogonality.py --texts 3000 --steps 200
    nice -n 19 .venv/bin/python benchmarks/rotation_orthogonality.py --steps 100 --runs projected@2,projected@4,cayley,cayley@0.5
    nice -n 19 .venv/bin/python benchmarks/rotation_orthogonality.py --steps 300 --runs projected,projected@16,cayley --eval-queries 500
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from mrl.data.texts import load_texts
    from mrl.losses import MatryoshkaEmbeddingLoss
    from mrl.models.adaptor import MatryoshkaAdaptor
    from mrl.models.rotation import project_orthogonal_
    from mrl.models.text import resolve_model_path
    from mrl.models.text_encode import cached_encode
    from mrl.train.adaptor import AdaptorConfig, _neighbour_table
    from mrl.train.geometry_loss import GeometryLoss

    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="projected,matrix_exp,cayley", help="comma list of MODE[@LR_MULTIPLIER], e.g. projected@2,cayley")
    ap.add_argument("--eval-queries", type=int, default=0, help="also nDCG@10 per dim on this many WordNet test queries (whole test corpus), base truncated first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    texts = load_texts("wordnet", max_texts=args.texts + 1000, seed=args.seed)
    x = cached_encode(resolve_model_path("all-MiniLM-L6-v2"), texts, max_seq_length=128, progress=False)
    train, held = x[: args.texts], torch.as_tensor(x[args.texts :])
    dims = (8, 16, 32, 64, 128, 256, 384)
    cfg = AdaptorConfig(list(dims), kind="rotation", steps=args.steps)
    neigh = _neighbour_table(train, cfg.neighbours)
    xt = torch.as_tensor(train)
    xn = F.normalize(xt, dim=1)
    held_target = F.normalize(held, dim=1) @ F.normalize(held, dim=1).T

    def run(mode: str, lr_mult: float = 1.0) -> tuple[float, list[float], float, MatryoshkaAdaptor]:
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        model = MatryoshkaAdaptor(384, "rotation")
        model.init_pca(xt)
        if mode != "projected":
            w0 = model.linear.weight.detach().clone()
            torch.nn.utils.parametrizations.orthogonal(model.linear, orthogonal_map=mode)
            model.linear.weight = w0  # right_inverse: start at the same rotation
        geometry = GeometryLoss(cfg)
        loss_fn = MatryoshkaEmbeddingLoss(dims, geometry)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr * lr_mult, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
        n_anchor = cfg.batch_size // (cfg.neighbours + 1)
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            anchors = rng.choice(len(train), size=n_anchor, replace=False)
            idx = np.unique(np.concatenate([anchors, neigh[anchors].ravel()]))
            geometry.target = xn[idx] @ xn[idx].T
            res = loss_fn(model(xt[idx]))
            opt.zero_grad(set_to_none=True)
            res.total.backward()
            opt.step()
            sched.step()
            if mode == "projected":
                project_orthogonal_(model.linear.weight)
        ms = 1000 * (time.perf_counter() - t0) / cfg.steps
        with torch.no_grad():
            geometry.target = held_target
            per_dim = loss_fn(model(held)).per_dim.tolist()
            w = model.linear.weight
            err = float((w @ w.T - torch.eye(384)).abs().max())
        return ms, per_dim, err, model

    print(f"{args.texts} cached MiniLM vectors (WordNet), {args.steps} steps x batch {cfg.batch_size}, lr {cfg.lr} x multiplier, 1 thread; held-out geometry loss per dim {dims}")
    ir = None
    if args.eval_queries:
        from mrl.evaluate.ir import per_dim_ir
        from mrl.evaluate.text_eval import load_eval_set

        data = load_eval_set(None, max_queries=args.eval_queries, fit_texts=0, seed=args.seed)
        q, c = (cached_encode(resolve_model_path("all-MiniLM-L6-v2"), t, max_seq_length=128, progress=False) for t in (data.queries, data.corpus))
        ir_dims = (8, 16, 32, 64, 384)

        def ir(tq: np.ndarray, tc: np.ndarray) -> str:
            res = per_dim_ir(tq, tc, data.qrels, ir_dims)
            return "nDCG@10 " + " ".join(f"{d}:{100 * res[d]['ndcg@10']:.1f}" for d in ir_dims)

        print(f"WordNet test: {len(data.queries)} queries, {len(data.corpus)} documents; base truncated: {ir(q, c)}", flush=True)
    for item in args.runs.split(","):
        mode, _, mult = item.partition("@")
        ms, per_dim, err, model = run(mode, float(mult or 1))
        line = f"{item:>12}: {ms:6.1f} ms/step  loss " + " ".join(f"{v:.4f}" for v in per_dim) + f"  mean {np.mean(per_dim):.4f}  max|WW^T-I| {err:.1e}"
        if ir is not None:
            model.eval()
            with torch.no_grad():
                line += "  " + ir(model(torch.as_tensor(q)).numpy(), model(torch.as_tensor(c)).numpy())
        print(line, flush=True)


if __name__ == "__main__":
    main()
