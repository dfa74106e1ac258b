"""Property tests of plan files and target files: any JSON / TOML tree loads or gives one EdgeqError line.

A plan that loads must also survive what `compile --plan` does next with it (check_against the
model, refresh_plan, the plan's rewritten tensors decoded): accepted means usable.
"""

from __future__ import annotations

import copy
import json
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeq.frontend import load
from edgeq.quant.data import load_dataset
from edgeq.quant.mixed import QuantOptions, build_mixed_plan, refresh_plan
from edgeq.quant.plan import QuantPlan
from edgeq.quant.simulate import plan_graph
from edgeq.target import TARGET_MODULES, parse_spec
from tests.models import small_cnn, small_cnn_data
from tests.properties import FAST, SLOW, returns_or_one_line_error

ROOT = Path(__file__).resolve().parents[2]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
# Values an editor's slip makes: an integer written as a float, a number as text, far out of range.
NEAR = st.sampled_from([0, -1, 1, 2.0, 8.0, 0.5, -0.0, 1e39, 10**30, float("nan"), float("inf"), "8", "", [], {}, [1.0], [[]]])
JSON = st.recursive(st.one_of(SCALARS, NEAR), lambda c: st.one_of(st.lists(c, max_size=3),
                                                                  st.dictionaries(st.text(max_size=6), c, max_size=3)),
                    max_leaves=6)


def containers(tree, path=()):
    """Paths of every dict and list in the tree."""
    if isinstance(tree, dict | list):
        yield path
        for k, v in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
            yield from containers(v, (*path, k))


@st.composite
def mutated(draw, tree, values=JSON):
    """The tree with 1..3 edits: a value replaced, a key deleted, or a key / item added."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(containers(tree))
        if not paths:
            break
        node = tree
        for k in draw(st.sampled_from(paths)):
            node = node[k]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"] if keys else ["add"]))
        if action == "add":
            if isinstance(node, dict):
                node[draw(st.one_of(st.sampled_from(["bits", "scale", "axis", "x"]), st.text(max_size=4)))] = draw(values)
            else:
                node.append(draw(values))
        else:
            key = draw(st.sampled_from(keys))
            if action == "delete":
                del node[key]
            else:
                node[key] = draw(values)
    return tree


@pytest.fixture(scope="module")
def graph():
    return load(small_cnn())


def real_plan(graph) -> dict:
    """A plan `edgeq plan` would write for the small CNN, GPTQ-rounded so it has a tensors section."""
    calib = load_dataset({"input": small_cnn_data(16)}, graph)
    plan = build_mixed_plan(graph, calib, None, [2, 3, 4, 5, 6, 7, 8], QuantOptions(act_bits=8, rounding="gptq"))
    return json.loads(plan.to_json())


PLAN = real_plan(load(small_cnn()))


def load_then_use(graph, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.json"
        path.write_text(text, errors="surrogatepass")
        plan = returns_or_one_line_error(QuantPlan.load, path)
        if plan is not None:  # what compile --plan does next; its errors are one line too
            returns_or_one_line_error(lambda: (plan.check_against(graph, str(path)), refresh_plan(graph, plan),
                                               plan_graph(graph, plan)))


def edited(section: str, name: str, key: str, value=None, delete: bool = False) -> dict:
    tree = copy.deepcopy(PLAN)
    if delete:
        del tree[section][name][key]
    else:
        tree[section][name][key] = value
    return tree


@SLOW
@given(mutated(PLAN))
# The tensors section was not checked at load; compile decoded it and crashed (found by generation):
@example(edited("tensors", "dw.w", "b64", None))  # TypeError in base64
@example(edited("tensors", "dw.w", "b64", delete=True))  # KeyError 'b64'
@example(edited("tensors", "dw.w", "shape", [1, 3, 3]))  # ValueError: cannot reshape
@example(edited("tensors", "dw.w", "shape", [8.0, 1, 3, 3]))  # JSON Schema's integer took 8.0; reshape did not
@example(edited("activations", "c1", "bits", 8.0))
def test_mutated_plan(graph, tree):
    load_then_use(graph, json.dumps(tree))


@FAST
@given(st.one_of(JSON, st.fixed_dictionaries({"version": st.just(1), "model_sha256": st.text(max_size=4)},
                                              optional={k: JSON for k in ("weights", "activations", "tensors", "mode", "notes")})))
def test_json_tree_plan(graph, tree):
    load_then_use(graph, json.dumps(tree))


@FAST
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_plan_text(graph, text):
    load_then_use(graph, text)


TARGET_FILES = {name: tomllib.loads((ROOT / "targets" / f"{name}.toml").read_text()) for name in TARGET_MODULES}
# TOML holds no null; its values are strings, integers, floats, booleans, dates, arrays and tables.
TOML = st.recursive(st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=6), st.dates()),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
                    max_leaves=6)


@FAST
@given(st.sampled_from(sorted(TARGET_FILES)).flatmap(lambda n: st.tuples(st.just(n), mutated(TARGET_FILES[n], TOML))))
@example(("ort", {**TARGET_FILES["ort"], "options": {"reduce_range": False}}))  # AttributeError: an option not a table
def test_target_file(named):
    name, data = named
    returns_or_one_line_error(parse_spec, name, data, f"targets/{name}.toml")
