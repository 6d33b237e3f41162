"""A built-in problem's ``[problem]`` keys: ``Param`` (type, default, bounds, help) and the
checks that turn a grid's value into the builder's argument. Torch-free."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgdbench.errors import KeyedError
from sgdbench.limits import FLOAT32_MAX, MAX_SEED

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Param:
    """One ``[problem]`` key: its type, default, allowed values and help text."""

    name: str
    kind: str  # int | float | bool | str | path | int_list | float_list
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    size: bool = False  # memory grows with it: an allocation failure while building names it

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


def p(name: str, kind: str, default: Any = _NO_DEFAULT, help: str = "", **kw: Any) -> Param:
    return Param(name, kind, default, help, **kw)


DATA_SEED = p(
    "seed",
    "int",
    0,
    "seed of the data (and split), independent of the run seed",
    minimum=0,
    maximum=MAX_SEED,
)
VAL = p(
    "val_fraction",
    "float",
    0.2,
    "fraction of samples held out for validation",
    minimum=0.0,
    maximum=0.9,
)
MODEL = p("model", "str", "linear", "model: a linear layer or an MLP", choices=("linear", "mlp"))
HIDDEN = p(
    "hidden",
    "int_list",
    [64],
    "hidden layer widths of the MLP",
    minimum=1,
    maximum=100_000,
    size=True,
)
# Upper bounds of the sizes of synthetic problems (README, "Grid file"): far above any benchmark
# that trains in reasonable time, low enough that a typo (an extra three zeros) is caught at load.
MAX_SAMPLES = 100_000_000
MAX_FEATURES = 1_000_000
MAX_DIM = 100_000_000
MAX_DENSE_DIM = 10_000  # noisy_quadratic builds a dense dim x dim matrix
DROP_LAST = p(
    "drop_last", "bool", True, "skip each epoch's last, short batch (as DeepOBS's data loaders)"
)


def _check_number(param: Param, key: str, value: Any) -> None:
    if param.minimum is not None and value < param.minimum:
        raise KeyedError(key, f"must be >= {param.minimum:g}, got {value!r}")
    if param.maximum is not None and value > param.maximum:
        raise KeyedError(key, f"must be <= {param.maximum:g}, got {value!r}")


def _check_float32(key: str, value: float) -> None:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise KeyedError(key, f"must be a finite number within float32 range, got {value!r}")


def coerce(param: Param, value: Any, base_dir: Path) -> Any:
    """Check one value against its ``Param``; return it normalized (paths made absolute)."""
    if value is None and not param.required and param.default is None:
        return None
    return _COERCE[param.kind](param, value, base_dir)


def _bool(param: Param, value: Any, base_dir: Path) -> bool:
    if not isinstance(value, bool):
        raise KeyedError(param.name, f"must be true or false, got {value!r}")
    return value


def _int(param: Param, value: Any, base_dir: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyedError(param.name, f"must be an integer, got {value!r}")
    _check_number(param, param.name, value)
    return value


def _float(param: Param, value: Any, base_dir: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyedError(param.name, f"must be a number, got {value!r}")
    _check_float32(param.name, value)
    _check_number(param, param.name, value)
    return float(value)


def _str(param: Param, value: Any, base_dir: Path) -> str:
    key = param.name
    if not isinstance(value, str) or not value:
        raise KeyedError(key, f"must be a non-empty string, got {value!r}")
    if param.choices and value not in param.choices:
        raise KeyedError(key, f"must be one of {', '.join(param.choices)}; got {value!r}")
    return value


def _path(param: Param, value: Any, base_dir: Path) -> str:
    key = param.name
    path = (base_dir / _str(param, value, base_dir)).resolve()
    if not path.is_file():
        raise KeyedError(key, f"no such file: {value}")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise KeyedError(key, f"must be a .csv or .parquet file, got {value}")
    return str(path)


def _list(param: Param, value: Any, base_dir: Path) -> list[Any]:
    key = param.name
    if not isinstance(value, list) or not value:
        raise KeyedError(key, f"must be a non-empty list, got {value!r}")
    item = param.kind.removesuffix("_list")
    inner = Param(key, item, _NO_DEFAULT, "", minimum=param.minimum, maximum=param.maximum)
    out = []
    for i, v in enumerate(value):
        try:
            out.append(coerce(inner, v, base_dir))
        except KeyedError as e:
            raise KeyedError(f"{key}[{i}]", e.message) from None
    return out


_COERCE = {
    "bool": _bool,
    "int": _int,
    "float": _float,
    "str": _str,
    "path": _path,
    "int_list": _list,
    "float_list": _list,
    "str_list": _list,
}
