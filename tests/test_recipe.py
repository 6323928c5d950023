"""The recipe road: one reader dispatching on ``task``, typed coercion, shared validation."""

import pytest

from mrl.errors import MRLError
from mrl.train.config import TrainConfig
from mrl.train.recipe import load_recipe
from mrl.train.text import TextTrainConfig


def test_dispatch_on_task(tmp_path):
    assert isinstance(load_recipe(None, ["epochs=1"]), TrainConfig)
    text = load_recipe("configs/wordnet_minilm.yaml", ["max_steps=3"])
    assert isinstance(text, TextTrainConfig) and text.max_steps == 3
    with pytest.raises(MRLError, match="unknown task 'audio'"):
        load_recipe(None, ["task=audio"])


def test_yaml_strings_are_coerced_to_field_types():
    # YAML reads 1e-3 (no dot) as the string "1e-3"; the recipe must still get a float.
    cfg = load_recipe(None, ["lr=1e-3", "epochs=2.0", "weight_decay=0"])
    assert cfg.lr == pytest.approx(1e-3) and isinstance(cfg.lr, float)
    assert cfg.epochs == 2 and isinstance(cfg.epochs, int)
    assert cfg.weight_decay == 0.0 and isinstance(cfg.weight_decay, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=fast", "lr must be a number"),
        ("epochs=2.5", "epochs must be an integer"),
        ("augment=maybe", "augment must be true or false"),
        ("threads=-1", "threads must be a positive integer"),
        ("weight_decay=-1", "weight_decay, momentum and warmup_steps must be >= 0"),
        ("lr=.nan", "lr must be a finite number"),
        ("matryoshka_weights=[1, x]", r"matryoshka_weights\[1\] must be a number"),
        ("weighting_kwargs=3", "weighting_kwargs must be a mapping"),
        ("n_dims_per_step=99", "n_dims_per_step must be in"),
        ("device=tpu", "device must be"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(MRLError, match=message):
        load_recipe(None, [override])


def test_shared_fields_validate_for_every_task():
    with pytest.raises(MRLError, match="threads must be a positive integer"):
        load_recipe(None, ["task=text", "threads=0"])
    with pytest.raises(MRLError, match="unknown weighting"):
        TextTrainConfig(weighting="nope")


def test_direct_construction_coerces_too():
    assert TrainConfig(lr="0.5", epochs=1).lr == 0.5
    with pytest.raises(MRLError, match="does not match this recipe"):
        TrainConfig(task="text")
