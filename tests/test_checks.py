"""restore.checks: the value checks, and the three readers of settings (architecture
configs, the registry, training configs) refusing the same mistake in the same words."""

import copy

import pytest

from restore import checks
from restore.archs import build
from restore.errors import ConfigError
from restore.norms import NormKind
from restore.registry import parse_registry, read_registry
from restore.train.config import parse_config


@pytest.mark.parametrize("check, value, words", [
    (checks.integer, "2", "must be an integer"),
    (checks.integer, True, "must be an integer"),
    (checks.integer, 2.0, "must be an integer"),
    (lambda v: checks.integer(v, minimum=1), 0, "must be >= 1"),
    (checks.number, "0.1", "must be a number"),
    (checks.number, float("nan"), "must be finite"),
    (lambda v: checks.number(v, positive=True), 0, "must be finite and > 0"),
    (lambda v: checks.number(v, minimum=0.0), -1, "must be finite and >= 0.0"),
    (checks.flag, 1, "must be true or false"),
    (checks.string, 3, "must be a string"),
    (lambda v: checks.one_of(v, NormKind), "ln", "is not one of 'layernorm', 'iln'"),
    (lambda v: checks.one_of(v, ("a", "b")), "c", "is not one of 'a', 'b'"),
])
def test_each_check_says_what_is_wrong(check, value, words):
    with pytest.raises(checks.Invalid, match=f"^{words}$"):
        check(value)


def test_each_check_returns_the_value_in_its_type():
    assert checks.integer(4.0, whole_floats=True) == 4
    assert checks.number(2) == 2.0 and isinstance(checks.number(2), float)
    assert checks.flag(False) is False
    assert checks.one_of("iln", NormKind) is NormKind.ILN


def test_the_three_readers_refuse_the_same_mistake_in_the_same_words():
    with pytest.raises(ConfigError) as arch:
        build("swinir", upscale=2, embed_dim="16", depths=[2], num_heads=[2])
    entry = copy.deepcopy(read_registry()["models"]["swinir-m.sr-x4"])
    entry["size"] = "16"
    with pytest.raises(ConfigError) as reg:
        parse_registry({"schema": 1, "models": {"m.sr-x4": entry}}, "test.toml")
    with pytest.raises(ConfigError) as train:
        parse_config({"data": {"task": "sr", "train": ["x"], "patch_size": "16"}})
    assert "embed_dim='16' must be an integer" in str(arch.value)
    assert "size: '16' must be an integer" in str(reg.value)
    assert "data.patch_size='16' must be an integer" in str(train.value)
