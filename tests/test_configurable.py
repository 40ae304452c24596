"""Configurable objects describe themselves as {class_path, init_args} and rebuild from it."""

import pytest
from torch import nn

from marc.configurable import ConfigError, Configurable, build, describe


class Base(Configurable):
    def __init__(self, size: int = 3, name: str = "base"):
        self.size, self.name = size, name


class Child(Base):
    def __init__(self, scale: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale


class Layer(Configurable, nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.linear = nn.Linear(width, width)


def test_the_outermost_constructor_is_recorded_with_its_defaults():
    assert Base().init_args == {"size": 3, "name": "base"}
    assert Child(1.5, size=7).init_args == {"scale": 1.5, "size": 7}
    assert describe(Child(size=7)) == {
        "class_path": f"{__name__}.Child",
        "init_args": {"scale": 2.0, "size": 7},
    }


def test_a_description_rebuilds_an_equal_object():
    rebuilt = build(describe(Child(0.5, name="x")), Base)
    assert isinstance(rebuilt, Child) and (rebuilt.scale, rebuilt.name) == (0.5, "x")
    layer = build(describe(Layer(8)), nn.Module)
    assert layer.linear.in_features == 8


def test_overrides_and_non_json_arguments():
    assert describe(Base(), size=1)["init_args"]["size"] == 1
    with pytest.raises(ConfigError, match="not JSON"):
        describe(Base(size=object()))
    with pytest.raises(ConfigError, match="not Configurable"):
        describe(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"init_args": {}}, "expected"),
        ({"class_path": "nowhere.Thing"}, "cannot import"),
        ({"class_path": "collections.OrderedDict"}, "not a Base"),
        ({"class_path": f"{__name__}.Base", "init_args": {"colour": 1}}, "rejects"),
        ({"class_path": f"{__name__}.Base", "init_args": [1]}, "must be a mapping"),
    ],
)
def test_bad_descriptions_name_the_place(spec, message):
    with pytest.raises(ConfigError, match=f"model.json: .*{message}"):
        build(spec, Base, where="model.json")
