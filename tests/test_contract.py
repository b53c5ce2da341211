"""The stage contract: one config per stage is the source of its CLI defaults, and imports run one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from amari.audit import AuditConfig
from amari.cli import COMMANDS, build_parser
from amari.compare import CompareConfig
from amari.config.options import cli_fields, defaults_of, from_args
from amari.mine import MineConfig
from amari.prepare import PrepareConfig
from amari.report import ReportConfig
from amari.score import ScoreConfig
from amari.select import SelectConfig
from amari.serve import ServeConfig
from amari.train import TrainConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "amari"
STAGES = (
    "generate",
    "enhance",
    "mine",
    "audit",
    "refine",
    "select",
    "prepare",
    "train",
    "evaluate",
    "report",
    "score",
    "compare",
    "serve",
)

# Each command with a config of its own, and the fewest arguments it runs with.
COMMAND_CONFIGS = {
    "mine": (MineConfig, ["--workspace", "ws"]),
    "compare": (CompareConfig, ["known", "unknown"]),
    "score": (ScoreConfig, ["a.png", "--group", "g"]),
    "prepare": (PrepareConfig, ["src", "dst"]),
    "select": (SelectConfig, ["--workspace", "ws", "--out", "out"]),
    "train": (TrainConfig, ["data", "--out", "out"]),
    "report": (ReportConfig, ["results"]),
    "audit": (AuditConfig, ["--workspace", "ws"]),
    "serve": (ServeConfig, ["--workspace", "ws"]),
}


def _subparser(parser, name):
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


@pytest.mark.parametrize("command", sorted(COMMAND_CONFIGS))
def test_help_defaults_are_the_config_defaults(command):
    cls, required = COMMAND_CONFIGS[command]
    parser = build_parser(only=command)
    args = parser.parse_args([command, *required])
    defaults = defaults_of(cls)
    assert defaults, command
    for dest, default in defaults.items():
        value = getattr(args, dest)
        # A repeatable option starts empty (None) and then means the config's default.
        assert value == default or value is None, (command, dest, value, default)
    # The help text names each default, and it is the dataclass's.
    text = " ".join(_subparser(parser, command).format_help().split())
    for dest, item, _hint, default in cli_fields(cls):
        if dest not in defaults:
            continue  # a required option
        shown = default not in (None, False, (), "") and item.metadata.get("show_default", True)
        if shown and not str(item.metadata.get("flag") or "").startswith("--no-"):
            described = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
            assert f"(default {described})" in text, (command, dest)
    # And the config built from those arguments holds the same values.
    fixed = {"prompt": "x"} if cls is MineConfig else {}  # the diffusers source needs a prompt
    config = from_args(cls, args, **fixed)
    for dest, default in defaults.items():
        if dest in fixed:
            continue
        owner, _, name = dest.rpartition(".")
        value = getattr(getattr(config, owner) if owner else config, name)
        assert value == default, (command, dest)


def test_every_command_is_listed_and_help_builds():
    parser = build_parser()
    assert set(COMMANDS) <= set(_subparser(parser, "mine").prog.split()[:1] + list(COMMANDS))
    for name in COMMANDS:
        assert _subparser(parser, name).format_help()


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in ("amari.cli", "amari.__main__") or parts[:2] == ["amari", "commands"]:
        return "commands"
    if parts[:2] in (["amari", "study"], ["amari", "testing"], ["amari", "doctor"]) or module == "amari.study.demo":
        return "study"  # amari.testing builds what tests and benchmarks run stages on; amari.doctor times them
    if len(parts) > 1 and parts[1] in STAGES:
        return "stage"
    return "core"


def _module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, names) of every import in a file, those inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


RANK = {"core": 0, "stage": 1, "study": 2, "commands": 3}


def test_imports_run_one_way_and_stages_use_each_others_public_names_only():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        layer = _layer(module)
        for imported, names in _imports(path):
            if not imported.startswith("amari"):
                continue
            target = _layer(imported)
            if RANK[target] > RANK[layer]:
                problems.append(f"{module} ({layer}) imports {imported} ({target})")
            if any(name.startswith("_") and not name.startswith("__") for name in names):
                problems.append(f"{module} imports private names {names} from {imported}")
            own_stage = module.split(".")[1] if layer == "stage" else None
            other_stage = target == "stage" and imported.split(".")[1] != own_stage
            if layer == "stage" and other_stage and imported.count(".") > 1:
                problems.append(f"{module} reaches into {imported}; import from the stage's package")
    assert problems == []


def test_no_module_is_longer_than_450_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_folder_and_file_names_are_defined_once():
    """The layout's names appear as string literals in amari.storage.layout alone."""
    names = (
        "sim-group",
        "almost-sim",
        "unknown-person",
        "archive.csv",
        "metrics.csv",
        "mine.sqlite",
        "results.csv",
        "learned_embeds.safetensors",
        "best.json",
        "run.json",
        "validation.csv",
    )
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "layout.py":
            continue
        code = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(SRC)}: {node.value}")
    assert found == []


def test_the_version_is_written_once():
    from amari.config.settings import read_toml

    project = read_toml(SRC.parents[1] / "pyproject.toml")["project"]
    assert "version" not in project and project["dynamic"] == ["version"]


# The ground floor: the entry point and the few modules everything uses; the core's parts are packages.
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py", "errors.py", "lazy.py", "progress.py"}
CORE_PACKAGES = {"config", "execution", "faces", "models", "provenance", "storage", "testing"}


def test_the_ground_floor_holds_packages_not_loose_modules():
    loose = {path.name for path in SRC.glob("*.py")}
    assert loose == TOP_LEVEL
    packages = {path.parent.name for path in SRC.glob("*/__init__.py")}
    assert packages >= CORE_PACKAGES
    assert set(STAGES) <= packages


def _module_level_imports(path: Path):
    """Modules a file depends on as a whole: its top-level imports, those under `if TYPE_CHECKING:`
    included (a circle of types is still a circle), those inside functions not (deferred on purpose)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            body.extend(node.body)
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield f"{node.module}.{alias.name}"  # a submodule, when the name is one
            yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


def test_no_module_imports_itself_in_a_circle():
    modules = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph = {
        name: {imported for imported in _module_level_imports(path) if imported in modules and imported != name}
        for name, path in modules.items()
    }
    # A package's `__init__` runs before its modules, so importing `amari.x.y` imports `amari.x` first.
    for name in graph:
        parent = name.rpartition(".")[0]
        graph[name] = {target for target in graph[name] if target != parent}
    cycles, done, stack = [], set(), []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for target in sorted(graph[node]):
            visit(target)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert cycles == []


def test_no_package_exports_a_name_that_one_of_its_modules_has():
    """Importing `amari.x.run` sets the package's attribute `run` to that module, hiding the function."""
    clashes = []
    for init in SRC.rglob("__init__.py"):
        modules = {path.stem for path in init.parent.glob("*.py")} | {
            path.parent.name for path in init.parent.glob("*/__init__.py")
        }
        tree = ast.parse(init.read_text(encoding="utf-8"))
        exported = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):  # lazy_exports' {"name": "module:attribute"}
                exported |= {key.value for key in node.keys if isinstance(key, ast.Constant)}
        clashes += [f"{init.parent.name}.{name}" for name in sorted(exported & modules)]
    assert clashes == []
