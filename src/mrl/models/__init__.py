"""Encoders and the Matryoshka classifier that puts a head on them."""

from mrl.models.classifier import MatryoshkaClassifier, build_classifier
from mrl.models.vision import BACKBONES, create_backbone

__all__ = ["BACKBONES", "MatryoshkaClassifier", "build_classifier", "create_backbone"]
