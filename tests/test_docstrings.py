"""Every public function and class of ``itemrec`` is documented with its sections (issue 14).

A static (AST) check over ``src/itemrec/**/*.py``; nothing is imported, so it runs in well under
a second and needs no TensorFlow. Docstrings follow the Google style: a section starts with a
line ``Args:``, ``Returns:``, ``Yields:``, ``Raises:`` or ``Attributes:`` at the docstring's own
indentation, and its entries are the lines one level deeper, each ``name: text`` or
``name (type): text`` (several names may share one entry: ``x, y: ...``).

What is checked
---------------

* Modules: every ``.py`` file under ``src/itemrec`` except those whose own name starts with
  ``_`` (``_jsonio.py``, ``__main__.py``, ...); a package's ``__init__.py`` is checked as the
  package itself (``itemrec.cli`` defines ``main``), since what it defines is public.
  Every such module is held to the rules (issue 14 was done module by module; none is exempt now).
* Public definitions: module-level functions and classes whose names do not start with
  ``_``, and the methods of those classes whose names do not start with ``_`` (dunders
  excluded; ``__init__`` is read as the class's constructor). ``@overload`` stubs are skipped.

The rules, for each public definition:

1. It has a docstring.
2. A function or method with parameters other than ``self``/``cls`` has an ``Args:`` section
   naming each of them; ``*args``/``**kwargs`` may be left out (they are usually forwarded).
3. One that returns a value -- a ``return <expr>`` in its own body (not in a nested ``def``,
   ``lambda`` or ``class``) other than ``return None`` -- has a ``Returns:`` section; a
   generator (``yield`` in its own body) has ``Yields:`` (or ``Returns:``).
4. One whose own body has a ``raise`` statement has a ``Raises:`` section naming each
   exception class raised there (``raise X(...)``, ``raise X``, ``raise mod.X(...)``);
   a bare ``raise`` (re-raising what was caught) and ``raise some_variable`` need the
   section only. Errors raised by the helpers a function calls are not seen by this check;
   the docstrings name the ones a caller should expect, by hand.
5. A class's constructor arguments -- the parameters of its own ``__init__``, or for a
   dataclass / ``NamedTuple`` / pydantic model its annotated fields (``ClassVar`` and ``field(init=False)``
   excluded) -- are named in an ``Args:`` (or, for fields, ``Attributes:``) section of the
   class docstring or of ``__init__``'s. Exceptions raised by ``__init__`` are named in a
   ``Raises:`` section of either.

Exemptions:

* ``@property`` methods need a docstring only (one line is enough: it reads as an
  attribute); their setters/deleters need nothing.
* Overrides of framework hooks (:data:`HOOKS`: Keras's ``call``, ``build``, ``get_config``,
  ``from_config``, ``compute_output_shape``, ``compute_loss``, callback ``on_*`` methods,
  ...) inherit the base class's documented contract, so they need no docstring; but an
  override that raises departs from that contract, so if its own body has a ``raise`` it
  needs a docstring with a ``Raises:`` section (rule 4).

Run ``python tests/test_docstrings.py`` to print every module's problems.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "itemrec"

#: Framework hook overrides (Keras layers/models/losses/callbacks, ``json.JSONEncoder``,
#: ``http.server``, ``argparse``): documented by the base class.
HOOKS = frozenset(
    {
        "call",
        "build",
        "get_config",
        "from_config",
        "compute_output_shape",
        "compute_output_spec",
        "compute_loss",
        "compute_mask",
        "get_build_config",
        "build_from_config",
        "train_step",
        "test_step",
        "predict_step",
        "set_model",
        "set_params",
        "on_train_begin",
        "on_train_end",
        "on_epoch_begin",
        "on_epoch_end",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_test_begin",
        "on_test_end",
        "on_test_batch_begin",
        "on_test_batch_end",
        "on_predict_begin",
        "on_predict_end",
        "on_predict_batch_begin",
        "on_predict_batch_end",
        "default",  # json.JSONEncoder
        "do_GET",  # http.server.BaseHTTPRequestHandler
        "do_POST",
        "do_HEAD",
        "log_message",
        "handle_error",
        "format_help",  # argparse
        "error",
    }
)

SECTION_NAMES = ("Args", "Arguments", "Returns", "Yields", "Raises", "Attributes", "Example", "Examples", "Note", "Notes", "References", "See Also", "Warns", "Warning")
_SECTION_RE = re.compile(r"^(%s):\s*$" % "|".join(re.escape(s) for s in SECTION_NAMES))
_ENTRY_RE = re.compile(r"^\s*(\*{0,2}[A-Za-z_][\w.]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w.]*)*)\s*(?:\([^)]*\))?\s*:")


# --------------------------------------------------------------------------------------- parsing


def sections(doc: str) -> dict[str, list[str]]:
    """The Google-style sections of a cleaned (dedented) docstring.

    Args:
        doc: the docstring as :func:`ast.get_docstring` returns it (dedented).

    Returns:
        Section name (``"Args"``, ``"Returns"``, ...; ``"Arguments"`` read as ``"Args"``) to
        the names its entries document, in order (for ``Returns``/``Yields`` the list holds
        one entry per non-empty line, so a present section is never empty).
    """
    out: dict[str, list[str]] = {}
    current: str | None = None
    entry_indent: int | None = None
    for line in doc.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _SECTION_RE.match(line)
        if match and indent == 0:
            current = "Args" if match.group(1) == "Arguments" else match.group(1)
            out.setdefault(current, [])
            entry_indent = None
            continue
        if indent == 0:
            current = None
            continue
        if current is None:
            continue
        if current in ("Returns", "Yields"):
            out[current].append(line.strip())
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent != entry_indent:
            continue  # continuation of an entry
        entry = _ENTRY_RE.match(line)
        if entry:
            out[current].extend(n.strip().lstrip("*").split(".")[-1] for n in entry.group(1).split(","))
    return out


def _own_nodes(fn: ast.AST):
    """Nodes in ``fn``'s own body: nested functions, lambdas and classes are not descended into."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(node))


def _decorator_names(node: ast.AST) -> set[str]:
    names = set()
    for dec in getattr(node, "decorator_list", []):
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
            if isinstance(target.value, ast.Name):
                names.add(f"{target.value.id}.{target.attr}")
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def _exception_name(exc: ast.AST | None) -> str | None:
    """The class a ``raise`` statement raises, when it can be read from the source."""
    if exc is None:
        return None
    if isinstance(exc, ast.Call):
        exc = exc.func
    if isinstance(exc, ast.Attribute):
        return exc.attr
    if isinstance(exc, ast.Name) and exc.id[:1].isupper():
        return exc.id
    return None  # a variable holding an exception


def _raised(fn: ast.AST) -> tuple[bool, list[str]]:
    """Whether ``fn``'s own body raises, and the exception classes it names."""
    raises = [n for n in _own_nodes(fn) if isinstance(n, ast.Raise)]
    names = []
    for node in raises:
        name = _exception_name(node.exc)
        if name and name not in names:
            names.append(name)
    return bool(raises), names


def _returns_value(fn: ast.AST) -> bool:
    for node in _own_nodes(fn):
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
    return False


def _yields(fn: ast.AST) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(fn))


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> list[str]:
    args = fn.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if method and positional and "staticmethod" not in _decorator_names(fn):
        positional = positional[1:]  # self / cls
    return positional + [a.arg for a in args.kwonlyargs]


# --------------------------------------------------------------------------------------- checks


def _check_function(fn, where: str, *, method: bool, problems: list[str]) -> None:
    decorators = _decorator_names(fn)
    if "overload" in decorators or "typing.overload" in decorators:
        return
    if decorators & {"setter", "deleter"}:
        return
    doc = ast.get_docstring(fn)
    is_property = bool(decorators & {"property", "cached_property", "functools.cached_property"})
    raises, raised = _raised(fn)
    if method and fn.name in HOOKS:
        if not raises:
            return
        if doc is None:
            problems.append(f"{where}: hook override raises {raised or '(re-raise)'} but has no docstring")
            return
    if doc is None:
        problems.append(f"{where}: no docstring")
        return
    if is_property:
        return
    found = sections(doc)
    params = [p for p in _params(fn, method=method)]
    if params:
        if "Args" not in found:
            problems.append(f"{where}: no Args: section (parameters {', '.join(params)})")
        else:
            missing = [p for p in params if p not in found["Args"]]
            if missing:
                problems.append(f"{where}: Args: does not name {', '.join(missing)}")
    if _yields(fn):
        if "Yields" not in found and "Returns" not in found:
            problems.append(f"{where}: a generator without a Yields: section")
    elif _returns_value(fn) and "Returns" not in found:
        problems.append(f"{where}: returns a value but has no Returns: section")
    _check_raises(raises, raised, found, where, problems)


def _check_raises(raises: bool, raised: list[str], found: dict, where: str, problems: list[str]) -> None:
    if not raises:
        return
    if "Raises" not in found:
        problems.append(f"{where}: raises {', '.join(raised) or '(re-raise)'} but has no Raises: section")
        return
    missing = [r for r in raised if r not in found["Raises"]]
    if missing:
        problems.append(f"{where}: Raises: does not name {', '.join(missing)}")


def _dataclass_fields(cls: ast.ClassDef) -> list[str] | None:
    """The constructor fields of a dataclass, ``NamedTuple`` or pydantic ``BaseModel``, else None."""
    decorators = _decorator_names(cls)
    bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in cls.bases}
    if not ({"dataclass", "dataclasses.dataclass"} & decorators or {"NamedTuple", "BaseModel"} & bases):
        return None
    fields = []
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):
            continue
        value = stmt.value
        if isinstance(value, ast.Call) and any(
            k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords
        ):
            continue
        fields.append(stmt.target.id)
    return fields


def _check_class(cls: ast.ClassDef, module: str, problems: list[str]) -> None:
    where = f"{module}:{cls.lineno}:{cls.name}"
    doc = ast.get_docstring(cls)
    if doc is None:
        problems.append(f"{where}: no docstring")
    class_sections = sections(doc or "")
    init = next(
        (s for s in cls.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == "__init__"), None
    )
    if init is not None:
        init_where = f"{module}:{init.lineno}:{cls.name}.__init__"
        init_doc = ast.get_docstring(init)
        init_sections = sections(init_doc or "")
        documented = class_sections.get("Args", []) + init_sections.get("Args", [])
        params = _params(init, method=True)
        missing = [p for p in params if p not in documented]
        if missing:
            problems.append(f"{init_where}: constructor arguments not in an Args: section: {', '.join(missing)}")
        raises, raised = _raised(init)
        merged = {"Raises": class_sections.get("Raises", []) + init_sections.get("Raises", [])}
        if "Raises" not in class_sections and "Raises" not in init_sections:
            merged = {}
        _check_raises(raises, raised, merged, init_where, problems)
    else:
        fields = _dataclass_fields(cls)
        if fields:
            documented = class_sections.get("Args", []) + class_sections.get("Attributes", [])
            missing = [f for f in fields if f not in documented]
            if missing:
                problems.append(f"{where}: fields not in an Args:/Attributes: section: {', '.join(missing)}")
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and not stmt.name.startswith("_"):
            _check_function(stmt, f"{module}:{stmt.lineno}:{cls.name}.{stmt.name}", method=True, problems=problems)


def check_module(path: Path) -> list[str]:
    """Every problem found in one module, as ``module:line:name: what is missing`` lines.

    Args:
        path: a ``.py`` file under ``src/itemrec``.

    Returns:
        The problems, in source order; empty when the module passes.
    """
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            _check_function(node, f"{module}:{node.lineno}:{node.name}", method=False, problems=problems)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            _check_class(node, module, problems)
    return problems


def module_name(path: Path) -> str:
    """``src/itemrec/data/audit.py`` -> ``itemrec.data.audit``; a package's ``__init__.py`` -> the package.

    Args:
        path: a ``.py`` file under ``src``.

    Returns:
        The dotted module name.
    """
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module the check applies to, by dotted name.

    Returns:
        Dotted name to path, sorted by name; files whose own name starts with ``_`` other than
        ``__init__.py`` are left out.
    """
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        found[module_name(path)] = path
    return dict(sorted(found.items()))


MODULES = all_modules()


# ----------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("module", list(MODULES))
def test_public_api_documented(module: str) -> None:
    problems = check_module(MODULES[module])
    assert not problems, f"{len(problems)} docstring problem(s) in {module}:\n" + "\n".join(problems)


def test_checker_catches_each_rule() -> None:
    source = '''
def bare(x):
    return x

def documented(x, *args, **kwargs):
    """Fine.

    Args:
        x (int): a number.

    Returns:
        ``x``.

    Raises:
        ValueError: when negative.
    """
    if x < 0:
        raise ValueError("negative")
    return x

def missing_sections(x, y):
    """No sections."""
    if x:
        raise KeyError(x)
    return y

def nested_only(x):
    """Nested raises and returns are not its own.

    Args:
        x: a value.
    """
    def inner():
        raise ValueError
        return 1
    return None

def gen():
    """A generator."""
    yield 1

class Widget:
    """A widget."""

    def __init__(self, size):
        if size < 0:
            raise ValueError(size)

    @property
    def area(self):
        """The area."""
        return 1

    def call(self, x):
        return x

    def build(self, shape):
        raise TypeError("no")
'''
    tree = ast.parse(source)
    problems: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            _check_class(node, "m", problems)
        else:
            _check_function(node, f"m:{node.lineno}:{node.name}", method=False, problems=problems)
    text = "\n".join(problems)
    assert "bare: no docstring" in text
    assert "documented" not in text
    assert "missing_sections: no Args: section (parameters x, y)" in text
    assert "missing_sections: returns a value" in text
    assert "missing_sections: raises KeyError but has no Raises:" in text
    assert "nested_only" not in text
    assert "gen: a generator without a Yields:" in text
    assert "Widget.__init__: constructor arguments not in an Args: section: size" in text
    assert "Widget.__init__: raises ValueError" in text
    assert "Widget.area" not in text and "Widget.call" not in text
    assert "Widget.build: hook override raises ['TypeError'] but has no docstring" in text


def test_sections_parser() -> None:
    doc = (
        "Summary.\n\nArgs:\n    a (int): one.\n        more about a: not an entry.\n    b, c: two.\n    **kw: rest.\n\n"
        "Returns:\n    Something.\n\nRaises:\n    itemrec.ConfigError: bad.\n    ValueError: worse.\n"
    )
    found = sections(doc)
    assert found["Args"] == ["a", "b", "c", "kw"]
    assert found["Returns"] == ["Something."]
    assert found["Raises"] == ["ConfigError", "ValueError"]


if __name__ == "__main__":
    status = 0
    for name, path in MODULES.items():
        problems = check_module(path)
        print(f"{name}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"    {problem}")
        status |= bool(problems)
    sys.exit(status)
