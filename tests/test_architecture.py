"""The layers of docs/architecture.md, read from the imports: no cycle, and each layer imports only below it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "dps"

# What each top-level part may import from dps (besides itself); every import is counted, lazy ones too.
ALLOWED = {
    "dps._core": set(),
    "dps.outcomes": set(),
    "dps.config": set(),
    "dps.logs": {"dps.outcomes", "dps.config"},
    "dps.tasks": set(),
    "dps.models": set(),
    "dps.policies": {"dps._core", "dps.outcomes"},
    "dps.replay": {"dps._core", "dps.outcomes", "dps.policies", "dps.logs", "dps.config"},
    "dps.train": {"dps.outcomes", "dps.policies", "dps.logs", "dps.tasks", "dps.models", "dps.config"},
    "dps.integrations": {"dps.outcomes", "dps.policies", "dps.logs", "dps.tasks", "dps.models"},
    "dps.cli": {"dps._core", "dps.replay", "dps.train", "dps.integrations", "dps.tasks"},
    "dps": {"dps._core", "dps.policies"},
}


def modules() -> dict[str, Path]:
    out = {"dps._core": PACKAGE / "_core.pyi"}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "dps"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "dps":
                deps |= {owner(f"{node.module}.{a.name}") for a in node.names}
        graph[name] = deps - {None, name}
    return graph


def part(module: str) -> str:
    top = ".".join(module.split(".")[:2])
    return top if top in ALLOWED else "dps"


def test_no_import_cycle_even_through_lazy_imports():
    graph = import_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(node) :] + [node]))
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_each_layer_imports_only_what_it_may():
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        for dep in deps
        if part(dep) != part(mod) and part(dep) not in ALLOWED[part(mod)]
    ]
    assert not bad, "\n".join(sorted(bad))


def test_every_torch_load_refuses_pickled_objects():
    """A checkpoint or cache from elsewhere must not run code: every torch.load passes weights_only=True."""
    root = PACKAGE.parents[1]
    calls = []
    for folder in ("python", "examples", "scripts", "studies", "benchmarks"):
        for f in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                    safe = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                    calls.append((f"{f.relative_to(root)}:{node.lineno}", safe))
    assert calls, "no torch.load found: the walk is looking in the wrong place"
    assert all(safe for _, safe in calls), [where for where, safe in calls if not safe]


def test_the_tiny_models_are_built_in_one_module():
    """The trainer and the integrations share dps.models.tiny: no other module constructs a model from a config."""
    builders = {"Qwen2ForCausalLM", "Qwen2VLForConditionalGeneration", "Qwen2Config", "Qwen2VLConfig"}
    found = []
    for f in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in builders:
                found.append(str(f.relative_to(PACKAGE)))
    assert found, "no model construction found: the walk is looking in the wrong place"
    assert set(found) == {"models/tiny.py"}, sorted(set(found))
