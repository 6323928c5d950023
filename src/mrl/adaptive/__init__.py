"""Adaptive inference with Matryoshka embeddings: classification cascades, retrieval funnels, auto-tuning."""
