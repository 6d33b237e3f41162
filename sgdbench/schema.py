"""The grid file's schema, declared once as pydantic models.

From these models come the validation of a grid file, its one-line error messages
(``grid.lr[2]: must be > 0, got -0.1``; ``schema_errors``), the key table of the README and
``sgdbench list keys``, and the JSON Schema that ``sgdbench schema`` prints for editors. The
value types and ranges live in ``grid_values``. What needs torch (optimizer names and keywords)
or a built problem (batch size against the data) is checked by ``plan``. No torch here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

from sgdbench.grid_values import (
    DISTRIBUTION_TABLES,
    RANGES,
    STRICT,
    Axis,
    BatchSize,
    Count,
    Device,
    EarlyStopping,
    Float32,
    GridName,
    NonNegativeCount,
    Positive,
    Schedule,
    Seed,
    check_divergence_factor,
)
from sgdbench.limits import MAX_REPEAT, MAX_SECONDS, MAX_THREADS
from sgdbench.schema_errors import SchemaError, first_error, keyed

__all__ = [
    "FIXED_AXES",
    "IMPLS",
    "GridAxes",
    "GridFile",
    "Preset",
    "SchemaError",
    "SearchTable",
    "Train",
]

FIXED_AXES = ("optimizer", "lr", "batch_size", "device", "seed", "schedule")
IMPLS = ("auto", "fused", "foreach", "forloop")  # optimizers.IMPLS (a test keeps them equal)

# ---------------------------------------------------------------------------------------------
# the file


class Train(BaseModel):
    """``[train]``: the budget, evaluation and stopping rules shared by every run."""

    model_config = STRICT
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
    divergence_factor: Annotated[float, AfterValidator(check_divergence_factor)] = Field(
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
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] = Field(
        1, description="train each run N times (same seed) and keep every timing"
    )

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


# Every trial is at least one run, so more trials than spec.MAX_RUNS could never run; refusing
# them keeps a typo (trials = 1e9) from drawing the points first.
MAX_TRIALS = 100_000
SAMPLERS = ("random", "sobol", "halton")
METHODS = (*SAMPLERS, "halving")
INTEGER_KINDS = ("randint", "lograndint")  # integers, both ends included

Sampler = Literal["random", "sobol", "halton"]


class SearchTable(BaseModel):
    """``[search]``: how the configurations are chosen, beyond the cartesian product."""

    model_config = STRICT
    method: Literal["random", "sobol", "halton", "halving"] = Field(
        description='how configurations are chosen: "random", "sobol", "halton" or "halving"'
    )
    trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] | None = Field(
        None, description="number of sampled configurations (needs a distribution in [grid])"
    )
    seed: Annotated[int, Field(ge=0)] = Field(
        0, description="seed of the sampler: the same seed gives the same trials"
    )
    sampler: Sampler = Field(
        "random",
        description='halving: how its distributions are drawn, "random", "sobol" or "halton"',
    )
    eta: Annotated[int, Field(ge=2)] = Field(
        3, description="halving: keep the best 1/eta of the configurations at each rung"
    )
    min_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="halving: the first rung's budget in steps (or min_epochs)"
    )
    min_epochs: Annotated[int, Field(ge=1)] | None = Field(
        None, description="halving: the first rung's budget in epochs (or min_steps)"
    )


SEARCH_KEYS: dict[str, str] = {
    name: field.description or "" for name, field in SearchTable.model_fields.items()
}


class GridFile(BaseModel):
    """A grid file (TOML)."""

    model_config = STRICT
    name: GridName | None = Field(None, description="results/<name>/ (default: the file's stem)")
    description: str | None = Field(None, description="what the grid answers")
    problem: ProblemTable = Field(description="the problem to train on")
    train: Train = Field(description="budget, evaluation and stopping rules")
    grid: GridAxes = Field(description="the axes")
    # Checked, and its trials drawn, by sgdbench.search (numpy): the plan, not the schema.
    search: Annotated[Any, PlainValidator(lambda v: v, json_schema_input_type=SearchTable)] = Field(
        None,
        description="random/Sobol/Halton search or successive halving (sgdbench.search)",
    )
    optimizers: dict[str, Preset] = Field(default_factory=dict, description="presets")
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="drop combinations")
    include: list[dict[str, Any]] = Field(default_factory=list, description="add combinations")


def validate(data: dict[str, Any]) -> GridFile:
    """``data`` (a parsed grid file) as a ``GridFile``; raises ``SchemaError``."""
    try:
        return GridFile.model_validate(data)
    except ValidationError as e:
        raise SchemaError(*first_error(e, GridFile)) from None


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
            if model is GridFile and name in ("train", "grid", "search"):
                continue
            rows.append((f"{section}{name}", _default(field), field.description or ""))
    rows.append(("grid.KEYWORD", "–", "any keyword of the optimizer class, e.g. weight_decay"))
    for kind, range_model in RANGES.items():
        doc = " ".join((range_model.__doc__ or "").split()).removeprefix("A range: ")
        rows.append((f"grid.KEY = {{{kind} = ...}}", "–", doc.replace("``", "`")))
    for kind, table in DISTRIBUTION_TABLES.items():
        doc = " ".join((table.__doc__ or "").split()).removeprefix("A distribution: ")
        rows.append(
            (f"grid.KEY = {{{kind} = ...}}", "–", f"drawn by [search]: {doc}".replace("``", "`"))
        )
    rows += [
        (f"search.{name}", _default(field), field.description or "")
        for name, field in SearchTable.model_fields.items()
    ]
    return rows


def key_table() -> str:
    """The README's table of grid-file keys (a test keeps the README equal to it)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in key_rows()]
    return "\n".join(lines) + "\n"
