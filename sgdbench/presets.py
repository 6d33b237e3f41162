"""A grid's optimizers against torch.optim: names and presets resolved, keywords checked.

Torch-free where torch's source reads plainly (``optimizer_catalog``, ``optimizer_checks``);
``plan`` calls it, the schema does not.
"""

from __future__ import annotations

from typing import Any

from sgdbench import optimizers as opt
from sgdbench.errors import did_you_mean
from sgdbench.grid_values import float32
from sgdbench.schema import FIXED_AXES, Preset, SchemaError

Presets = dict[str, tuple[str, dict[str, Any]]]  # name -> (torch.optim class, keywords)


def check_presets(table: dict[str, Preset]) -> Presets:
    """The built-in presets and the grid's ``[optimizers.NAME]`` tables, checked."""
    presets = {
        name: (p["type"], {k: v for k, v in p.items() if k != "type"})
        for name, p in opt.BUILTIN_PRESETS.items()
    }
    for name, body in table.items():
        key = f"optimizers.{name}"
        if body.type.lower() not in opt.class_names():
            raise SchemaError(f"{key}.type", f"unknown torch.optim class {body.type!r}")
        cls = opt.class_name(body.type)
        kwargs = {}
        accepted = opt.keyword_defaults(cls)
        for k, v in (body.model_extra or {}).items():
            if k == "lr":
                raise SchemaError(f"{key}.lr", "set learning rates in [grid] (lr = [...])")
            if k not in accepted:
                raise SchemaError(
                    f"{key}.{k}",
                    f"not a keyword of torch.optim.{cls}{did_you_mean(k, accepted)} "
                    f"(accepted: {', '.join(accepted)})",
                )
            try:
                kwargs[k] = optimizer_value(cls, k, v)
            except ValueError as e:
                raise SchemaError(f"{key}.{k}", str(e)) from None
        presets[name] = (cls, kwargs)
    return presets


def resolve_optimizer(name: Any, presets: Presets) -> tuple[str, dict[str, Any]]:
    """The torch.optim class and preset keywords of optimizer ``name``; ValueError if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"must be an optimizer name, got {name!r}")
    if name in presets:
        return presets[name]
    if name.lower() in opt.class_names():
        return opt.class_name(name), {}
    known = sorted(set(presets) | set(opt.class_names().values()))
    hint = did_you_mean(name, [*presets, *opt.class_names()])
    raise ValueError(
        f"unknown optimizer {name!r}{hint} (torch.optim classes or presets: {', '.join(known)})"
    )


def optimizer_value(cls: str, key: str, value: Any) -> Any:
    """``normalize_kwarg``, and numbers (alone or in a tuple such as betas) must fit float32."""
    value = opt.normalize_kwarg(cls, key, value)
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, int | float) and not isinstance(v, bool):
            float32(v)
    return value


def blame_optimizer_value(cls: str, lr: float, kwargs: dict[str, Any]) -> str | None:
    """The keyword whose value alone makes torch refuse to build ``cls``, so the error names
    it (``grid.momentum``) rather than the optimizer; None when only a combination fails."""
    if opt.class_name(cls) in opt.UNSUPPORTED:
        return None  # the class itself is refused, whatever its keywords
    for key, value in kwargs.items():
        try:
            opt.check_constructible(cls, lr, {key: value})
        except ValueError:
            return key
    return None


def grid_keys() -> list[str]:
    """Every key [grid] accepts: the fixed axes and any keyword of a torch.optim class."""
    keywords = {k for name in opt.class_names() for k in opt.keyword_defaults(name)}
    return [*FIXED_AXES, *sorted(keywords)]
