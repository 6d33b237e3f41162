"""Keep ``torch._dynamo`` (1.5 s of import, most of torch's start-up beyond the core) out of
processes that never compile.

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._compile._disable_dynamo``, whose wrapper imports ``torch._dynamo``
on its first call so that it can build ``torch._dynamo.disable(fn)`` and cache it on the wrapped
function as ``fn.__dynamo_disable``. The wrapper only reads that cache, so a function placed there
first is called instead. The one placed here calls ``fn`` itself while ``torch._dynamo`` is not
imported (then nothing can be compiling, and ``disable`` would change nothing) and hands over to
torch's own wrapper, for good, as soon as anything imports ``torch._dynamo``: a plug-in that
compiles its model gets exactly torch's behaviour from then on.

``Optimizer.step`` is different: every class's ``step`` is wrapped in
``_use_grad_for_differentiable``, which imports ``torch._dynamo`` on each call to place two
``graph_break()`` markers (no-ops outside compilation) around the update, with grad mode set to
the ``differentiable`` default. ``plain_step`` calls the same undecorated update under the same
grad mode, and falls back to ``optimizer.step`` whenever anything could observe the difference:
``torch._dynamo`` imported, step hooks registered, or the autograd profiler on.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch._compile
from torch.optim import optimizer as optimizer_module

_CACHE_ATTRIBUTE = "__dynamo_disable"  # the name torch._compile._disable_dynamo caches under


def _is_disable_dynamo_wrapper(obj: object) -> bool:
    """Whether ``obj`` is the ``inner`` function ``torch._compile._disable_dynamo`` returns."""
    code = getattr(obj, "__code__", None)
    return code is not None and code is _WRAPPER_CODE and hasattr(obj, "__wrapped__")


def _probe() -> None:  # only its wrapper's code object is used, never called
    return None


_WRAPPER_CODE = torch._compile._disable_dynamo(_probe).__code__
_USE_GRAD_CODE = optimizer_module._use_grad_for_differentiable(_probe).__code__


def _defer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for ``torch._dynamo.disable(fn)`` that needs no ``torch._dynamo``."""

    @functools.wraps(fn)
    def call_without_dynamo(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" in sys.modules:
            # Something may compile from now on: restore torch's own disabled function.
            disabled = torch._dynamo.disable(fn, True, wrapping=False)
            setattr(fn, _CACHE_ATTRIBUTE, disabled)
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return call_without_dynamo


@functools.cache
def defer_dynamo_import() -> int:
    """Make ``torch.optim.Optimizer``'s dynamo-disabled methods import ``torch._dynamo`` only
    once something else has imported it. Idempotent; returns how many methods it covered."""
    if "torch._dynamo" in sys.modules:
        return 0  # already paid for: keep torch's path untouched
    covered = 0
    for cls in (torch.optim.Optimizer, *_subclasses(torch.optim.Optimizer)):
        for value in vars(cls).values():
            if _is_disable_dynamo_wrapper(value):
                fn = value.__wrapped__
                if getattr(fn, _CACHE_ATTRIBUTE, None) is None:
                    setattr(fn, _CACHE_ATTRIBUTE, _defer(fn))
                    covered += 1
    return covered


def plain_step(optimizer: torch.optim.Optimizer) -> Callable[..., Any]:
    """``optimizer.step`` without the ``torch._dynamo`` import of its wrappers (same update, same
    grad mode; bitwise the same parameters). Use it instead of ``optimizer.step``."""
    profiled = type(optimizer).step  # profile_hook_step(_use_grad_for_differentiable(step))
    use_grad = getattr(profiled, "__wrapped__", None)
    update = getattr(use_grad, "__wrapped__", None)
    if update is None or getattr(use_grad, "__code__", None) is not _USE_GRAD_CODE:
        return optimizer.step  # a class torch did not wrap the usual way: take no chances

    global_hooks = (
        optimizer_module._global_optimizer_pre_hooks,
        optimizer_module._global_optimizer_post_hooks,
    )
    own_hooks = (optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks)
    differentiable = bool(optimizer.defaults.get("differentiable", False))

    def step(*args: Any, **kwargs: Any) -> Any:
        if (
            "torch._dynamo" in sys.modules
            or any(global_hooks)
            or any(own_hooks)
            or torch.autograd.profiler._is_profiler_enabled
        ):
            return optimizer.step(*args, **kwargs)
        with torch.set_grad_enabled(differentiable):
            out = update(optimizer, *args, **kwargs)
        optimizer._optimizer_step_code()
        return out

    return step


def _subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def manual_seed(seed: int) -> None:
    """``torch.manual_seed`` without its cost where no GPU exists: it queues a lazy seeding call
    per accelerator backend, each recording ``traceback.format_stack()`` (19 ms a call on this
    machine, two calls per run). Without CUDA those calls can never run, so seeding the CPU
    generator alone leaves every random draw the same."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
