"""Pydantic's validation errors in the project's words: a dotted key and a one-line message
(``grid.lr[2]: must be > 0, got -0.1``), whatever model or value type raised them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from sgdbench.errors import did_you_mean
from sgdbench.limits import FLOAT32_MAX


class SchemaError(ValueError):
    """A grid file that breaks the schema, at a dotted key."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def keyed(key: str, message: str) -> PydanticCustomError:
    """An error inside a value (``[2]``, ``.logspace[1]``) that keeps its own location."""
    return PydanticCustomError("keyed", "{key}: {message}", {"key": key, "message": message})


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
