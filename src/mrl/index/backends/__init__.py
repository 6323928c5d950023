"""Index backends beyond the local folder: Milvus (:mod:`mrl.index.backends.milvus`, copy with :func:`push`)."""
