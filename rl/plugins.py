"""Resolving plug-ins named in a recipe: `path/to/file.py:name` or `pkg.module:name`.

Only the file or module the recipe names is imported; nothing else is searched.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from neuralese.errors import ConfigError


def is_reference(name: str) -> bool:
    """True for `file.py:attr` and `pkg.module:attr`, False for a built-in name."""
    return ":" in name


def resolve(ref: str, what: str, key: str) -> Callable[..., Any]:
    """The object `ref` points at; `what` and `key` make the error name the recipe key."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise ConfigError(
            f"{key}: {what} reference {ref!r} must look like 'path/to/file.py:name' or 'pkg.module:name'"
        )
    if target.endswith(".py"):
        module = _load_file(target, what, key)
    elif "/" in target or "\\" in target or Path(target).expanduser().is_file():
        # a path, but not to a .py file: importing it as a module name would only say "No module named"
        kind = "a folder" if Path(target).expanduser().is_dir() else "not a .py file"
        raise ConfigError(
            f"{key}: {what} reference {ref!r}: {target!r} is {kind}; expected 'path/to/file.py:name' "
            "or 'pkg.module:name'"
        )
    else:
        module = _import_module(target, what, key)
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        near = difflib.get_close_matches(attr, names, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(
            f"{key}: {what} {target!r} has no attribute {attr!r}; {hint}"
            f"its functions and classes: {', '.join(sorted(names)) or '(none)'}"
        )
    if not callable(obj):
        raise ConfigError(f"{key}: {what} {ref!r} is not callable")
    return obj


def _load_file(target: str, what: str, key: str) -> ModuleType:
    """A plug-in file imported once per process. A relative path is read from the working directory;
    the file's own folder joins the import path (at its end), so it can import the modules beside it."""
    path = Path(target).expanduser()
    if not path.is_file():
        where = (
            ""
            if path.is_absolute()
            else f" (a relative path is read from the working directory {os.getcwd()})"
        )
        raise ConfigError(f"{key}: {what} file {str(path)!r} does not exist{where}")
    mod_name = f"neuralese_plugin_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(mod_name)
    if module is not None:
        return module
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # noqa: TID251 (a user's plug-in file imports the modules beside it)
        sys.path.append(folder)  # noqa: TID251
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # before it runs, as an import does: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # the plug-in's own code failed at import
        del sys.modules[mod_name]
        raise ConfigError(
            f"{key}: importing {what} file {str(path)!r} failed: {type(e).__name__}: {e}"
        ) from None
    return module


def _import_module(target: str, what: str, key: str) -> ModuleType:
    """`pkg.module` imported as `python -m` would from the working directory: the working directory
    joins the import path (at its end) whichever way the command was launched."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # noqa: TID251 (as `python -m` would)
        sys.path.append(cwd)  # noqa: TID251
    try:
        return importlib.import_module(target)
    except ImportError as e:
        raise ConfigError(
            f"{key}: cannot import {what} module {target!r}: {e} (a module is looked up in the working "
            f"directory {cwd} and the installed packages; a file is given as 'path/to/file.py:name')"
        ) from None
    except (Exception, SystemExit) as e:  # its own code failed at import, or the name is relative ('.mod')
        raise ConfigError(
            f"{key}: importing {what} module {target!r} failed: {type(e).__name__}: {e}"
        ) from None


def lookup(
    name: str, builtins: Mapping[str, Callable | str], key: str, what: str, plugin_what: str | None = None
) -> Callable[..., Any]:
    """A plug-in reference resolved, or a built-in by name (a callable, or 'module:attr' imported on
    use); an unknown name is an error that suggests the nearest built-in. `what` names the thing in
    messages ("environment"), `plugin_what` the object a reference points at (its factory)."""
    if is_reference(name):
        return resolve(name, plugin_what or what, key)
    if name not in builtins:
        near = difflib.get_close_matches(name, list(builtins), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(
            f"{key}: unknown {what} {name!r}{hint} Built-ins: {', '.join(sorted(builtins))}; "
            "a plug-in is given as 'path/to/file.py:name' or 'pkg.module:name'"
        )
    target = builtins[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


def absolute_reference(ref: str) -> str:
    """`path/to/file.py:name` with the path made absolute (read from the working directory, as the
    reference itself is), so the reference works from any folder; anything else as it is."""
    target, _, attr = ref.rpartition(":")
    if not target.endswith(".py") or Path(target).expanduser().is_absolute():
        return ref
    return f"{Path(target).expanduser().resolve()}:{attr}"
