"""``mrl serve``: an OpenAI-shaped embeddings API with ``dimensions``, funnel search over HTTP, and a page.

Modules: :mod:`~mrl.serve.config` (what it serves, limits, batching), :mod:`~mrl.serve.encoder`
(the text model), :mod:`~mrl.serve.backend` (the search protocol and the local index),
:mod:`~mrl.serve.batching` (dynamic batching), :mod:`~mrl.serve.state` (hot-swappable index, batch
functions), :mod:`~mrl.serve.schemas`, :mod:`~mrl.serve.errors`, :mod:`~mrl.serve.middleware` (auth,
limits, metrics), :mod:`~mrl.serve.metrics`, :mod:`~mrl.serve.page`, :mod:`~mrl.serve.app` (the
factory) and :mod:`~mrl.serve.server` (uvicorn).
"""

from mrl.serve.app import create_app
from mrl.serve.config import Batching, Limits, ServeConfig

__all__ = ["Batching", "Limits", "ServeConfig", "create_app"]
