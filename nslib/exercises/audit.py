"""A static audit of a submitted notebook: code that reaches into the grading.

The test cells grade with a fresh copy of the checkers (:mod:`nslib.exercises.grading`), so
rebinding ``exercises.require`` or ``nslib.attacks.pgd`` in the kernel changes no grade. What a
notebook could still do in the same process is tamper with what that copy relies on: Python's
import machinery and builtins, torch, the running frames, IPython's display of the test cell's
result, the timer that stops a runaway function. :func:`audit` reads every code cell (as text,
without running it) and names each such line; ``nslib.classroom.AuditSubmission`` scores the
autograded tests of a flagged notebook 0 and says why, and the instructor reviews it by hand.

It flags: a store into (or a ``setattr``/``delattr`` on) anything imported from nslib, torch
(``torch.backends`` settings excepted), ``sys``, ``builtins``, ``IPython``; ``exec``, ``eval``,
``compile``, ``__import__``, ``get_ipython``; imports of ``builtins``, ``ctypes``, ``gc``,
``inspect``, ``signal``; ``importlib`` beyond ``importlib.util.find_spec``; ``sys.modules``,
``sys.setprofile`` and the like; frame and function internals (``__code__``, ``f_locals``,
``__dict__``, ...); and line magics other than ``%matplotlib``, ``%time``, ``%timeit``, ``%pip``.
"""
from __future__ import annotations

import ast

__all__ = ["audit"]

#: Packages whose objects a submission must not change (stores, setattr, delattr).
GUARDED = ("nslib", "torch", "sys", "builtins", "IPython", "importlib")
#: Attribute chains under GUARDED that a notebook may set.
SETTABLE = ("torch.backends.",)
#: Modules a submission must not import at all.
BANNED_IMPORTS = ("builtins", "ctypes", "gc", "inspect", "signal")
#: Calls a submission must not make.
BANNED_CALLS = ("exec", "eval", "compile", "__import__", "get_ipython", "breakpoint")
#: Attributes that reach into frames, functions, modules or the interpreter.
BANNED_ATTRIBUTES = ("__code__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__", "__dict__",
                     "__builtins__", "f_locals", "f_globals", "f_back", "gi_frame", "tb_frame")
#: Attributes of ``sys`` that reach into the interpreter.
BANNED_SYS = ("modules", "setprofile", "settrace", "_getframe", "meta_path", "path_hooks", "displayhook",
              "excepthook", "setrecursionlimit", "stdout", "stderr")
#: Uses of ``importlib`` a notebook needs (the install cell's).
ALLOWED_IMPORTLIB = ("importlib.util.find_spec",)
#: Line magics a notebook may use.
ALLOWED_MAGICS = ("%matplotlib", "%time", "%timeit", "%pip", "%%time", "%%timeit")


def audit(notebook, skip=lambda cell: False) -> list[str]:
    """One line per finding, ``cell N, line L: `code`: why``, for every code cell of ``notebook``
    (an nbformat notebook) not skipped by ``skip(cell)`` (the locked test cells, say)."""
    cells = [(i, cell) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and not skip(cell)]
    parsed = [(i, cell.source, _parse(cell.source)) for i, cell in cells]
    aliases = {}  # name bound by an import -> the dotted module or object it stands for
    for _, _, tree in parsed:
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                aliases.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                                for a in node.names})
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    findings = []
    for index, source, tree in parsed:
        lines = source.splitlines()
        for lineno, why in sorted(_magics(lines) + (_findings(tree, aliases) if tree is not None else [])):
            findings.append(f"cell {index}, line {lineno}: `{lines[lineno - 1].strip()[:100]}`: {why}")
    return findings


def _parse(source: str):
    """The cell's syntax tree, its IPython magic and shell lines blanked out (None if it does not parse)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _magics(lines: list[str]) -> list[tuple[int, str]]:
    return [(n, "an IPython magic can change how the kernel runs and shows results")
            for n, line in enumerate(lines, 1) if line.lstrip().startswith("%")
            and not line.lstrip().startswith(ALLOWED_MAGICS)]


def _dotted(node, aliases: dict) -> str | None:
    """``torch.nn.functional.relu`` for ``F.relu`` (F imported as torch.nn.functional); None if not an import."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    while isinstance(node, ast.Subscript):
        node = node.value
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
    if not isinstance(node, ast.Name):
        return None
    root = "builtins" if node.id == "__builtins__" else aliases.get(node.id)
    return ".".join([root, *reversed(parts)]) if root else None


def _guarded(name: str | None) -> bool:
    return (name is not None and name.split(".")[0] in GUARDED
            and not (name + ".").startswith(SETTABLE))


def _findings(tree, aliases: dict) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            name = _dotted(target, aliases) if isinstance(target, (ast.Attribute, ast.Subscript)) else None
            if _guarded(name):
                out.append((node.lineno, f"changes {name}, code the grading relies on"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in BANNED_CALLS:
                out.append((node.lineno, f"{node.func.id}() runs or reaches code the audit cannot read"))
            elif node.func.id in ("setattr", "delattr") and node.args and _guarded(_dotted(node.args[0], aliases)):
                out.append((node.lineno, f"{node.func.id}() on {_dotted(node.args[0], aliases)}, code the grading "
                                         "relies on"))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out += [(node.lineno, why) for why in _import_findings(node)]
        if isinstance(node, ast.Attribute) and node.attr in BANNED_ATTRIBUTES:
            out.append((node.lineno, f"uses .{node.attr}, which reaches into frames, functions or modules"))
        name = _dotted(node, aliases) if isinstance(node, ast.Attribute) else None
        if name and name.startswith("sys.") and name.split(".")[1] in BANNED_SYS:
            out.append((node.lineno, f"uses {name}, which reaches into the interpreter"))
        if name and name.startswith("importlib.") and not _allowed_importlib(name):
            out.append((node.lineno, f"uses {name}, which can load a second copy of any module"))
    return sorted(set(out))


def _import_findings(node) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        names = [f"{node.module}.{a.name}" for a in node.names] if node.module else []
    banned = [n for n in names if n.split(".")[0] in BANNED_IMPORTS]
    out = [f"imports {', '.join(banned)}, which reaches into the interpreter"] if banned else []
    if isinstance(node, ast.ImportFrom):
        out += [f"imports {n}, which can load a second copy of any module" for n in names
                if n.startswith("importlib.") and not _allowed_importlib(n)]
    return out


def _allowed_importlib(name: str) -> bool:
    """``importlib.util.find_spec`` and the chains leading to it (``importlib.util``)."""
    return any(allowed == name or allowed.startswith(name + ".") for allowed in ALLOWED_IMPORTLIB)
