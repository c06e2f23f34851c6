"""Placement before loading: the memory estimate, the refusal sentence, the split across GPUs.

No GPU here: the split is exercised with a fake device list whose entries all
name the CPU (``devices.gpu_targets`` monkeypatched), which accelerate accepts as
a device map; the arithmetic is checked on numbers worked out by hand.
"""

from __future__ import annotations

import json

import pytest
import torch

from ioi_desktop.core import devices, placement
from ioi_desktop.core.errors import DeviceError
from ioi_desktop.core.models import ModelSpec, load_model
from ioi_desktop.core.placement import Estimate, Shape, Workload

from tests.support.tiny_models import save_tiny_gpt2

GiB = 2**30


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("placement") / "tiny4", n_layer=4, n_head=2, n_embd=16)


def test_split_is_even_when_rooms_allow():
    assert placement.split_blocks([10] * 8, [100, 100]) == [0] * 4 + [1] * 4
    assert placement.split_blocks([10] * 9, [100, 100, 100]) == [0] * 3 + [1] * 3 + [2] * 3


def test_split_gives_a_small_room_fewer_blocks_and_never_more_than_it_holds():
    owners = placement.split_blocks([10] * 8, [25, 100])
    assert owners == [0, 0] + [1] * 6
    owners = placement.split_blocks([10] * 10, [60, 45, 100])
    loads = [sum(10 for o in owners if o == d) for d in range(3)]
    assert all(load <= room for load, room in zip(loads, [60, 45, 100]))
    assert sorted(owners) == owners  # contiguous runs in block order


def test_split_that_cannot_fit_raises():
    with pytest.raises(ValueError):
        placement.split_blocks([10] * 8, [30, 30])
    with pytest.raises(ValueError):
        placement.split_blocks([50], [40, 40])  # a block is never cut


def test_activation_estimate_by_hand():
    shape = Shape(n_layers=2, d_model=8, n_heads=2, d_mlp=32, d_vocab=100)
    work = Workload(n_pairs=3, n_pos=5, batch_size=2)
    per_layer = 12 * 8 + 2 * 32 + 2 * 2 * 5  # 180
    cache = 6 * 5 * 2 * per_layer * 4  # 43200
    logits = 6 * 5 * 100 * 4  # 12000
    working = 2 * 2 * 5 * (2 * per_layer + 100) * 4  # 36800
    assert placement.activation_bytes(shape, work, 4) == cache + logits + working == 92000
    # All prompts at once (no batch size): the working pass covers all 6 sequences.
    assert placement.activation_bytes(shape, Workload(3, 5, None), 4) == cache + logits + 3 * working


def test_weights_come_from_the_safetensors_headers(four_layer_dir):
    from safetensors.torch import load_file

    stored = sum(t.numel() for t in load_file(str(four_layer_dir / "model.safetensors")).values())
    config = json.loads((four_layer_dir / "config.json").read_text())
    est = placement.estimate(four_layer_dir, config, "bfloat16", Workload(2, 10))
    assert est.weights == 2 * stored and est.weights_source == "safetensors headers"
    assert est.total == est.weights + est.activations


def test_without_weights_the_config_gives_the_parameter_count(tmp_path):
    config = {"n_layer": 2, "n_embd": 64, "vocab_size": 1000}
    elements, source = placement.checkpoint_elements(tmp_path, config)
    assert (elements, source) == (12 * 2 * 64**2 + 2 * 1000 * 64, "config parameter count")


def test_refusal_is_one_sentence_with_the_numbers():
    need = Estimate(weights=30 * GiB, activations=3 * GiB, weights_source="x", workload=Workload(4, 20, 2))
    with pytest.raises(DeviceError) as info:
        placement.plan_one("big-model", need, "cuda:0", 20 * GiB)
    message = info.value.message
    assert message == (
        "big-model does not fit on cuda:0: it needs about 33.0 GiB (30.0 GiB weights + 3.0 GiB activations "
        "for 4 pairs of about 20 tokens, 2 per forward) but only 18.0 GiB can be used there (90% of the "
        "20.0 GiB free)."
    )
    assert "'all'" in info.value.hint
    fits = placement.plan_one("big-model", need, "cuda:0", 40 * GiB)
    assert fits.device_map is None and fits.planned == {"cuda:0": 33 * GiB}


def test_map_covers_every_weight_and_keeps_tied_modules_home(four_layer_dir):
    config = json.loads((four_layer_dir / "config.json").read_text())
    need = placement.estimate(four_layer_dir, config, "float32")
    plan = placement.plan_split("tiny4", need, four_layer_dir, torch.float32, [(0, GiB), (1, GiB)])
    dmap = plan.device_map
    assert [dmap[f"transformer.h.{i}"] for i in range(4)] == [0, 0, 1, 1]
    for home in ("transformer.wte", "transformer.wpe", "transformer.ln_f", "lm_head"):
        assert dmap[home] == 0
    meta = placement.meta_model(four_layer_dir, torch.float32)
    for name, _ in meta.named_parameters():
        assert any(name == key or name.startswith(key + ".") for key in dmap), name
    assert plan.home == "cuda:0"
    assert sum(plan.planned.values()) >= need.total - 1  # blocks + home weights + activations


def test_split_refuses_when_the_gpus_together_are_too_small(four_layer_dir):
    config = json.loads((four_layer_dir / "config.json").read_text())
    need = placement.estimate(four_layer_dir, config, "float32")
    with pytest.raises(DeviceError, match="does not fit on the 2 GPUs together"):
        placement.plan_split("tiny4", need, four_layer_dir, torch.float32, [(0, need.total // 4), (1, need.total // 4)])


def test_all_without_a_gpu_is_refused(four_layer_dir, monkeypatch):
    monkeypatch.setattr(devices, "gpu_targets", lambda: [])
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        load_model(ModelSpec(source=str(four_layer_dir), device="all"))


def test_all_loads_through_a_device_map_over_fake_devices(four_layer_dir, monkeypatch):
    """The 'all' path end to end with two fake GPUs that are both the CPU: the same numbers as one device."""
    monkeypatch.setattr(devices, "gpu_targets", lambda: [("cpu", 4 * GiB), ("cpu", 4 * GiB)])
    messages: list[str] = []
    split = load_model(ModelSpec(source=str(four_layer_dir), device="all"), progress=messages.append)
    single = load_model(ModelSpec(source=str(four_layer_dir), device="cpu"))
    assert any(m.startswith("Memory: needs about") and "cpu#1" in m for m in messages)
    tokens = single.model.to_tokens("When John and Mary went to the store, John gave a drink to")
    with torch.no_grad():
        assert torch.allclose(split.model(tokens), single.model(tokens), atol=1e-5)
    assert split.info.device == "cpu"
