"""Training: config, the loop, and resumable checkpoints."""

from mrl.train.config import TrainConfig, load_config
from mrl.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]
