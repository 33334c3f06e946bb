"""The compiled plan: order, slots, last uses, levels, mode and when, devices, selections."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from twinpipe.dag._load import load_spec
from twinpipe.dag._plan import Plan, PlanError, compile_plan, step_seed_key
from twinpipe.dag._resolved import ValidPipeline
from twinpipe.dag._validate import validate

HEAD = """
name: p
inputs:
  image: {datatype: BYTES, shape: [-1]}
"""


def _valid(tmp_path: Path, text: str) -> ValidPipeline:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return validate(load_spec(path))


def _names(plan: Plan) -> list[str]:
    return [s.name for s in plan.steps]


CHAIN = HEAD + """
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 8, 8], from: chw.image}
steps:
  chw:
    op: image.layout
    inputs: {image: norm.image}
  decode:
    op: image.decode
    inputs: {data: image}
  norm:
    op: image.normalize
    inputs: {image: crop.image}
    params: {mean: 0.5, std: 0.25}
  crop:
    op: image.center_crop
    inputs: {image: decode.image}
    params: {size: 8}
"""


def test_chain_is_in_dependency_order_with_flat_slots_and_releases(tmp_path: Path) -> None:
    plan = compile_plan(_valid(tmp_path, CHAIN), mode="serve")
    assert _names(plan) == ["decode", "crop", "norm", "chw"]
    assert plan.slot_names == ("image", "decode.image", "crop.image", "norm.image", "chw.image")
    assert plan.inputs == (("image", 0),)
    assert plan.outputs == (("pixels", (4,)),)
    crop = plan.steps[1]
    assert crop.pairs == (("image", 1),) and crop.outputs == (("image", 2),)
    # each intermediate is released by its last reader; the output never is
    assert [s.release for s in plan.steps] == [(0,), (1,), (2,), (3,)]
    assert 4 in plan.keep and plan.uses == (1, 1, 1, 1, 0)
    assert [s.level for s in plan.steps] == [0, 1, 2, 3]
    assert plan.width == 1
    assert crop.deps == (0,) and crop.dependents == (2,)
    assert all(s.simple and not s.takes_rng for s in plan.steps)


BRANCHES = HEAD + """
outputs:
  left: {datatype: UINT8, shape: [-1, -1, -1, 3], from: a.image}
  right: {datatype: UINT8, shape: [-1, -1, -1, 3], from: b2.image}
steps:
  decode:
    op: image.decode
    inputs: {data: image}
  a:
    op: image.flip
    inputs: {image: decode.image}
  b:
    op: image.flip
    inputs: {image: decode.image}
    params: {axis: vertical}
  b2:
    op: image.rotate90
    inputs: {image: b.image}
"""


def test_independent_steps_share_a_level(tmp_path: Path) -> None:
    plan = compile_plan(_valid(tmp_path, BRANCHES), mode="serve")
    assert _names(plan) == ["decode", "a", "b", "b2"]
    assert [[plan.steps[i].name for i in level] for level in plan.levels] == [["decode"], ["a", "b"], ["b2"]]
    assert plan.width == 2
    assert plan.steps[0].dependents == (1, 2)
    # decode.image has two readers: released after the later one in plan order
    assert plan.uses[plan.slot_names.index("decode.image")] == 2
    assert plan.slot_names.index("decode.image") in plan.steps[2].release


def test_only_the_steps_an_output_needs_are_planned(tmp_path: Path) -> None:
    valid = _valid(tmp_path, BRANCHES)
    assert _names(compile_plan(valid, mode="serve", outputs=["left"])) == ["decode", "a"]
    plan = compile_plan(valid, mode="serve", outputs=["b.image"])  # a step output, not a pipeline output
    assert _names(plan) == ["decode", "b"]
    assert plan.outputs == (("b.image", (plan.slot_names.index("b.image"),)),)


def test_a_cut_input_replaces_its_producer(tmp_path: Path) -> None:
    plan = compile_plan(_valid(tmp_path, BRANCHES), mode="serve", outputs=["right"], inputs=["decode.image"])
    assert _names(plan) == ["b", "b2"]
    assert plan.inputs == (("decode.image", 0),)
    assert plan.known_inputs == {"image", "decode.image"}


def test_unknown_outputs_and_cuts_are_plan_errors(tmp_path: Path) -> None:
    valid = _valid(tmp_path, BRANCHES)
    with pytest.raises(PlanError, match=r"no output 'nope'.*left, right.*decode\.image"):
        compile_plan(valid, mode="serve", outputs=["nope"])
    with pytest.raises(PlanError, match="cannot take 'a.nope' as an input"):
        compile_plan(valid, mode="serve", inputs=["a.nope"])
    with pytest.raises(PlanError, match="mode must be"):
        compile_plan(valid, mode="eval")  # type: ignore[arg-type]


MODES = HEAD + """
outputs:
  pixels: {datatype: UINT8, shape: [-1, 8, 8, 3], from: crop.image}
steps:
  decode:
    op: image.decode
    inputs: {data: image}
  flip:
    op: image.random_flip
    mode: train
    inputs: {image: decode.image}
  crop:
    op: image.center_crop
    inputs: {image: {from: flip.image, default: decode.image}}
    params: {size: 8}
"""


def test_mode_excluded_steps_fall_back_to_defaults_at_compile_time(tmp_path: Path) -> None:
    valid = _valid(tmp_path, MODES)
    serve = compile_plan(valid, mode="serve")
    assert _names(serve) == ["decode", "crop"] and serve.excluded == ("flip",)
    assert serve.steps[1].arg_slots == ((serve.slot_names.index("decode.image"),),)
    train = compile_plan(valid, mode="train")
    assert _names(train) == ["decode", "flip", "crop"] and train.excluded == ()
    # flip always runs in train mode, so the default can never be read: one candidate
    assert train.steps[2].arg_slots == ((train.slot_names.index("flip.image"),),)
    assert train.steps[1].takes_rng and train.any_random and not serve.any_random


def test_an_output_of_an_excluded_step_has_no_candidates(tmp_path: Path) -> None:
    plan = compile_plan(_valid(tmp_path, MODES), mode="serve", outputs=["flip.image"])
    assert plan.steps == () and plan.outputs == (("flip.image", ()),)


WHEN = HEAD + """
  big: {datatype: BOOL, shape: [-1]}
outputs:
  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: {from: small.image, default: decode.image}}
steps:
  decode:
    op: image.decode
    inputs: {data: image}
  small:
    op: image.resize
    when: big
    inputs: {image: decode.image}
    params: {size: 4}
"""


def test_when_keeps_fallbacks_as_candidate_slots(tmp_path: Path) -> None:
    plan = compile_plan(_valid(tmp_path, WHEN), mode="serve")
    small = plan.steps[1]
    assert small.when == (plan.slot_names.index("big"),) and not small.simple
    assert plan.outputs == (("out", (plan.slot_names.index("small.image"), plan.slot_names.index("decode.image"))),)
    assert {plan.slot_names.index("small.image"), plan.slot_names.index("decode.image")} <= plan.keep


def test_a_cuda_step_records_its_copies_and_auto_stays_on_the_cpu_without_a_gpu(tmp_path: Path) -> None:
    text = CHAIN.replace("    op: image.normalize\n", "    op: image.normalize\n    device: cuda\n")
    plan = compile_plan(_valid(tmp_path, text), mode="serve", gpu=False)
    assert [s.device for s in plan.steps] == ["cpu", "cpu", "cuda", "cpu"]
    norm, chw = plan.steps[2], plan.steps[3]
    assert [(c.tensor, c.src, c.dst) for c in norm.copies] == [("crop.image", "cpu", "cuda")]
    assert [(c.tensor, c.src, c.dst) for c in chw.copies] == [("norm.image", "cuda", "cpu")]
    assert not norm.simple and not chw.simple  # the general path makes the copies
    assert "norm (op image.normalize, cuda)" in plan.describe()


def test_step_seed_keys_are_stable_across_processes() -> None:
    code = "from twinpipe.dag._plan import step_seed_key; print(step_seed_key('flip'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == step_seed_key("flip") == step_seed_key("flip")
    assert step_seed_key("flip") != step_seed_key("flip2")
