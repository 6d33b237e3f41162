"""Optimizer names, presets, keyword validation and the choice of implementation.

The eager engine uses ``torch.optim`` classes directly; this module only resolves what the grid
names into a class and keyword arguments, and picks fused / foreach / for-loop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from sgdbench import optimizer_catalog, optimizer_checks
from sgdbench.optimizer_catalog import BUILTIN_PRESETS as BUILTIN_PRESETS  # re-exported
from sgdbench.optimizer_catalog import RESERVED as RESERVED
from sgdbench.optimizer_catalog import UNSUPPORTED as UNSUPPORTED

if TYPE_CHECKING:
    import torch

IMPLS = ("auto", "fused", "foreach", "forloop")
CLOSURE_OPTIMIZERS = ("LBFGS",)  # step(closure) re-evaluates the loss


@functools.cache
def optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    """``torch.optim`` optimizer classes by lower-case name (imports torch)."""
    import torch

    from sgdbench.lazy_dynamo import defer_dynamo_import

    # Nothing in sgdbench compiles: building an optimizer must not import torch._dynamo (1.5 s).
    defer_dynamo_import()
    out = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
        ):
            out[name.lower()] = obj
    return out


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` class called ``name`` (case-insensitive); KeyError if none."""
    return optimizer_classes()[name.lower()]


@functools.cache
def _catalog() -> dict[str, dict[str, Any]]:
    """``{class name: {keyword: default}}`` in ``dir(torch.optim)`` order: read from torch's
    source without importing it (``optimizer_catalog``), else asked of torch."""
    static = optimizer_catalog.keyword_defaults(RESERVED)
    if static is not None:
        return {name: static[name] for name in sorted(static)}
    return {cls.__name__: _signature_defaults(cls) for cls in optimizer_classes().values()}


def _signature_defaults(cls: type) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in sig.parameters.items()
        if name != "self"
        and name not in RESERVED
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


@functools.cache
def class_names() -> dict[str, str]:
    """``torch.optim``'s optimizer class names by lower-case name, without importing torch."""
    return {name.lower(): name for name in _catalog()}


def class_name(name: str) -> str:
    """The ``torch.optim`` class name of ``name`` (case-insensitive); KeyError if none."""
    return class_names()[name.lower()]


def keyword_defaults(class_name_: str) -> dict[str, Any]:
    """Keyword arguments a class accepts (besides the reserved ones), with their defaults."""
    return _catalog()[class_name(class_name_)]


@functools.cache
def tuple_keywords() -> frozenset[str]:
    """Keywords whose default is a tuple wherever they appear (``betas``, ``etas``, ...).

    ``eps`` is a tuple in Adafactor but a number elsewhere, so it is not one of them.
    """
    kinds: dict[str, set[bool]] = {}
    for defaults in _catalog().values():
        for key, default in defaults.items():
            kinds.setdefault(key, set()).add(isinstance(default, tuple))
    return frozenset(key for key, k in kinds.items() if k == {True})


def normalize_kwarg(name: str, key: str, value: Any) -> Any:
    """Check ``value`` against the type of the keyword's default; return it normalized.

    Numbers become floats where the default is a float (so ``momentum = 0`` and ``0.0`` name the
    same run) and TOML arrays become tuples where the default is a tuple (``betas``).
    Raises ValueError with a message for the user.
    """
    defaults = keyword_defaults(name)
    if key not in defaults:
        allowed = ", ".join(defaults) or "none"
        raise ValueError(f"not a keyword of torch.optim.{class_name(name)} (accepted: {allowed})")
    default = defaults[key]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int | float) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        return float(value) if isinstance(default, float) else value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or len(value) != len(default):
            raise ValueError(f"must be a list of {len(default)} numbers, got {value!r}")
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise ValueError(f"must be a list of {len(default)} numbers, got {value!r}")
        return tuple(float(v) for v in value)
    return value


def json_safe(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, for JSON and hashing."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(kwargs.items())}


def _construct(
    cls: type[torch.optim.Optimizer], *args: Any, **kwargs: Any
) -> torch.optim.Optimizer:
    """``cls(*args, **kwargs)``: the stubs give ``Optimizer.__init__`` only ``(params, defaults)``,
    while every subclass takes ``lr`` and its own keywords."""
    make = cast(Callable[..., "torch.optim.Optimizer"], cls)
    return make(*args, **kwargs)


def check_constructible(name: str, lr: float, kwargs: dict[str, Any]) -> None:
    """Let torch validate the values (ranges, combinations) on a throw-away parameter: its
    checks read from its source where they read plainly (``optimizer_checks``), else torch."""
    cls = class_name(name)
    if cls in UNSUPPORTED:
        raise ValueError(UNSUPPORTED[cls])
    verdict = optimizer_checks.verdict(cls, lr, to_torch(kwargs))
    if verdict is None:
        return
    if verdict != optimizer_checks.UNKNOWN:
        raise ValueError(verdict)
    import torch

    dummy = torch.nn.Parameter(torch.zeros(2, 2))
    try:
        _construct(optimizer_class(name), [dummy], lr=lr, **to_torch(kwargs))
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def to_torch(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe kwargs back to what torch expects (lists to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def needs_closure(name: str) -> bool:
    return class_name(name) in CLOSURE_OPTIMIZERS


def _fused_supported(device: torch.device) -> bool:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return device.type in _get_fused_kernels_supported_devices()


def auto_order(name: str, kwargs: dict[str, Any], device: torch.device) -> list[str]:
    """The implementations ``optimizer_impl = "auto"`` tries, fastest first.

    On accelerators: fused, foreach, for-loop. On CPU foreach has no multi-tensor kernels (it
    dispatches per tensor, with more overhead than the for-loop), so it is skipped; and plain SGD
    (no momentum: one ``add_`` per parameter, nothing to fuse) takes the for-loop first.
    Measured per ``step()`` on one CPU thread (µs, fused / foreach / for-loop):
    SGD 18 / 19 / 15 (2 parameters), 160 / 156 / 142 (1M); SGD+momentum 21 / 34 / 27 (2),
    237 / 351 / 364 (1M); Adam 34 / 86 / 64 (2), 528 / 1469 / 3580 (1M); RMSprop (no fused)
    - / 60 / 46 (2), - / 1215 / 1144 (1M). Details: docs/performance.md.
    """
    if device.type != "cpu":
        return ["fused", "foreach", "forloop"]
    plain_sgd = class_name(name) == "SGD" and not kwargs.get("momentum")
    return ["forloop", "fused"] if plain_sgd else ["fused", "forloop"]


def build_optimizer(
    class_name: str,
    params: list[torch.nn.Parameter],
    lr: float,
    kwargs: dict[str, Any],
    impl: str,
    device: torch.device,
) -> tuple[torch.optim.Optimizer, str]:
    """Construct the optimizer with the requested implementation; return it and the impl used.

    ``auto`` tries the implementations in ``auto_order`` (fused where the class and device
    support it, the for-loop where that is faster). An explicit request that the class cannot
    honour is an error.
    """
    cls = optimizer_class(class_name)
    accepted = inspect.signature(cls.__init__).parameters
    base = to_torch(kwargs)
    candidates = {
        "fused": {"fused": True} if "fused" in accepted and _fused_supported(device) else None,
        "foreach": {"foreach": True} if "foreach" in accepted else None,
        "forloop": {"foreach": False} if "foreach" in accepted else {},
    }
    order = auto_order(class_name, kwargs, device) if impl == "auto" else [impl]
    last_error: Exception | None = None
    for name in order:
        extra = candidates[name]
        if extra is None:
            last_error = ValueError(f"{cls.__name__} has no {name} implementation on {device.type}")
            continue
        try:
            return _construct(cls, params, lr=lr, **base, **extra), name
        except (RuntimeError, ValueError, TypeError) as e:  # e.g. fused with an unsupported option
            last_error = e
    raise ValueError(f"optimizer_impl = {impl!r}: {last_error}")
