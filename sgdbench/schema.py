"""The grid file's schema, declared once as pydantic models.

From these models come the validation of a grid file, its one-line error messages
(``grid.lr[2]: must be > 0, got -0.1``), the key table of the README and ``sgdbench list keys``,
and the JSON Schema that ``sgdbench schema`` prints for editors. What needs torch (optimizer
names and keywords) or a built problem (batch size against the data) is checked by ``plan``.
No torch here.
"""

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
from pydantic_core import ErrorDetails, PydanticCustomError

from sgdbench.errors import did_you_mean
from sgdbench.limits import (
    FLOAT32_MAX,
    MAX_NAME_LENGTH,
    MAX_RUNS,
    MAX_SECONDS,
    MAX_SEED,
    MAX_STEPS,
    MAX_THREADS,
)

FIXED_AXES = ("optimizer", "lr", "batch_size", "device", "seed", "schedule")
IMPLS = ("auto", "fused", "foreach", "forloop")  # optimizers.IMPLS (a test keeps them equal)
_STRICT = ConfigDict(extra="forbid", strict=True)

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


def _divergence_factor(v: float) -> float:
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
    model_config = _STRICT
    patience: Count = Field(description="evaluations without improvement before stopping")


# ---------------------------------------------------------------------------------------------
# value ranges: {logspace = [a, b], num = n}, {linspace = [a, b], num = n}, {range = [a, b]}


class LogSpace(BaseModel):
    """A range: ``{logspace = [a, b], num = n}``, n values evenly spaced in log scale from a to
    b, both included; ``digits = d`` rounds each to d significant digits."""

    model_config = _STRICT
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

    model_config = _STRICT
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

    model_config = _STRICT
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
# axes: a value, a list of values (an axis), or a range


Located = list[tuple[Any, str]]  # (value, where in the key it sits: "" or "[i]")


def keyed(key: str, message: str) -> PydanticCustomError:
    """An error inside a value (``[2]``, ``.logspace[1]``) that keeps its own location."""
    return PydanticCustomError("keyed", "{key}: {message}", {"key": key, "message": message})


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
    """A grid key that takes one value of ``tp``, a list of them (an axis) or a range."""
    check = value_checker(tp)
    return Annotated[
        Located,
        PlainValidator(
            lambda raw: None if raw is None else axis_values(raw, check),
            json_schema_input_type=tp | list[tp] | Range,
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


# ---------------------------------------------------------------------------------------------
# the file


class Train(BaseModel):
    """``[train]``: the budget, evaluation and stopping rules shared by every run."""

    model_config = _STRICT
    epochs: Count | None = Field(None, description="passes over the training data (or steps)")
    steps: Count | None = Field(None, description="number of optimizer steps (or epochs)")
    shuffle: bool = Field(True, description="reshuffle every epoch (false: file order)")
    init: Literal["default", "zeros"] | list[Float32] = Field(
        "default",
        description='"default" (seeded torch init), "zeros", or flat initial parameters',
    )
    target_loss: Float32 | None = Field(None, description="full-data loss that counts as converged")
    eval_every: NonNegativeCount | None = Field(
        None, description="steps between full-data evaluations; 0: only at the end"
    )
    max_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS)] | None = Field(
        None, description="training-clock budget per run, in seconds"
    )
    schedule: Schedule = Field(
        "constant", description='lr schedule: a name or {name = "step", step_size = .., ...}'
    )
    divergence_factor: Annotated[float, AfterValidator(_divergence_factor)] = Field(
        1e4, description="diverged when a loss exceeds this factor times the first loss"
    )
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms on CUDA")
    optimizer_impl: Literal["auto", "fused", "foreach", "forloop"] = Field(
        "auto", description="torch.optim implementation"
    )
    stop_at_target: bool = Field(False, description="stop at the first evaluation at target_loss")
    threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] | Literal["auto"] = Field(
        1, description="intra-op CPU threads per run; \"auto\": torch's (or the executor's) choice"
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="{patience = N}: stop when validation loss stops improving"
    )
    engine: Literal["auto", "eager", "stacked"] = Field(
        "eager", description="training engine; sgdbench run --engine overrides it"
    )
    checkpoint_every: NonNegativeCount = Field(
        0, description="steps between checkpoints a killed run resumes from (0: none)"
    )
    keep_checkpoints: bool = Field(False, description="keep the last checkpoint of a finished run")
    save_model: bool = Field(False, description="save the final model to models/<run_id>.pt")

    @model_validator(mode="after")
    def _budget(self) -> Train:
        if (self.epochs is None) == (self.steps is None):
            which = "both" if self.epochs is not None else "neither"
            raise ValueError(f"give exactly one of epochs or steps, got {which}")
        if self.stop_at_target and self.target_loss is None:
            raise keyed("stop_at_target", "needs train.target_loss")
        return self


class ProblemTable(BaseModel):
    """``[problem]``: its name; the other keys depend on the problem (sgdbench list problems)."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: Annotated[str, Field(min_length=1)] = Field(
        description='a built-in problem, "file", or "pkg.module:function"'
    )


# Types built by a call: pydantic reads them, mypy cannot (hence the ignores below).
OptimizerAxis = Axis(str, "torch.optim class (any case) or preset name")
LrAxis = Axis(Positive, "the learning rate(s), e.g. lr = [0.01, 0.1]")
BatchSizeAxis = Axis(BatchSize, 'an integer or "full"')
DeviceAxis = Axis(Device, "cpu, cuda, cuda:N or auto (cuda if present)")
SeedAxis = Axis(Seed, "run seed(s)")
ScheduleAxis = Axis(Schedule, "lr schedule per run (default: [train] schedule)")


class GridAxes(BaseModel):
    """``[grid]``: every list is an axis, a scalar a fixed value; plus any optimizer keyword."""

    # lr is required, but checked after the keys: a misspelled "lrr" says so, not "lr: required".
    model_config = ConfigDict(
        extra="allow", strict=True, validate_default=True, json_schema_extra={"required": ["lr"]}
    )
    optimizer: OptimizerAxis = "sgd"  # type: ignore[valid-type]
    lr: LrAxis = None  # type: ignore[valid-type]
    batch_size: BatchSizeAxis = None  # type: ignore[valid-type]
    device: DeviceAxis = "cpu"  # type: ignore[valid-type]
    seed: SeedAxis = 0  # type: ignore[valid-type]
    schedule: ScheduleAxis = None  # type: ignore[valid-type]
    problem: dict[str, Any] = Field(
        default_factory=dict, description="problem.KEY = [...]: a problem parameter as an axis"
    )


class Preset(BaseModel):
    """``[optimizers.NAME]``: a torch.optim class and keyword arguments."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(description='a torch.optim class name such as "SGD"')


class GridFile(BaseModel):
    """A grid file (TOML)."""

    model_config = _STRICT
    name: GridName | None = Field(None, description="results/<name>/ (default: the file's stem)")
    description: str | None = Field(None, description="what the grid answers")
    problem: ProblemTable = Field(description="the problem to train on")
    train: Train = Field(description="budget, evaluation and stopping rules")
    grid: GridAxes = Field(description="the axes")
    optimizers: dict[str, Preset] = Field(default_factory=dict, description="presets")
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="drop combinations")
    include: list[dict[str, Any]] = Field(default_factory=list, description="add combinations")


# ---------------------------------------------------------------------------------------------
# errors: pydantic's error -> (dotted key, message) in the project's words


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model a location points into (for the allowed keys and descriptions)."""
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return model


def _bound(v: Any, limit: Any) -> tuple[str, str]:
    """How a limit and a value are written: ints with _ separators, floats in 3 digits."""
    if isinstance(limit, int) and isinstance(v, int):
        return f"{limit:_}", f"{v:_}"
    what = " (the float32 range)" if limit == FLOAT32_MAX else ""
    return f"{limit:.3g}{what}", f"{v:g}" if isinstance(v, int | float) else repr(v)


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
}


def _is_member_tag(part: int | str) -> bool:
    if isinstance(part, int):
        return False
    return part in _MEMBER_TAGS or bool(re.search(r"[\[\]'(-]", part))


_MEMBER_TAGS = {
    "int",
    "str",
    "float",
    "bool",
    "list",
    "tuple",
    "dict",
    "ScheduleTable",
    "EarlyStopping",
    "LogSpace",
    "LinSpace",
    "IntRange",
}


def describe(err: ErrorDetails, model: type[BaseModel] | None) -> tuple[str, str]:
    """The dotted key and the one-line message of one pydantic error."""
    # Union members add their name to the location (``threads.int``): keep only real keys.
    loc = tuple(p for p in err["loc"] if not _is_member_tag(p))
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
    if kind == "keyed":
        return _dotted(loc) + (ctx["key"] if ctx["key"][:1] in ".[" else f".{ctx['key']}"), ctx[
            "message"
        ]
    key = _dotted(loc)
    parent = _model_at(model, loc[:-1])
    if kind == "extra_forbidden":
        allowed = list(parent.model_fields) if parent else []
        hint = did_you_mean(str(loc[-1]), allowed)
        return key, f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        field = parent.model_fields.get(str(loc[-1])) if parent else None
        return key, f"required: {field.description}" if field and field.description else "required"
    if kind in _TYPE_WORDS:
        return key, f"must be {_TYPE_WORDS[kind]}, got {value!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return key, f"must be a table ([{key}]), got {type(value).__name__}"
    if kind in ("greater_than_equal", "greater_than"):
        sign, limit = (">=", ctx["ge"]) if kind == "greater_than_equal" else (">", ctx["gt"])
        return key, f"must be {sign} {limit:g}, got {value}"
    if kind in ("too_short", "too_long"):
        return key, f"must be a list [start, end], got {value!r}"
    if kind == "string_too_short":
        return key, "must be a non-empty string"
    if kind == "less_than_equal":
        limit, got = _bound(value, ctx["le"])
        return key, f"must be <= {limit}, got {got}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx["expected"])
        return key, f"must be one of {', '.join(choices)}, got {value!r}"
    if kind == "value_error":
        return key, str(ctx["error"])
    return key, err["msg"]


def first_error(e: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """The error to show: type errors of a union's other members give way to a real one."""
    # Unknown keys first: a misspelled key explains the errors that follow from it.
    errors = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
    wrong_member = ("literal_error", *_TYPE_WORDS, "model_type", "dict_type")
    real = [err for err in errors if err["type"] not in wrong_member]
    key = describe(errors[0], model)[0]
    if real and describe(real[0], model)[0].startswith(key):
        return describe(real[0], model)
    same_key = [err for err in errors if describe(err, model)[0] == key]
    return _union_message(same_key, model) if len(same_key) > 1 else describe(errors[0], model)


def _union_message(errors: list[ErrorDetails], model: type[BaseModel]) -> tuple[str, str]:
    """Every member refused the value's type: say what the key takes."""
    key, _ = describe(errors[0], model)
    words = []
    for err in errors:
        if err["type"] == "literal_error":
            words += [f'"{c}"' for c in re.findall(r"'([^']*)'", err["ctx"]["expected"])]
        elif err["type"] in _TYPE_WORDS:
            words.append(_TYPE_WORDS[err["type"]])
        else:
            words.append("a table")
    words = list(dict.fromkeys(words))
    listed = ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    return key, f"must be {listed}, got {errors[0].get('input')!r}"


def validate(data: dict[str, Any]) -> GridFile:
    """``data`` (a parsed grid file) as a ``GridFile``; raises ``SchemaError``."""
    try:
        return GridFile.model_validate(data)
    except ValidationError as e:
        raise SchemaError(*first_error(e, GridFile)) from None


class SchemaError(ValueError):
    """A grid file that breaks the schema, at a dotted key."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


# ---------------------------------------------------------------------------------------------
# what the schema says to people and editors


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a grid file (``sgdbench schema``): for editor completion and checks."""
    schema = GridFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sgdbench grid file"
    return schema


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value!r}`".replace("'", '"')


def key_rows() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every key the schema declares, in file order."""
    rows = []
    sections: list[tuple[str, type[BaseModel]]] = [
        ("", GridFile),
        ("train.", Train),
        ("grid.", GridAxes),
    ]
    for section, model in sections:
        for name, field in model.model_fields.items():
            if model is GridFile and name in ("train", "grid"):
                continue
            rows.append((f"{section}{name}", _default(field), field.description or ""))
    rows.append(("grid.KEYWORD", "–", "any keyword of the optimizer class, e.g. weight_decay"))
    for kind, range_model in RANGES.items():
        doc = " ".join((range_model.__doc__ or "").split()).removeprefix("A range: ")
        rows.append((f"grid.KEY = {{{kind} = ...}}", "–", doc.replace("``", "`")))
    return rows


def key_table() -> str:
    """The README's table of grid-file keys (a test keeps the README equal to it)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in key_rows()]
    return "\n".join(lines) + "\n"
