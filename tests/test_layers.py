"""The package's layers (docs/architecture.md): a module imports only from its own layer or lower ones,
at the top of the file or inside a function alike, and a command module is imported by cli.py alone.

    0 errors, utils   1 data, models, devices   2 config   3 pipeline   4 inference   5 training
    6 serving         7 cli, __init__, __main__
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import petalnet
from conftest import shown

PACKAGE = Path(petalnet.__file__).resolve().parent
LAYERS = {"errors": 0, "utils": 0, "data": 1, "models": 1, "devices": 1, "config": 2, "pipeline": 3,
          "inference": 4, "training": 5, "serving": 6, "cli": 7, "__init__": 7, "__main__": 7}
# The commands' own modules: a sibling that needs what one does imports the module it uses, not the command.
COMMANDS = {"petalnet.inference.predict", "petalnet.inference.evaluate", "petalnet.inference.export",
            "petalnet.inference.label_issues",
            "petalnet.training.train", "petalnet.serving.server"}
COMMAND_PARENTS = ("inference", "training", "serving")


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(name):
    """The layer of a petalnet module name ("petalnet" itself is its __init__)."""
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def imported_modules(tree, name, is_package):
    """(line, petalnet module, the name imported from it or None) for every import anywhere in the tree,
    relative ones resolved; `from X import Y` counts as X.Y when X.Y is a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = any((PACKAGE.parent / Path(*candidate.split("."))).with_suffix(suffix).exists()
                                for suffix in (".py", "")) if candidate.startswith("petalnet") else False
                found.append((node.lineno, candidate, None) if is_module else (node.lineno, base, alias.name))
    return [item for item in found if item[1] == "petalnet" or item[1].startswith("petalnet.")]


def uses_only_the_version(tree):
    """True when every use of the name `petalnet` is `petalnet.__version__` (a constant, not a dependency on
    what __init__ re-exports)."""
    names = [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "petalnet"]
    versions = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "__version__"
                and isinstance(node.value, ast.Name) and node.value.id == "petalnet"]
    return len(names) == len(versions)


def violations(path, source=None):
    """Every import of `path` that goes against the layers: ["file:line imports module (why)", ...]."""
    source = path.read_text() if source is None else source
    tree, name = ast.parse(source, str(path)), module_name(path)
    mine, rel = layer_of(name), path.relative_to(PACKAGE).as_posix()
    found = []
    for line, module, what in imported_modules(tree, name, path.name == "__init__.py"):
        if module == "petalnet" and (what == "__version__" or what is None and uses_only_the_version(tree)):
            continue  # the version string: a constant, not a dependency on what __init__ re-exports
        if layer_of(module) > mine:
            found.append(f"{rel}:{line} imports {module} (layer {layer_of(module)} > {mine})")
        if module in COMMANDS and module != name and name.partition(".")[2].split(".")[0] in COMMAND_PARENTS:
            found.append(f"{rel}:{line} imports the command module {module} (only cli.py does)")
    return found


def package_modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    names = {module_name(path) for path in package_modules()}
    assert all(layer_of(name) is not None for name in names)  # KeyError for a new top-level module
    assert {name.split(".")[1] for name in names if "." in name} | {"__init__"} == set(LAYERS)


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_imports_from_a_higher_layer_or_a_sibling_command(path):
    assert violations(path) == []


def test_the_check_finds_what_it_is_for():
    """The checker itself: imports that break the rules, written as a module of each layer would."""
    def check(relative, source):
        return violations(PACKAGE / relative, source)

    assert check("data/images.py", "def f():\n    from petalnet.config.train import TrainConfig\n") == [
        "data/images.py:2 imports petalnet.config.train (layer 2 > 1)"]
    assert check("pipeline/cache.py", "import petalnet.inference.scoring\n") == [
        "pipeline/cache.py:1 imports petalnet.inference.scoring (layer 4 > 3)"]
    assert check("training/ema.py", "from petalnet import load_classifier\n") == [
        "training/ema.py:1 imports petalnet (layer 7 > 5)"]
    assert check("utils/fileio.py", "from ..devices import settings\n") == [
        "utils/fileio.py:1 imports petalnet.devices.settings (layer 1 > 0)"]
    assert check("serving/client.py", "from petalnet.inference import predict\n") == [
        "serving/client.py:1 imports the command module petalnet.inference.predict (only cli.py does)"]
    assert check("inference/export.py", "from petalnet.inference.evaluate import new_folder\n") == [
        "inference/export.py:1 imports the command module petalnet.inference.evaluate (only cli.py does)"]
    assert check("cli.py", "from petalnet.training.train import train\nimport petalnet\n") == []
    assert check("inference/scoring.py", "from petalnet.devices import distributed\nimport torch\n") == []
    assert check("training/train.py", "import petalnet\nv = petalnet.__version__\n") == []
    assert check("serving/app.py", "from petalnet import __version__\n") == []
    assert check("serving/app.py", "import petalnet\nf = petalnet.load_classifier\n") == [
        "serving/app.py:1 imports petalnet (layer 7 > 6)"]


def imported_after(code):
    """The heavy libraries a fresh interpreter has imported after running `code`."""
    done = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in "
                           "sys.modules} & {'torch', 'torchvision', 'matplotlib'}))"], capture_output=True, text=True)
    assert done.returncode == 0, shown(done)
    return done.stdout.strip().splitlines()[-1]


def test_the_command_line_and_the_settings_load_without_torch():
    """`petalnet --help` waits for no PyTorch: cli.py, config/, devices/options.py, models/names.py and the
    inference settings are torch-free (docs/architecture.md, lazy imports); so are the inference contract and
    the Classifier above it, which an .onnx file uses without torch."""
    code = ("import petalnet.cli, petalnet.config.train, petalnet.config.sizes, petalnet.devices.options\n"
            "import petalnet.inference.settings, petalnet.inference.backend, petalnet.inference.classifier\n"
            "petalnet.cli.build_parser().format_help()")
    assert imported_after(code) == "[]"


@pytest.mark.slow
def test_predict_imports_no_torchvision(trained_run, made_photos):
    """torchvision costs 1-2.5 s of start-up, which predicting one photo should not pay (classifier.py)."""
    photo = sorted(made_photos.rglob("*.jpg"))[0]
    code = f"import petalnet\npetalnet.load_classifier({str(trained_run)!r}, 'cpu').predict([{str(photo)!r}])"
    assert imported_after(code) == "['torch']"
