"""``mrl serve``: embeddings (OpenAI shape, with ``dimensions``), funnel search and the page over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from mrl.cli.console import console, flag, friendly
from mrl.errors import MRLError

if TYPE_CHECKING:
    from mrl.serve import ServeConfig
    from mrl.serve.encoder import ServedModel

app = typer.Typer()


@app.command()
@friendly
def serve(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Sentence-transformers folder or 'all-MiniLM-L6-v2' (enables /v1/embeddings and text queries)."),
    adaptor: Optional[Path] = typer.Option(None, "--adaptor", help="`mrl adapt` folder applied to the model's embeddings (makes `dimensions` usable on any model)."),
    index: Optional[Path] = typer.Option(None, "--index", help="Index folder to search (enables /v1/search); with --texts it is built there first if missing."),
    texts: Optional[str] = typer.Option(None, "--texts", help="Passages to index when --index does not exist yet: a .txt (one per line), a .jsonl ({id, text}) or 'wordnet'."),
    milvus: Optional[str] = typer.Option(None, "--milvus", help="Search a Milvus collection instead of --index: a Milvus Lite file or a server URI (token from MRL_MILVUS_TOKEN)."),
    collection: Optional[str] = typer.Option(None, "--collection", help="The collection with --milvus (written by `mrl index push`)."),
    max_texts: Optional[int] = typer.Option(None, "--max-texts", help="Index at most this many passages from --texts."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MRL_API_KEY", show_default=False, help="Require 'Authorization: Bearer KEY' on every endpoint but /health (also from MRL_API_KEY)."),
    allow_untrained_dimensions: bool = flag(False, "--allow-untrained-dimensions", help="Accept any `dimensions` in 1..D: also for a model that is not Matryoshka-trained (and has no adaptor), and sizes outside its matryoshka_dimensions."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="The id clients pass as `model` (default: the --model value)."),
    report: Optional[Path] = typer.Option(None, "--report", help="`mrl eval-text` JSON whose per-dim curve the page shows (default: eval.json in the model folder)."),
    max_batch: int = typer.Option(64, "--max-batch", help="Texts per encoding batch (1 = no dynamic batching)."),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", help="How long a text request waits for others to share its batch."),
    search_max_batch: int = typer.Option(64, "--search-max-batch", help="Queries per search batch (1 = no dynamic batching)."),
    search_wait_ms: float = typer.Option(0.0, "--search-batch-wait-ms", help="How long a search waits for others (0: batch only what is already queued)."),
    max_inputs: int = typer.Option(256, "--max-inputs", help="Texts or vectors per request."),
    max_chars: int = typer.Option(8192, "--max-chars", help="Characters per input text."),
    max_k: int = typer.Option(1000, "--max-k", help="Largest k."),
    max_body_bytes: int = typer.Option(4 << 20, "--max-body-bytes", help="Largest request body (413 above)."),
    drain_seconds: float = typer.Option(30.0, "--drain-seconds", help="On SIGTERM/SIGINT, how long requests in flight may finish; those still running then get a JSON 503 and the process exits."),
    threads: int = typer.Option(2, "--threads", help="Torch and FAISS threads."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve /v1/embeddings (OpenAI-compatible, `dimensions` = truncate then L2-normalise), /v1/search
    (funnel search, `recall_target`), /metrics, /health, /admin/reload (or SIGHUP) and a page at /."""
    import faiss
    import torch

    from mrl.serve import Batching, Limits, ServeConfig, create_app
    from mrl.serve.server import check_bind, run

    check_bind(host, port)
    if threads < 1:
        raise MRLError(f"--threads must be at least 1, got {threads}.")
    if not 0 <= drain_seconds <= 3600:
        raise MRLError(f"--drain-seconds must be in [0, 3600], got {drain_seconds}.")
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    config = ServeConfig(model=model, adaptor=adaptor, index=index, milvus=milvus, collection=collection, api_key=api_key, allow_untrained_dimensions=allow_untrained_dimensions,
                         model_name=model_name, report=report,
                         limits=Limits(max_inputs=max_inputs, max_chars=max_chars, max_k=max_k, max_body_bytes=max_body_bytes),
                         batching=Batching(max_batch=max_batch, max_wait_ms=batch_wait_ms, search_max_batch=search_max_batch, search_max_wait_ms=search_wait_ms))
    served = None
    if texts is not None:
        served = _prepare_text_index(config, texts, max_texts, threads)
    app_ = create_app(config, model=served)
    where = f"http://{host}:{port}"
    console.print(f"serving {model or 'no model'}{' + adaptor' if adaptor else ''}{f', index {index}' if index else ''}{f', Milvus {milvus} collection {collection}' if milvus else ''} at {where} (page: {where}/, API: {where}/docs)"
                  + ("; API key required" if api_key else ""), style="bold green")
    run(app_, host=host, port=port, log_level=log_level, graceful_s=drain_seconds)


def _prepare_text_index(config: ServeConfig, texts: str, max_texts: Optional[int], threads: int) -> ServedModel:
    """Build ``--index`` from ``--texts`` with the served model when it holds no index yet; returns the loaded model."""
    from mrl.index import store
    from mrl.index.text_index import build_text_index, remove_leftover_staging
    from mrl.index.texts import TextStore, read_texts, write_text_store
    from mrl.models.text import model_hash
    from mrl.serve.encoder import ServedModel

    index, model = config.index, config.model
    if index is None or model is None:
        raise MRLError("--texts needs --model (to encode them) and --index (the folder to build, or reuse on later starts).")
    if max_texts is not None and max_texts < 1:
        raise MRLError(f"--max-texts must be positive, got {max_texts}.")
    served = ServedModel.load(model, adaptor=config.adaptor, name=config.model_name, device=config.device)
    if (index / store.MANIFEST).is_file():
        if remove_leftover_staging(index):
            console.print(f"removed the finished first build's staging shards from {index}")
        if TextStore.open(index, verify=False) is None:
            ids, passages = read_texts(texts, limit=max_texts)
            write_text_store(index, ids, passages)
            console.print(f"attached {len(passages)} passages to the existing index {index}")
        else:
            console.print(f"{index} already holds an index and its texts: serving it as is (--texts is read only when the folder is new)")
        return served
    ids, passages = read_texts(texts, limit=max_texts)
    console.print(f"building {index} from {len(passages):,} passages of {texts} with {model} (once; later starts reuse it)")
    model_id = model_hash(served.path, served.st.max_seq_length) + (f"+adaptor:{model_hash(config.adaptor)}" if config.adaptor is not None else "")
    build_text_index(index, ids, passages, served.encode, model_id=model_id, threads=threads, log=console.print)
    return served
