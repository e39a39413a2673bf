"""The house shows the design: no import cycle in sshwrap/, no upward import, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sshwrap"
#: The layers from the bottom up (the pure core, then the runtime's rooms, ~/.ssh/config, the
#: use cases, the Python API, the command line): each may import those below it, never one
#: above. Leaf modules of the package (errors, names, textsafe, fsutil, store, ...) stand
#: beside them and are checked for cycles only.
LAYERS = (
    "sshwrap.core",
    "sshwrap.runtime.system",
    "sshwrap.sshconfig",
    "sshwrap.runtime.client",
    "sshwrap.runtime.observe",
    "sshwrap.runtime.supervise",
    "sshwrap.runtime.engine",
    "sshwrap.usecases",
    "sshwrap.api",
    "sshwrap.cli",
)
FORBIDDEN = {layer: LAYERS[at + 1:] for at, layer in enumerate(LAYERS)}
MAX_LINES = 400
MAX_MODULES = 16


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the sshwrap modules it imports anywhere in it: at the top, in a function, or
    for type checking only (a cycle through those is still a cycle of the design)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [f"{base}.{alias.name}" for alias in node.names]
                # "from sshwrap import askpass" depends on sshwrap.askpass, as "from
                # sshwrap.askpass import X" would: not on the package's own __init__.
                if not all(target in modules for target in targets):
                    targets.insert(0, base)
            for target in targets:
                known = target
                while known and known not in modules:
                    known = known.rpartition(".")[0]
                if known and known != name:
                    graph[name].add(known)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (module, target) for module, targets in graph.items()
        for layer, above in FORBIDDEN.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets if any(target == a or target.startswith(a + ".") for a in above))


def test_no_import_cycle_anywhere_in_sshwrap() -> None:
    assert cycles(import_graph()) == []


def test_no_upward_import() -> None:
    assert upward_imports(import_graph()) == []


def test_every_module_of_a_layer_folder_is_in_a_layer() -> None:
    """A new folder under runtime/ (or a module left at its top) is placed in the order."""
    loose = [name for name in _modules() if name.startswith("sshwrap.runtime.")
             and not any(name == layer or name.startswith(layer + ".") for layer in LAYERS)]
    assert loose == []


def test_folders_are_rooms_not_corridors() -> None:
    """No folder of the package holds more than about fifteen modules."""
    crowded = {str(folder.relative_to(PACKAGE.parent)): count for folder in
               [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]
               if (count := len([m for m in folder.glob("*.py") if m.name != "__init__.py"]))
               > MAX_MODULES}
    assert crowded == {}


def test_modules_are_small() -> None:
    big = {name: n for name, path in _modules().items()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


@pytest.mark.parametrize(("files", "expected"), [
    ({"a.py": "from pkg import b\n", "b.py": "def f():\n    from pkg.c import x\n",
      "c.py": "x = 1\nfrom pkg import a\n"}, [["pkg.a", "pkg.b", "pkg.c"]]),
    ({"a.py": "from . import b\n", "b.py": "x = 1\n"}, []),
    ({"a.py": "from .b import y\n", "b.py": "from .a import z\n"}, [["pkg.a", "pkg.b"]]),
])
def test_the_cycle_finder_finds_cycles(tmp_path: Path, files: dict[str, str],
                                       expected: list[list[str]]) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        (package / name).write_text(text)
    assert cycles(import_graph(package)) == expected


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    graph = {"sshwrap.runtime.system.x": {"sshwrap.cli.render", "sshwrap.errors"},
             "sshwrap.core.y": {"sshwrap.runtime.system.state"},
             "sshwrap.cli.z": {"sshwrap.runtime.system.x"}}
    assert upward_imports(graph) == [("sshwrap.core.y", "sshwrap.runtime.system.state"),
                                     ("sshwrap.runtime.system.x", "sshwrap.cli.render")]


#: Where the process-wide umask may be set: a process's entry point, before any thread runs.
UMASK_SETTERS = {("sshwrap.runtime.engine.detached", "main"),
                 ("sshwrap.runtime.engine.foreground", "run"),
                 ("sshwrap.runtime.supervise.masters", "main")}


def umask_calls(root: Path = PACKAGE) -> set[tuple[str, str]]:
    """(module, enclosing top-level function) of every ``os.umask`` call under ``root``."""
    found = set()
    for name, path in _modules(root).items():
        for top in ast.parse(path.read_text(encoding="utf-8")).body:
            for node in ast.walk(top):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "umask":
                    found.add((name, getattr(top, "name", "<module>")))
    return found


def test_the_umask_is_set_only_where_a_process_starts() -> None:
    """A thread that narrows the umask around a bind narrows every file another thread
    creates meanwhile (an askpass program made 0600 could not run): sockets are made
    private with ``bind_private`` instead."""
    assert umask_calls() <= UMASK_SETTERS


def test_the_umask_finder_finds_a_call_in_a_method(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import os\nclass S:\n    def start(self):\n"
                                  "        old = os.umask(0o177)\n")
    assert umask_calls(package) == {("pkg.a", "S")}


# -- objects own their state ------------------------------------------------------------------

#: Module-level state that stays, and why. Constants (never mutated) and pure memoisation
#: (functools.cache on a pure function) need no entry; a registry or cache belongs to the
#: object whose lifetime it shares (the engine, a store, a supervisor), passed explicitly.
MODULE_STATE_ALLOWED = {
    **dict.fromkeys(
        [("sshwrap.api.tunnel", "_numbers"), ("sshwrap.api.tunnel", "_running"),
         ("sshwrap.api.tunnel", "_hooks"), ("sshwrap.api.program", "stores"),
         ("sshwrap.api.program", "ready")],
        "the Python API's: its tunnels and calls belong to the calling program"),
    ("sshwrap.runtime.system.identity", "_memo"):
        "one thread's memo within one `with memoized()` block, emptied when it closes",
}
#: Calls that make an object holding state (a container is state only once it is mutated).
STATEFUL = {f"threading.{n}" for n in ("Lock", "RLock", "local", "Event", "Condition",
                                       "Semaphore", "BoundedSemaphore", "Barrier")} | {
    "itertools.count", "itertools.cycle", "weakref.WeakSet", "weakref.WeakValueDictionary",
    "weakref.WeakKeyDictionary", "queue.Queue", "queue.SimpleQueue", "random.Random"}
CONTAINERS = {"dict", "list", "set", "bytearray", "collections.deque", "collections.Counter",
              "collections.defaultdict", "collections.OrderedDict"}
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update",
            "setdefault", "add", "discard", "appendleft", "popleft", "sort", "reverse",
            "__setitem__", "__delitem__"}


def _imported(tree: ast.Module, package: str) -> dict[str, str]:
    """Each top-level name an import binds -> what it names, dotted (relative made absolute)."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:  # "import a.b" binds a; "import a.b as c" binds a.b
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.update({a.asname or a.name: f"{base}.{a.name}" for a in node.names})
    return names


def _dotted(node: ast.expr, imported: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return imported.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, imported)
        return f"{base}.{node.attr}" if base else None
    return None


def _mutable_classes(modules: dict[str, Path]) -> set[str]:
    """Classes of the package whose instances hold state: neither frozen dataclasses, enums,
    named tuples, protocols nor exceptions."""
    found = set()
    for name, path in modules.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.ClassDef):
                continue
            marks = {ast.unparse(b).rpartition(".")[2] for b in node.bases} | {
                kw.arg for d in node.decorator_list if isinstance(d, ast.Call)
                for kw in d.keywords if isinstance(kw.value, ast.Constant) and kw.value.value}
            if not marks & {"frozen", "Enum", "StrEnum", "IntEnum", "NamedTuple", "Protocol",
                            "Exception", "OSError", "SshwrapError", "TypedDict"}:
                found.add(f"{name}.{node.name}")
    return found


def _mutated(node: ast.AST) -> ast.expr | None:
    """What ``node`` changes in place: ``X.append(...)``, ``X[k] = v``, ``del X[k]``..."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in MUTATORS:
        return node.func.value
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        stores = node.targets if not isinstance(node, ast.AugAssign) else [node.target]
        return next((t.value for t in stores if isinstance(t, ast.Subscript)), None)
    return None


def module_state(root: Path = PACKAGE) -> dict[tuple[str, str], str]:
    """(module, name) -> what makes it state: a ``global`` statement, a module-level object
    that holds state, or a module-level container mutated (in its module, or through an
    import of it in another)."""
    modules = _modules(root)
    mutable = _mutable_classes(modules)
    found: dict[tuple[str, str], str] = {}
    trees, names, containers = {}, {}, {}
    for name, path in modules.items():
        tree = trees[name] = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = names[name] = _imported(tree, package) | {
            n.name: f"{name}.{n.name}" for n in tree.body if isinstance(n, ast.ClassDef)}
        mine = containers[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                found.update({(name, n): "set with `global`" for n in node.names})
        for node in tree.body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            callee = _dotted(value.func, imported) if isinstance(value, ast.Call) else None
            for target in (t.id for t in targets if isinstance(t, ast.Name)):
                if callee in STATEFUL or callee in mutable:
                    found[(name, target)] = f"a module-level {callee}"
                elif callee in CONTAINERS or isinstance(value, (
                        ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
                    mine.add(target)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            held = _mutated(node)
            if isinstance(held, ast.Name) and held.id in containers[name]:
                found[(name, held.id)] = "a module-level container mutated"
                continue
            owner, _, attr = (_dotted(held, names[name]) or "").rpartition(".")
            if attr in containers.get(owner, ()):
                found[(owner, attr)] = f"a module-level container mutated by {name}"
    return found


def test_objects_own_their_state() -> None:
    """No ``global`` statement, no module-level lock, counter, registry or cache outside
    the short list above, and nothing on that list that is gone."""
    found = module_state()
    assert {key: why for key, why in found.items() if key not in MODULE_STATE_ALLOWED} == {}
    assert [key for key in MODULE_STATE_ALLOWED if key not in found] == []


def test_the_state_finder_finds_state(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "import functools\nimport threading\nfrom threading import Lock\n"
        "from dataclasses import dataclass\n"
        "TABLE = {'a': 1}\nSEEN = {}\n_last = None\n_lock = Lock()\n_memo = threading.local()\n"
        "class Keeper:\n    pass\n"
        "@dataclass(frozen=True)\nclass Point:\n    x: int\n"
        "KEEPER = Keeper()\nORIGIN = Point(0)\n"
        "def note(k):\n    global _last\n    _last = k\n    SEEN[k] = TABLE['a']\n"
        "@functools.cache\ndef pure(n):\n    return n * 2\n")
    (package / "b.py").write_text("from pkg.a import Keeper\nOTHER = Keeper()\n"
                                  "ITEMS = []\ndef f():\n    ITEMS.append(1)\n"
                                  "NAMES = ['x']\nPLAIN = []\n")
    (package / "c.py").write_text("from pkg import b\nfrom pkg.b import PLAIN\n"
                                  "def g():\n    b.NAMES.sort()\n    PLAIN[0] = 2\n")
    assert set(module_state(package)) == {
        ("pkg.a", "_last"), ("pkg.a", "SEEN"), ("pkg.a", "_lock"), ("pkg.a", "_memo"),
        ("pkg.a", "KEEPER"), ("pkg.b", "OTHER"), ("pkg.b", "ITEMS"), ("pkg.b", "NAMES"),
        ("pkg.b", "PLAIN")}
