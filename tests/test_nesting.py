import pytest

from mrl.errors import MRLError
from mrl.nesting import log2_dims, parse_dims, validate_dims


def test_log2_dims_doubles_and_ends_at_embed_dim():
    assert log2_dims(8, 64) == (8, 16, 32, 64)
    assert log2_dims(8, 384) == (8, 16, 32, 64, 128, 256, 384)
    assert log2_dims(2, 2) == (2,)


def test_parse_dims_forms():
    assert parse_dims("8,16,32") == (8, 16, 32)
    assert parse_dims("2,4,...,512") == (2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert parse_dims("8, 16, ..., 384", embed_dim=384)[-2:] == (256, 384)
    assert parse_dims([4, 8], embed_dim=8) == (4, 8)


@pytest.mark.parametrize(
    ("dims", "embed_dim", "match"),
    [
        ([8, 4], None, "strictly increasing"),
        ([8, 8, 16], None, "duplicated"),
        ([8, 1024], 512, "larger than the embedding dim"),
        ([8, 256], 512, "end the list with 512"),
        ([0, 8], None, "positive"),
        ([], None, "empty"),
        ([2.5, 8], None, "integers"),
    ],
)
def test_validate_dims_rejects_bad_lists(dims, embed_dim, match):
    with pytest.raises(MRLError, match=match):
        validate_dims(dims, embed_dim)


@pytest.mark.parametrize("spec", ["a,b", "8,...,64", "", "8,16,...,32,64"])
def test_parse_dims_rejects_bad_strings(spec):
    with pytest.raises(MRLError):
        parse_dims(spec)
