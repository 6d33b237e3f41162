"""Import a plug-in problem (``package.module:function``): the one way user code enters a run.

An installed (importable) module of that name wins. Otherwise the module is looked for beside the
grid file, as ``module.py`` or a package folder ``package/``, and loaded from that location with
``importlib.util``. The grid's folder is never put on ``sys.path``: a ``pyarrow.py`` or
``torch.py`` lying beside a grid can never shadow the installed package, in the driver, in
worker processes or on Dask workers (they receive the folder with the run, not a ``sys.path``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# Top-level module name -> the grid folder it was loaded from (by file location). A long-lived
# process that runs grids from two folders gets each folder's own module, not the first one.
_LOADED_FROM: dict[str, str] = {}


class PluginError(RuntimeError):
    """A plug-in could not be loaded or built (it exited, or it has no such function)."""


def split_name(name: str) -> tuple[str, str]:
    """``"pkg.mod:make"`` -> ``("pkg.mod", "make")``."""
    module_name, _, func_name = name.partition(":")
    if not module_name or not func_name:
        raise PluginError(f"plug-in {name!r} must be written package.module:function")
    return module_name, func_name


def beside_grid(top: str, folder: str) -> tuple[Path, list[str] | None] | None:
    """``(file, package search path)`` of module ``top`` in ``folder``, or None when absent."""
    root = Path(folder)
    package = root / top
    if (package / "__init__.py").is_file():
        return package / "__init__.py", [str(package)]
    if (root / f"{top}.py").is_file():
        return root / f"{top}.py", None
    return None


def _installed(top: str) -> bool:
    """``top`` is importable without the grid's folder (already imported, or on ``sys.path``)."""
    if top in sys.modules:
        return _LOADED_FROM.get(top) is None
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _load_by_location(top: str, file: Path, search: list[str] | None, folder: str) -> None:
    """Execute ``file`` as module ``top`` (a package when ``search`` is given)."""
    for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[loaded]  # another grid folder's copy: its submodules go with it
    spec = importlib.util.spec_from_file_location(top, file, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing, as the import system does, so that the module's own imports
    # of its submodules (``from . import x``, ``import pkg.x``) find it.
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        _LOADED_FROM.pop(top, None)
        raise
    _LOADED_FROM[top] = folder


def import_module(module_name: str, folder: str | None) -> ModuleType:
    """Import ``module_name``: installed first, else from ``folder`` (the grid's) by location."""
    top = module_name.partition(".")[0]
    if folder and not _installed(top) and _LOADED_FROM.get(top) != folder:
        found = beside_grid(top, folder)
        if found is not None:
            _load_by_location(top, *found, folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != top or not folder:
            raise
        raise ModuleNotFoundError(
            f"no module {top!r}: neither installed nor beside the grid ({top}.py or {top}/ in "
            f"{folder})",
            name=top,
        ) from None


def builder(name: str, folder: str | None) -> Callable[..., Any]:
    """The function that plug-in ``name`` names, its module imported (see the module docstring)."""
    module_name, func_name = split_name(name)
    module = import_module(module_name, folder)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PluginError(f"module {module_name!r} has no function {func_name!r}")
    return func


def exit_message(e: BaseException) -> str:
    """What a plug-in that exited instead of raising an ``Exception`` did, in words."""
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    return f"raised {type(e).__name__}"
