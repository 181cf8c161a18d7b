"""Imports flow one way: a module of ``companion`` imports only from lower floors.

Every import is read from the source (AST), in every form: ``import companion.x``, ``from companion import x``,
``from companion.x import y``, ``from . import x``, ``from .x import y``, ``from ..x import y``, imports inside
functions, and ``importlib.import_module("companion.x")``; the recipe table's functions count as imports of
the recipes package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "companion"

#: The floor table. A module imports only from lower floors, with these exceptions: inside floors 1 and 2
#: modules may import each other (no cycles); a chapter module of floor 3 may import an earlier chapter's
#: module and ``metrics``; ``metrics`` may import ``train`` but no chapter module; leaves import anything and nothing in the
#: package (but another leaf) imports a leaf; floors 6 and 7 span every model (``generation``, then ``scoreboard``). A package's submodules count as the package's entry:
#: ``companion.images.colour`` and ``companion.train.loop`` are ``images`` and ``train``.
FLOORS: dict[str, int] = {
    **dict.fromkeys(["profile", "_checks", "batching", "download", "checkpoints", "ops", "losses", "images", "augment", "init", "optim",
                     "estimators", "diffusion"], 1),
    **dict.fromkeys(["data", "toys", "layers", "train"], 2),
    **dict.fromkeys(["mlp", "cnn", "vgg", "resnet", "vit", "autoencoder", "vae", "vae_variants", "vqvae", "evaluation", "gan",
                     "stable_gan", "cond_gan", "flows", "score", "unet", "ddpm", "flow_matching", "distill", "speedrun",
                     "metrics", "latent_diffusion", "dit", "text2image"], 3),
    "recipes": 4,
    **dict.fromkeys(["hub", "models"], 5),
    "generation": 6,
    "scoreboard": 7,
}
#: What ``companion/__init__.py`` may name: only, lazily, the top-level function ``companion.generate``.
PACKAGE_LAZY = {"companion.generation"}
LEAVES = {"plot", "widgets", "conv_viz", "exercises", "book"}
#: floor-3 chapter modules in chapter order
CHAPTERS = ["mlp", "cnn", "vgg", "resnet", "vit", "autoencoder", "vae", "vae_variants", "vqvae", "evaluation", "gan",
            "stable_gan", "cond_gan", "unet", "flows", "score", "ddpm", "flow_matching", "distill", "speedrun",
            "latent_diffusion", "dit", "text2image"]
#: floor-2 modules a model module must not import (``layers`` is allowed)
NOT_FOR_MODELS = {"data", "toys", "train"}

def unit(module: str) -> str | None:
    """The floor-table entry of a dotted module name: ``companion.recipes.vaes`` -> ``recipes``."""
    parts = module.split(".")
    if parts[0] != "companion":
        return None
    return parts[1] if len(parts) > 1 else "companion"


def _resolve(module: str, level: int, here: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, here: str, is_package: bool = False, exists=None) -> set[str]:
    """Dotted names of the ``companion`` modules that ``source`` (the module ``here``) imports."""
    exists = exists or (lambda dotted: _module_file(dotted) is not None)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, here, is_package)
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")}
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            name = node.args[0].value
            level = len(name) - len(name.lstrip("."))
            package = next((k.value.value for k in node.keywords
                            if k.arg == "package" and isinstance(k.value, ast.Constant)), None)
            if level and package:
                found.add(_resolve(name.lstrip("."), level, package, True))
            elif level:
                found.add(_resolve(name.lstrip("."), level, here, is_package))
            else:
                found.add(name)
    return {m for m in found if unit(m) is not None and m != here}


def _module_file(dotted: str) -> Path | None:
    rel = Path(*dotted.split(".")[1:])
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def allowed(importer: str, imported: str) -> str | None:
    """``None`` if module ``importer`` may import ``imported`` (floor-table entries), else the rule it breaks."""
    if imported == "companion" or importer == imported:
        return None
    if importer in LEAVES:
        return None
    if imported in LEAVES:
        return f"{importer} imports the leaf {imported}: leaves are imported by notebooks and tests only"
    if importer not in FLOORS:
        return f"{importer} is not in the floor table"
    if imported not in FLOORS:
        return f"{imported} is not in the floor table"
    fi, fj = FLOORS[importer], FLOORS[imported]
    if fi == 3 and importer != "metrics" and imported in NOT_FOR_MODELS:
        return f"the model module {importer} imports {imported} (floor 2 for models is layers only)"
    if fj < fi:
        return None
    if fi == fj and fi in (1, 2):
        return None
    if fi == fj == 3:
        if importer == "metrics":
            return f"metrics imports the chapter module {imported}: metrics stays below every chapter module"
        if imported == "metrics" or (imported in CHAPTERS and importer in CHAPTERS
                                     and CHAPTERS.index(imported) < CHAPTERS.index(importer)):
            return None
        return f"{importer} imports {imported}, a later (or no earlier) chapter's module"
    if importer == "metrics" and imported == "train":
        return None
    return f"{importer} (floor {fi}) imports {imported} (floor {fj})"


def violations(importer_dotted: str, imported_dotted: set[str]) -> list[str]:
    me = unit(importer_dotted)
    out = []
    for m in sorted(imported_dotted):
        why = allowed(me, unit(m))
        if why:
            out.append(f"{importer_dotted} -> {m}: {why}")
    return out


def all_modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def graph() -> dict[str, set[str]]:
    g = {}
    for dotted, path in all_modules().items():
        g[dotted] = imports_of(path.read_text(), dotted, path.name == "__init__.py")
    from companion.recipes import (
        RECIPES,  # the recipe table: its functions are imports of the recipes package
    )

    for r in RECIPES.values():
        g["companion.recipes"] |= {r.build.__module__, r.train.__module__}
    return g


MODULES = sorted(all_modules())


@pytest.fixture(scope="module")
def import_graph():
    return graph()


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_from_lower_floors(module, import_graph):
    assert unit(module) in FLOORS or unit(module) in LEAVES or module == "companion", f"{module}: not in the table"
    if module == "companion":
        assert import_graph[module] <= PACKAGE_LAZY, import_graph[module]
        return
    assert violations(module, import_graph[module]) == []


def test_no_import_cycles_inside_a_floor(import_graph):
    units: dict[str, set[str]] = {}
    for m, deps in import_graph.items():
        if m == "companion":  # its one import is lazy (``companion.generate``), made after the package exists
            continue
        units.setdefault(unit(m), set()).update(unit(d) for d in deps if unit(d) != unit(m))
    state: dict[str, int] = {}

    def visit(u, path):
        state[u] = 1
        for v in units.get(u, ()):
            assert state.get(v) != 1, f"import cycle: {' -> '.join(path + [v])}"
            if v not in state:
                visit(v, path + [v])
        state[u] = 2

    for u in units:
        if u not in state:
            visit(u, [u])


def test_every_import_form_is_seen():
    src = '''
import companion.ops
import torch
from companion import data
from companion.train import fit
from . import losses
from .layers import BatchNorm2d
from ..hub import load_model


def late():
    from .vit import ViT
    import importlib
    importlib.import_module("companion.recipes")
    importlib.import_module(".plot", package="companion")
'''
    assert unit("companion.images.colour") == "images" and unit("companion.train") == "train"
    exists = lambda dotted: dotted in {"companion.data"}  # noqa: E731
    found = imports_of(src, "companion.recipes.vaes", exists=exists)
    assert found == {"companion.ops", "companion", "companion.data", "companion.train", "companion.recipes",
                     "companion.recipes.layers", "companion.hub", "companion.recipes.vit", "companion.plot"}
    found = imports_of("from . import losses\nfrom .layers import X\n", "companion.vae", exists=lambda d: d.count(".") == 1)
    assert found == {"companion", "companion.losses", "companion.layers"}


def test_a_wrong_import_is_caught():
    """A synthetic model module that imports the hub, a later chapter and the training loop fails the check."""
    bad = "from .hub import load_model\nfrom . import vqvae\n\ndef f():\n    from .train import fit\n"
    found = imports_of(bad, "companion.cnn", exists=lambda d: d == "companion.vqvae")
    problems = violations("companion.cnn", found)
    assert len(problems) == 3, problems
    assert any("floor 5" in p for p in problems) and any("later" in p for p in problems)
    assert any("model module cnn imports train" in p for p in problems)
    assert violations("companion.hub", imports_of("import companion.plot\n", "companion.hub"))  # a leaf
    assert violations("companion.data", imports_of(
        'import importlib\nimportlib.import_module("companion.recipes")\n', "companion.data"))
    assert not violations("companion.recipes.vaes", imports_of("from ..vae import VAE\n", "companion.recipes.vaes"))
    assert not violations("companion.metrics", {"companion.train"})
    assert violations("companion.metrics", {"companion.vqvae"})  # metrics stays below the chapter modules
    assert not violations("companion.vqvae", {"companion.metrics"})


def test_import_companion_stays_light(import_graph):
    """``import companion`` loads no submodule; ``companion.generate`` loads its module on first use."""
    import subprocess
    import sys

    assert import_graph["companion"] <= PACKAGE_LAZY
    code = ("import sys, companion; before = sorted(m for m in sys.modules if m.startswith('companion.')); "
            "companion.generate; print(before, 'companion.generation' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True", out
