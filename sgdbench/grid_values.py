"""The values a grid file holds: checked scalar types (float32, counts, seeds, batch sizes,
devices), value ranges (``{logspace = [a, b], num = n}``, ``linspace``, ``range``), distributions
(``{loguniform = [a, b]}``, ...) and axes (one value, a list, a range or a distribution), each
value kept with its location. No torch."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from sgdbench.limits import FLOAT32_MAX, MAX_NAME_LENGTH, MAX_RUNS, MAX_SEED, MAX_STEPS
from sgdbench.schema_errors import describe, keyed

STRICT = ConfigDict(extra="forbid", strict=True)


def is_distribution(value: Any) -> bool:
    """A ``[grid]`` value that is one of the distribution tables."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


# ---------------------------------------------------------------------------------------------
# value types: a constraint pydantic knows becomes JSON Schema; the rest are small checks


def float32(v: float) -> float:
    """A finite number that fits a float32 (lr, losses and hyperparameters become float32)."""
    if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
        raise ValueError(f"must be a finite number within float32 range (3.4e38), got {v}")
    return float(v)


def _name(v: str) -> str:
    # fullmatch, not match: a name with a trailing newline is not a folder name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
        raise ValueError(f"must be letters, digits, '_', '-' or '.', got {v!r}")
    if len(v) > MAX_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters, got {len(v)}")
    return v


def check_divergence_factor(v: float) -> float:
    if not 1 < v <= FLOAT32_MAX:
        raise ValueError(f"must be a number > 1 within float32 range, got {v!r}")
    return float(v)


Float32 = Annotated[
    float,
    AfterValidator(float32),
    Field(json_schema_extra={"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}),
]
Positive = Annotated[float, Field(gt=0, le=FLOAT32_MAX)]
Count = Annotated[int, Field(ge=1, le=MAX_STEPS)]
NonNegativeCount = Annotated[int, Field(ge=0, le=MAX_STEPS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def _batch_size(v: Any) -> int | str:
    if v == "full":
        return "full"
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f'must be an integer >= 1 or "full", got {v!r}')
    if v < 1:
        raise ValueError(f"must be >= 1, got {v}")
    return v


BatchSize = Annotated[
    int | str,
    PlainValidator(
        _batch_size, json_schema_input_type=Annotated[int, Field(ge=1)] | Literal["full"]
    ),
]
_DEVICE = r"^(cpu|auto|cuda(:\d+)?)$"


def _device(v: str) -> str:
    if not re.match(_DEVICE, v):
        raise ValueError(f'must be "cpu", "cuda", "cuda:N" or "auto", got {v!r}')
    return v


Device = Annotated[str, AfterValidator(_device), Field(json_schema_extra={"pattern": _DEVICE})]
GridName = Annotated[
    str,
    AfterValidator(_name),
    Field(
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": MAX_NAME_LENGTH}
    ),
]


class ScheduleTable(BaseModel):
    """``{name = "step", step_size = 100, gamma = 0.5}``; parameters are checked by name."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(description="constant | step | cosine | warmup_cosine")


Schedule = str | ScheduleTable


class EarlyStopping(BaseModel):
    model_config = STRICT
    patience: Count = Field(description="evaluations without improvement before stopping")


# ---------------------------------------------------------------------------------------------
# value ranges: {logspace = [a, b], num = n}, {linspace = [a, b], num = n}, {range = [a, b]}


class LogSpace(BaseModel):
    """A range: ``{logspace = [a, b], num = n}``, n values evenly spaced in log scale from a to
    b, both included; ``digits = d`` rounds each to d significant digits."""

    model_config = STRICT
    logspace: Annotated[list[Positive], Field(min_length=2, max_length=2)]
    num: Annotated[int, Field(ge=2, le=MAX_RUNS)]
    digits: Annotated[int, Field(ge=1, le=17)] | None = Field(
        None, description="round each value to this many significant digits"
    )

    def values(self) -> list[float]:
        a, b = self.logspace
        step = (math.log10(b) - math.log10(a)) / (self.num - 1)
        inner = [10 ** (math.log10(a) + i * step) for i in range(1, self.num - 1)]
        return _rounded([a, *inner, b], self.digits)


class LinSpace(BaseModel):
    """A range: ``{linspace = [a, b], num = n}``, n values evenly spaced from a to b, both
    included; ``digits = d`` rounds each to d significant digits."""

    model_config = STRICT
    linspace: Annotated[list[Float32], Field(min_length=2, max_length=2)]
    num: Annotated[int, Field(ge=2, le=MAX_RUNS)]
    digits: Annotated[int, Field(ge=1, le=17)] | None = None

    def values(self) -> list[float]:
        a, b = self.linspace
        inner = [a + (b - a) * i / (self.num - 1) for i in range(1, self.num - 1)]
        return _rounded([a, *inner, b], self.digits)


class IntRange(BaseModel):
    """A range: ``{range = [a, b], step = s}``, the integers a, a + s, ... up to b included
    (step 1 by default)."""

    model_config = STRICT
    range: Annotated[list[int], Field(min_length=2, max_length=2)]
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _not_empty(self) -> IntRange:
        a, b = self.range
        if b < a:
            raise ValueError(f"is empty: the end {b} is below the start {a}")
        if (b - a) // self.step + 1 > MAX_RUNS:
            raise ValueError(f"has more than {MAX_RUNS:_} values")
        return self

    def values(self) -> list[int]:
        a, b = self.range
        return list(range(a, b + 1, self.step))


RANGES: dict[str, type[LogSpace | LinSpace | IntRange]] = {
    "logspace": LogSpace,
    "linspace": LinSpace,
    "range": IntRange,
}
Range = LogSpace | LinSpace | IntRange


def _rounded(values: list[float], digits: int | None) -> list[float]:
    return values if digits is None else [float(f"{v:.{digits}g}") for v in values]


# ---------------------------------------------------------------------------------------------
# distributions: a [grid] value drawn by [search] (sgdbench.search checks them and draws the
# trials; the plan validates the drawn values as it validates a list). Declared for the schema.


class _Bounds(BaseModel):
    model_config = STRICT

    @model_validator(mode="after")
    def _ordered(self) -> Any:
        ((kind, (low, high)),) = self.model_dump().items()
        if not low < high:
            raise ValueError(f"{kind} needs low < high, got {[low, high]!r}")
        return self


class LogUniform(_Bounds):
    """A distribution: ``{loguniform = [a, b]}``, uniform in log scale between a > 0 and b."""

    loguniform: Annotated[list[Positive], Field(min_length=2, max_length=2)]


class Uniform(_Bounds):
    """A distribution: ``{uniform = [a, b]}``, uniform between a and b."""

    uniform: Annotated[list[Float32], Field(min_length=2, max_length=2)]


class RandInt(_Bounds):
    """A distribution: ``{randint = [a, b]}``, each integer a to b (both included) equally
    likely."""

    randint: Annotated[list[int], Field(min_length=2, max_length=2)]


class LogRandInt(_Bounds):
    """A distribution: ``{lograndint = [a, b]}``, integers a >= 1 to b (both included),
    log-uniform: 8 to 15 as likely as 64 to 127."""

    lograndint: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]


class Choice(BaseModel):
    """A distribution: ``{choice = [v1, v2, ...]}``, one of the values, each equally likely."""

    model_config = STRICT
    choice: Annotated[list[Any], Field(min_length=1)]


DISTRIBUTION_TABLES: dict[str, type[BaseModel]] = {
    "loguniform": LogUniform,
    "uniform": Uniform,
    "choice": Choice,
    "randint": RandInt,
    "lograndint": LogRandInt,
}
DISTRIBUTIONS = tuple(DISTRIBUTION_TABLES)
DistributionTable = LogUniform | Uniform | Choice | RandInt | LogRandInt


# ---------------------------------------------------------------------------------------------
# axes: a value, a list of values (an axis), or a range


Located = list[tuple[Any, str]]  # (value, where in the key it sits: "" or "[i]")


def axis_values(raw: Any, check: Callable[[Any], Any], one_value: bool = False) -> Located:
    """The values of one axis with their locations; ``check`` validates one value.

    ``one_value``: a flat list is one value (a tuple keyword such as betas), not an axis.
    """

    def checked(value: Any, where: str) -> Any:
        try:
            return check(value)
        except ValidationError as e:
            loc, message = describe(e.errors()[0], None)
            raise keyed(where + loc, message) from None
        except ValueError as e:
            raise keyed(where, str(e)) from None

    if is_distribution(raw):
        return [(raw, "")]  # drawn later ([search]); the drawn values are checked then
    if isinstance(raw, dict) and any(kind in raw for kind in RANGES):
        kind = next(kind for kind in RANGES if kind in raw)
        try:
            values = RANGES[kind].model_validate(raw).values()
        except ValidationError as e:
            loc, message = describe(e.errors()[0], RANGES[kind])
            raise keyed(f".{loc}" if loc else "", message) from None
        return [(checked(v, ""), "") for v in values]
    if isinstance(raw, list) and not (one_value and not any(isinstance(v, list) for v in raw)):
        if not raw:
            raise ValueError("empty axis: give at least one value")
        return [(checked(v, f"[{i}]"), f"[{i}]") for i, v in enumerate(raw)]
    return [(checked(raw, ""), "")]


def _any_value(value: Any) -> Any:
    """An optimizer keyword's value: numbers must fit float32 (torch checks the rest)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        float32(value)
    if isinstance(value, dict):
        raise ValueError(
            "must be a number, string, boolean, list or range ({logspace = [a, b], num = n}, "
            f"{{linspace = [a, b], num = n}}, {{range = [a, b], step = s}}), got a table {value!r}"
        )
    return value


def value_checker(tp: Any) -> Callable[[Any], Any]:
    """Validates one value of type ``tp`` strictly (the checker of one axis value)."""
    adapter: TypeAdapter[Any] = TypeAdapter(tp, config=ConfigDict(strict=True))

    def check(value: Any) -> Any:
        checked = adapter.validate_python(value)
        # A table (a schedule) travels as plain data: it is hashed into run ids and stored.
        return checked.model_dump() if isinstance(checked, BaseModel) else checked

    return check


def Axis(tp: Any, description: str) -> Any:
    """A grid key that takes one value of ``tp``, a list of them (an axis), a range or a
    distribution."""
    check = value_checker(tp)
    return Annotated[
        Located,
        PlainValidator(
            lambda raw: None if raw is None else axis_values(raw, check),
            json_schema_input_type=tp | list[tp] | Range | DistributionTable,
        ),
        Field(description=description),
    ]


AXIS_TYPES: dict[str, Any] = {
    "optimizer": str,
    "lr": Positive,
    "batch_size": BatchSize,
    "device": Device,
    "seed": Seed,
    "schedule": Schedule,
}


def check_axis_value(key: str) -> Callable[[Any], Any]:
    """The checker of one value of ``[grid] key`` (and of ``[[exclude]]``, ``[[include]]``)."""
    return value_checker(AXIS_TYPES[key]) if key in AXIS_TYPES else _any_value
