"""Objects that can be written down as ``{class_path, init_args}`` and rebuilt from it.

A :class:`Configurable` class records the arguments its constructor was called with (the
outermost constructor's, defaults filled in), so :func:`describe` can write any instance in
the same ``{class_path, init_args}`` form LightningCLI reads from YAML, and :func:`build`
can make an equal one again. Saved folders (a retriever's ``retriever.json``) use it
instead of hand-kept copies of each class's arguments.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
from typing import Any, TypeVar

T = TypeVar("T")
_INIT_ARGS = "_configurable_init_args"


class ConfigError(ValueError):
    """A ``{class_path, init_args}`` description that cannot be built; names what is wrong."""


class Configurable:
    """Mixin: instances remember their constructor arguments (see :attr:`init_args`)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__init__)

    @property
    def init_args(self) -> dict[str, Any]:
        """The arguments the outermost constructor was called with (a copy)."""
        return copy.deepcopy(self.__dict__.get(_INIT_ARGS, {}))


def _recording(init):
    """Wrap ``__init__`` so the first (outermost) call stores its bound arguments."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if _INIT_ARGS not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    if value:
                        raise TypeError(
                            f"{type(self).__name__}: positional *{name} cannot be saved"
                        )
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    recorded.update(value)
                else:
                    recorded[name] = value
            # Set before the wrapped __init__ runs (nn.Module's __setattr__ is not ready yet).
            self.__dict__[_INIT_ARGS] = recorded
        init(self, *args, **kwargs)

    return wrapper


def class_path(obj_or_class: Any) -> str:
    """Importable dotted path of a class or of an instance's class."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(obj: Configurable, **overrides: Any) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": {...}}`` of ``obj`` (JSON values only).

    ``overrides`` replace recorded arguments (e.g. ``pretrained=False`` when the weights are
    saved separately).
    """
    if not isinstance(obj, Configurable):
        raise ConfigError(f"{type(obj).__name__} is not Configurable: it cannot be described")
    init_args = {**obj.init_args, **overrides}
    try:
        init_args = json.loads(json.dumps(init_args))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{class_path(obj)} has constructor arguments that are not JSON values: {error}"
        ) from error
    return {"class_path": class_path(obj), "init_args": init_args}


def build(spec: Any, base: type[T], where: str = "description") -> T:
    """Instantiate a ``{class_path, init_args}`` description whose class derives from ``base``.

    ``where`` names the description in errors (e.g. ``"retriever.json field 'segmenter'"``).
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
        raise ConfigError(f"{where}: expected {{class_path, init_args}}, got {spec!r}")
    path = spec["class_path"]
    init_args = spec.get("init_args", {})
    if not isinstance(init_args, dict):
        raise ConfigError(f"{where}: init_args must be a mapping, got {init_args!r}")
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{where}: cannot import class_path {path!r} ({error})") from error
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{where}: {path} is not a {base.__name__}")
    try:
        return cls(**init_args)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {path} rejects its init_args ({error})") from error
