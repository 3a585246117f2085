"""The package's shape: imports only go down, the CLIs load only what they use, and a command runs
from any folder, the one that holds a clone of this repository included."""
import ast
import os
import pathlib
import subprocess
import sys

import tinyvgg

PACKAGE = pathlib.Path(tinyvgg.__file__).resolve().parent
CORE = {"errors", "backend", "init", "im2col", "layers", "fastconv", "models", "optim", "gradcheck"}
COMMANDS = {"train", "predict", "evaluate", "doctor", "import_keras", "import_weights", "export_onnx", "assignments",
            "gradcheck", "samples"}


def module_name(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """The tinyvgg modules that ``path`` imports (relative or absolute), as names inside the package."""
    here = module_name(path).split(".") if module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                names = [".".join(target + [alias.name]) for alias in node.names]
                found |= {n for n in names if (PACKAGE / (n.replace(".", "/") + ".py")).exists()
                          or (PACKAGE / n.replace(".", "/")).is_dir()} or {".".join(target)}
            elif node.module and node.module.startswith("tinyvgg"):
                found.add(node.module[len("tinyvgg."):] if node.module != "tinyvgg" else "")
        elif isinstance(node, ast.Import):
            found |= {a.name[len("tinyvgg."):] for a in node.names if a.name.startswith("tinyvgg.")}
    return {name for name in found if name}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def test_the_import_graph_has_no_loop():
    order, state = [], {}

    def visit(module, path):
        if state.get(module) == "open":
            raise AssertionError(f"import loop: {' -> '.join(path + [module])}")
        if state.get(module) is None:
            state[module] = "open"
            for target in GRAPH.get(module, ()):
                visit(target, path + [module])
            state[module] = "done"
            order.append(module)
    for module in GRAPH:
        visit(module, [])
    assert len(order) == len(GRAPH)


def test_low_modules_never_import_high_ones():
    assert GRAPH["errors"] == set()  # the ground floor
    assert GRAPH["cli"] == {"errors"}  # every command's error handling loads nothing else
    assert GRAPH["layers"] <= {"backend", "im2col", "init", "errors"}  # no branch to another kernel
    for module in CORE:
        high = {t for t in GRAPH[module] if t.split(".")[0] not in CORE}
        assert not high, f"{module} (core) imports {high}"
    for module, targets in GRAPH.items():
        if module.split(".")[0] == "data":
            assert all(t.split(".")[0] in CORE | {"data"} for t in targets), (module, targets)
        commands = {t for t in targets if t in COMMANDS}
        assert not commands, f"{module} imports the command-line module(s) {commands}"


PARALLEL = {"training.parallel", "training.world", "training.agreement", "training.sync_bn"}


def test_the_training_loop_knows_nothing_of_ranks_and_nothing_points_up_at_it():
    """The loop is given a step; the step (local or data-parallel) never imports the loop, and the
    parallel modules import no command."""
    assert not GRAPH["training.loop"] & PARALLEL, GRAPH["training.loop"]
    assert "training.loop" not in GRAPH["training.step"] | set().union(*(GRAPH[m] for m in PARALLEL))
    assert GRAPH["training.step"] <= {"layers"}
    for module, targets in GRAPH.items():
        if module.split(".")[0] in CORE | {"data", "classroom"}:
            assert not {t for t in targets if t.split(".")[0] == "training"}, (module, targets)


def test_no_object_of_a_run_holds_a_reference_to_its_trainer():
    """Everything reachable from a trainer's step, model, optimizer and callbacks, through attributes,
    lists, tuples and dicts: the trainer itself is not among it (callbacks and steps get it, if at all,
    as an argument)."""
    import numpy as np

    from tinyvgg.models import build_model
    from tinyvgg.optim import FastSGD
    from tinyvgg.training import BestCheckpoint, EarlyStopping, LocalStep, Trainer
    from tinyvgg.training.parallel import DataParallelStep, prepare_model_for_ranks
    from tinyvgg.training.world import World
    rng = np.random.default_rng(0)
    model = build_model(dict(depth="vgg11", num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8,
                             dropout=0.5, include_top=True, batch_norm=True), rng=rng)
    step = DataParallelStep(LocalStep(prepare_model_for_ranks(model, World(), sync_batch_norm=True)), World(), 2)
    trainer = Trainer(model, FastSGD(model.named_params(), lr=0.1), rng, step=step, progress=False,
                      callbacks=[EarlyStopping(3), BestCheckpoint("/nonexistent/best.npz")])
    trainer.train_step(rng.standard_normal((4, 32, 32, 3)).astype(np.float32), np.array([0, 1, 2, 0]))
    seen, queue = set(), [trainer.step, trainer.model, trainer.optimizer, *trainer.callbacks]
    while queue:
        item = queue.pop()
        if id(item) in seen or isinstance(item, (np.ndarray, np.random.Generator, str, int, float, type)):
            continue
        seen.add(id(item))
        assert item is not trainer, "an object of the run holds the trainer"
        if isinstance(item, dict):
            queue += list(item.values())
        elif isinstance(item, (list, tuple)):
            queue += list(item)
        elif hasattr(item, "__dict__"):
            queue += list(vars(item).values())


def test_no_module_shares_a_name_with_a_folder_the_tools_write():
    names = {p.stem for p in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert not names & {"runs", "results", "lessons", "benchmarks", "tests"}


def test_commands_run_from_the_folder_that_holds_a_clone(tmp_path):
    # A clone named tinyvgg, beside the user, with the folders people make in it: run from its parent, Python
    # finds ./tinyvgg before the installed package; with the package under src/ nothing there can shadow it.
    clone = tmp_path / "tinyvgg"
    for folder in ("runs/vgg16-1", "data/cats", "layers", "tinyvgg", "classroom", "src"):
        (clone / folder).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for command in ("predict", "train", "evaluate", "assignments", "doctor", "import_keras", "import_weights",
                    "export_onnx"):
        result = subprocess.run([sys.executable, "-m", f"tinyvgg.{command}", "--help"], cwd=tmp_path,
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0 and "usage" in result.stdout.lower(), (command, result.stderr[-600:])
