"""Backend registry: the built-in adapters plus any installed through the ``flashcore.backends``
entry-point group (``name = "package.module:BackendClass"``), so users add backends without editing
flashcore."""
from __future__ import annotations

import importlib
import os
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

from harness.backends.base import Backend

ENTRY_POINT_GROUP = "flashcore.backends"
#: comma-separated "module:Class" backends to load without packaging them (also reaches workers)
EXTRA_ENV = "FLASHCORE_BACKENDS"
_BUILTIN_MODULES = (
    "harness.backends.reference",
    "harness.backends.sdpa",
    "harness.backends.flex",
    "harness.backends.naive",
    "harness.backends.flash_attn",
    "harness.backends.flashinfer",
    "harness.backends.flashinfer_decode",
    "harness.backends.cudnn_frontend",
    "harness.backends.cudnn_frontend_fp8",
    "harness.backends.flashcore_ops",
)
_REGISTRY: dict[str, type[Backend]] = {}
_LOAD_ERRORS: dict[str, str] = {}
_loaded = False

B = TypeVar("B", bound=type[Backend])


class UnknownBackendError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it one readable line
        return str(self.args[0])


def register(cls: B) -> B:
    """Class decorator: make a backend available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError as exc:  # a built-in module whose own imports are missing
            _LOAD_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
    extra = [EntryPoint(name=v.rpartition(":")[2], value=v.strip(), group=ENTRY_POINT_GROUP)
             for v in os.environ.get(EXTRA_ENV, "").split(",") if v.strip()]
    for ep in [*entry_points(group=ENTRY_POINT_GROUP), *extra]:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the harness down
            _LOAD_ERRORS[ep.name] = f"entry point {ep.value!r} failed to load: {type(exc).__name__}: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            _LOAD_ERRORS[ep.name] = f"entry point {ep.value!r} is not a harness.backends.base.Backend subclass"
            continue
        if not cls.name:
            cls.name = ep.name
        register(cls)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def load_errors() -> dict[str, str]:
    _load()
    return dict(_LOAD_ERRORS)


def get(name: str) -> Backend:
    _load()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise UnknownBackendError(unknown_message(name)) from None


def unknown_message(name: str) -> str:
    """Why ``name`` is no backend: the allowed names, and the plugins that failed to load (the one meant
    may be among them; its error is otherwise seen only in ``flashcore env``)."""
    _load()
    if name in _LOAD_ERRORS:
        return f"backend {name!r} failed to load: {_LOAD_ERRORS[name]}"
    msg = f"unknown backend {name!r}: allowed {', '.join(sorted(_REGISTRY))}"
    if _LOAD_ERRORS:
        shown = "; ".join(f"{k}: {v}" for k, v in list(_LOAD_ERRORS.items())[:3])
        more = f" (and {len(_LOAD_ERRORS) - 3} more)" if len(_LOAD_ERRORS) > 3 else ""
        msg += f"; failed to load, perhaps the one meant: {shown}{more}"
    return msg
