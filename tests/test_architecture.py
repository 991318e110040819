"""The shape of the source tree, read from its syntax (no module is imported).

- A module shares through public names: no import of another module's underscore name (``from m import
  _x``, ``import m._x``, or ``m._x`` on an imported project module), and no assignment to an imported
  project module's attribute (patching its globals instead of passing an option).
- No import cycle between the project's modules, counting imports inside functions (only
  ``if TYPE_CHECKING:`` blocks are left out of this one: they never run).
- A role (``agents/*.py``; the LLM back ends in ``agents/llm`` are adapters) reaches hardware, the
  LLM client, the literature store and Ray only through its ports: it imports no back end.
- Benchmarks and tests vary the optimiser by its options, never by patching its modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("athanor", "agents", "tools", "instruments", "knowledge", "runs", "bench")
#: What a role may not import: hardware back ends, Ray's actors and runtime, and the clients of the
#: services behind the ports (OpenAI-compatible LLMs, the chromadb store, Ray, serial ports, HTTP).
ROLE_FORBIDDEN = (
    "instruments.backends",
    "instruments.opentrons",
    "instruments.actors",
    "instruments.ray_runtime",
    "instruments.virtual_lab",
    "openai",
    "chromadb",
    "ray",
    "serial",
    "httpx",
)
#: The modules benchmarks and tests must not patch (they pass options in instead).
OPTIMISER = ("tools",)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    paths = [p for package in SOURCE_PACKAGES for p in sorted((root / package).rglob("*.py"))]
    return {module_name(p, root): p for p in paths}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the module the statement loads (for ``from m import name``: m, or m.name if a module)
    name: str | None  # the name taken from it, for ``from m import name``
    alias: str  # the name it binds
    bound: str | None  # the module that name stands for (None: not a module)


def _runs(tree: ast.AST, typing_too: bool) -> Iterator[ast.AST]:
    """Every node that can run, and with ``typing_too`` the bodies of ``if TYPE_CHECKING:`` as well."""
    for node in ast.iter_child_nodes(tree):
        test = node.test if isinstance(node, ast.If) else None
        guard = ast.unparse(test) if isinstance(test, ast.Name | ast.Attribute) else ""
        typing_only = guard.endswith("TYPE_CHECKING")
        if typing_only and not typing_too:
            yield from (n for child in node.orelse for n in [child, *_runs(child, typing_too)])
            continue
        yield node
        yield from _runs(node, typing_too)


def imports_of(
    path: Path, modules: dict[str, Path], root: Path = ROOT, typing_too: bool = False
) -> list[Import]:
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in _runs(ast.parse(path.read_text(encoding="utf-8")), typing_too):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.partition(".")[0]
                found.append(Import(node.lineno, a.name, None, a.asname or top, a.name if a.asname else top))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                submodule = f"{base}.{a.name}" in modules
                target = f"{base}.{a.name}" if submodule else base
                bound = target if submodule else None
                found.append(Import(node.lineno, target, a.name, a.asname or a.name, bound))
    return found


def _dotted(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else [*base, node.attr]
    return None


def _module_prefix(
    chain: list[str], aliases: dict[str, str], modules: dict[str, Path]
) -> tuple[str, int] | None:
    """The project module an attribute chain ``x.y.z`` names, and how many of its parts that takes."""
    if chain[0] not in aliases:
        return None
    module, used = aliases[chain[0]], 1
    while used < len(chain) and f"{module}.{chain[used]}" in modules:
        module, used = f"{module}.{chain[used]}", used + 1
    return (module, used) if module in modules else None


def module_aliases(found: list[Import]) -> dict[str, str]:
    """Names bound to modules: ``import a.b as x`` (x: a.b), ``import a.b`` (a: a), ``from a import b``."""
    return {imp.alias: imp.bound for imp in found if imp.bound is not None}


def private_uses(path: Path, modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    """Imports of another project module's underscore names, and ``module._name`` on a project module."""
    where = path.relative_to(root)
    found = imports_of(path, modules, root, typing_too=True)
    problems = [
        f"{where}:{imp.line}: imports {imp.name or imp.module} from {imp.module}"
        for imp in found
        if under(imp.module, SOURCE_PACKAGES)
        and ((imp.name is not None and is_private(imp.name)) or any(map(is_private, imp.module.split("."))))
    ]
    aliases = module_aliases(found)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        prefix = chain and _module_prefix(chain, aliases, modules)
        if prefix and len(chain) > prefix[1] and is_private(chain[prefix[1]]):
            problems.append(f"{where}:{node.lineno}: uses {prefix[0]}.{chain[prefix[1]]}")
    return problems


def module_patches(
    path: Path, modules: dict[str, Path], targets: tuple[str, ...], root: Path = ROOT
) -> list[str]:
    """Assignments to, and ``setattr`` on, module attributes that belong to the modules under ``targets``.

    That is an attribute of such a module, or a name another project module imported from one (as
    ``agents.designer.propose`` is the optimiser's ``propose``).
    """
    where = path.relative_to(root)
    aliases = module_aliases(imports_of(path, modules, root))
    problems = []

    def owned(module: str, attribute: str | None) -> str | None:
        """``module.attribute`` when it belongs to ``targets`` (None when it does not)."""
        if under(module, targets):
            return f"{module}.{attribute}" if attribute else module
        for imp in imports_of(modules[module], modules, root) if attribute else []:
            if imp.alias == attribute and under(imp.module, targets):
                return f"{module}.{attribute} (from {imp.module})"
        return None

    def patched(node: ast.AST, attribute: str | None) -> str | None:
        chain = _dotted(node)
        prefix = chain and _module_prefix(chain, aliases, modules)
        return owned(prefix[0], attribute) if prefix and prefix[1] == len(chain) else None

    def text(node: ast.AST) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Attribute) and (what := patched(target.value, target.attr)):
                    problems.append(f"{where}:{node.lineno}: assigns {what}")
        elif isinstance(node, ast.Call) and node.args and ast.unparse(node.func).split(".")[-1] == "setattr":
            first, rest = node.args[0], node.args[1:]
            if (dotted := text(first)) is not None:  # monkeypatch.setattr("package.module.name", value)
                module, _, attribute = dotted.rpartition(".")
                what = owned(module, attribute) if module in modules else None
            else:
                what = patched(first, text(rest[0]) if rest else None)
            if what:
                problems.append(f"{where}:{node.lineno}: setattr on {what}")
    return problems


def import_cycles(modules: dict[str, Path], root: Path = ROOT) -> list[list[str]]:
    """Strongly connected groups of project modules that import each other (Tarjan's algorithm)."""
    graph = {
        m: sorted({i.module for i in imports_of(p, modules, root) if i.module in modules})
        for m, p in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while (n := stack.pop()) != m:
                group.append(n)
            group.append(m)
            if len(group) > 1 or m in graph[m]:
                cycles.append(sorted(group))

    for m in graph:
        if m not in index:
            visit(m)
    return cycles


def role_imports(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    roles = [p for p in sorted((root / "agents").glob("*.py")) if p.name != "__init__.py"]
    return [
        f"{p.relative_to(root)}:{imp.line}: imports {imp.module}"
        for p in roles
        for imp in imports_of(p, modules, root)
        if under(imp.module, ROLE_FORBIDDEN)
    ]


# ------------------------------------------------------------------------------------------ the tree
MODULES = project_modules()


def test_no_module_imports_another_modules_private_names():
    assert [problem for path in MODULES.values() for problem in private_uses(path, MODULES)] == []


def test_no_source_module_patches_another_modules_globals():
    everything = tuple(SOURCE_PACKAGES)
    patches = [problem for path in MODULES.values() for problem in module_patches(path, MODULES, everything)]
    assert patches == []


def test_benchmarks_and_tests_vary_the_optimiser_by_options_not_by_patching_it():
    files = [*sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
    assert [problem for path in files for problem in module_patches(path, MODULES, OPTIMISER)] == []


def test_no_import_cycle_between_the_projects_modules():
    assert import_cycles(MODULES) == []


def test_roles_reach_hardware_llm_store_and_ray_only_through_their_ports():
    assert role_imports(MODULES) == []


# ------------------------------------------------------------------------------------------ the checks
def write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in SOURCE_PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return project_modules(root)


def test_the_checks_catch_each_break(tmp_path):
    modules = write(
        tmp_path,
        {
            "tools/__init__.py": "",
            "tools/fit.py": "import tools.search\n\ndef _helper():\n    return 1\n",
            "tools/search.py": "def run():\n    from tools.fit import _helper  # late, to dodge the cycle\n",
            "tools/later.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from tools.fit import _h\n",
            "bench/__init__.py": "",
            "bench/variant.py": "import tools.fit as fit\n\nfit._helper = lambda: 2\nprint(fit._helper())\n",
            "agents/__init__.py": "",
            "agents/pi.py": "import ray\nfrom instruments.backends.serial import SerialBackend\n",
            "agents/llm/__init__.py": "",
            "agents/llm/openai_backend.py": "import openai\n",
            "tests/test_x.py": "import tools.fit\nimport bench.variant as v\n\ndef test(patch):\n"
            "    patch.setattr(tools.fit, 'x', 1)\n"
            "    patch.setattr(v, 'fit', 0)\n"
            "    patch.setattr(v, 'y', 2)\n",
        },
    )
    private = sorted(p for path in modules.values() for p in private_uses(path, modules, tmp_path))
    assert private == [
        "bench/variant.py:3: uses tools.fit._helper",
        "bench/variant.py:4: uses tools.fit._helper",
        "tools/later.py:4: imports _h from tools.fit",
        "tools/search.py:2: imports _helper from tools.fit",
    ]
    assert module_patches(modules["bench.variant"], modules, OPTIMISER, tmp_path) == [
        "bench/variant.py:3: assigns tools.fit._helper"
    ]
    assert module_patches(tmp_path / "tests/test_x.py", modules, OPTIMISER, tmp_path) == [
        "tests/test_x.py:5: setattr on tools.fit.x",
        "tests/test_x.py:6: setattr on bench.variant.fit (from tools.fit)",
    ]
    assert import_cycles(modules, tmp_path) == [["tools.fit", "tools.search"]]
    assert role_imports(modules, tmp_path) == [
        "agents/pi.py:1: imports ray",
        "agents/pi.py:2: imports instruments.backends.serial",
    ]
