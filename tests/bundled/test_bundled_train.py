"""Training: a tiny model's loss falls within a few steps, and the saved folder is complete."""

from __future__ import annotations

import json

import torch

from ioi_desktop.bundled import corpus
from ioi_desktop.bundled.tokenizer import build_tokenizer
from ioi_desktop.bundled.train import TrainingConfig, build_model, encode_examples, learning_rate, train


def test_encode_examples_prepends_bos_and_weights_answers():
    tokenizer = build_tokenizer()
    examples = [[("When John and Mary went to the shops, John gave the bag to", False), (" Mary", True)], [("The cat was at the park.", False)]]
    tokens, weights = encode_examples(tokenizer, examples, answer_weight=4.0)
    assert tokens.shape == (2, 16) and tokens[:, 0].tolist() == [0, 0]  # BOS + 14 prompt tokens + answer
    assert tokenizer.convert_ids_to_tokens(int(tokens[0, 15])) == "ĠMary"
    assert weights[0, 14] == 4.0 and weights[0, :14].eq(1.0).all()
    assert weights[1, :7].eq(1.0).all() and weights[1, 7:].eq(0.0).all()  # padding carries no loss


def test_learning_rate_warms_up_then_decays():
    config = TrainingConfig(steps=100, warmup_steps=10, learning_rate=1e-3)
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] < rates[9] == max(rates) and rates[-1] < 0.01 * max(rates)


def test_a_few_steps_reduce_the_loss(tmp_path):
    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, steps=60, batch_size=32, n_layer=1, n_head=2, d_model=32, warmup_steps=5, probe_every=0, learning_rate=1e-2)
    record = train(config, tmp_path, log=lambda line: None)
    curve = record["loss_curve"]["mean_loss"]
    assert curve[-1] < 0.8 * curve[0]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "training.json"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["config"]["seed"] == 0 and saved["data_mix"]["held_out_templates"] == corpus.HELD_OUT_TEMPLATES


def test_mlp_inner_sets_the_mlp_width_and_zero_means_four_times_d_model():
    narrow = build_model(TrainingConfig(n_layer=1, n_head=2, d_model=32, mlp_inner=16), vocab_size=50, bos_id=0)
    default_width = build_model(TrainingConfig(n_layer=1, n_head=2, d_model=32, mlp_inner=0), vocab_size=50, bos_id=0)
    assert narrow.transformer.h[0].mlp.c_fc.weight.shape == (32, 16)
    assert default_width.transformer.h[0].mlp.c_fc.weight.shape == (32, 128)


def test_a_second_stage_starts_from_the_first_stage_weights(tmp_path):
    import pytest

    torch.set_num_threads(1)
    tiny = dict(batch_size=16, n_layer=1, n_head=2, d_model=32, mlp_inner=32, warmup_steps=2, probe_every=0, learning_rate=1e-2)
    first = train(TrainingConfig(seed=0, steps=40, **tiny), tmp_path / "stage1", log=lambda line: None)
    second = train(TrainingConfig(seed=1, steps=2, init_from=str(tmp_path / "stage1"), **tiny), tmp_path / "stage2", log=lambda line: None)
    fresh = train(TrainingConfig(seed=1, steps=2, **tiny), tmp_path / "fresh", log=lambda line: None)
    # Starting from trained weights, the first steps' loss is that of the end of stage 1, not of a fresh model.
    assert second["loss_curve"]["mean_loss"][0] < 0.9 * fresh["loss_curve"]["mean_loss"][0]
    assert second["init_from"] == {"folder": "stage1", "chosen_step": 40, "config": first["config"], "train_seconds": first["train_seconds"]}
    wider = dict(tiny, d_model=64)
    with pytest.raises(ValueError, match="use the same --layers, --heads, --d-model and --mlp-inner"):
        train(TrainingConfig(seed=1, steps=1, init_from=str(tmp_path / "stage1"), **wider), tmp_path / "bad", log=lambda line: None)
    with pytest.raises(FileNotFoundError, match="expected training.json and model.safetensors"):
        train(TrainingConfig(seed=1, steps=1, init_from=str(tmp_path / "nothing"), **tiny), tmp_path / "bad2", log=lambda line: None)


def test_a_third_stage_records_the_whole_chain(tmp_path):
    from ioi_desktop.bundled import card

    torch.set_num_threads(1)
    tiny = dict(batch_size=8, n_layer=1, n_head=2, d_model=32, mlp_inner=32, warmup_steps=1, probe_every=0, learning_rate=1e-2)
    train(TrainingConfig(seed=0, steps=3, **tiny), tmp_path / "stage1", log=lambda line: None)
    train(TrainingConfig(seed=1, steps=2, init_from=str(tmp_path / "stage1"), **tiny), tmp_path / "stage2", log=lambda line: None)
    third = train(
        TrainingConfig(seed=2, steps=2, init_from=str(tmp_path / "stage2"), continuation_share=0.4, **tiny), tmp_path / "stage3", log=lambda line: None
    )
    chain = card.stages(third)
    assert [stage["config"]["seed"] for stage in chain] == [0, 1, 2]
    commands = card.train_commands(tmp_path / "ioi-mini", third)
    assert len(commands) == 3 and "--init-from" not in commands[0]
    assert commands[1].endswith("--init-from build/ioi-mini-stage1") and "--out build/ioi-mini-stage2" in commands[1]
    assert "--continuation-share 0.4" in commands[2] and commands[2].endswith("--init-from build/ioi-mini-stage2")
    assert "--out resources/models/ioi-mini" in commands[2]


def test_switched_off_mlps_stay_zero_through_training(tmp_path):
    import pytest
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, steps=5, batch_size=8, n_layer=2, n_head=2, d_model=32, mlp_inner=16, warmup_steps=1, probe_every=0, no_mlp_layers=(1,))
    train(config, tmp_path, log=lambda line: None)
    weights = load_file(str(tmp_path / "model.safetensors"))
    for name in ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"):
        assert weights[f"transformer.h.1.mlp.{name}"].abs().max() == 0, name
    assert weights["transformer.h.0.mlp.c_proj.weight"].abs().max() > 0  # the other layer's MLP trains
    with pytest.raises(ValueError, match="the model has layers 0 to 1"):
        build_model(TrainingConfig(n_layer=2, n_head=2, d_model=32, no_mlp_layers=(2,)), vocab_size=50, bos_id=0)


def test_a_deeper_stage_starts_from_the_shallower_function(tmp_path):
    """A stage with more layers than the one it starts from computes the same logits at its start."""
    from ioi_desktop.bundled.train import load_initial_weights

    torch.set_num_threads(1)
    tiny = dict(batch_size=8, n_head=2, d_model=32, mlp_inner=16, warmup_steps=1, probe_every=0, learning_rate=1e-2)
    train(TrainingConfig(seed=0, steps=5, n_layer=1, **tiny), tmp_path / "shallow", log=lambda line: None)
    tokenizer = build_tokenizer()
    shallow = build_model(TrainingConfig(n_layer=1, **tiny), len(tokenizer), 0)
    deep = build_model(TrainingConfig(n_layer=2, seed=3, **tiny), len(tokenizer), 0)
    assert "new_layers" not in load_initial_weights(shallow, tmp_path / "shallow")
    assert load_initial_weights(deep, tmp_path / "shallow")["new_layers"] == [1]
    tokens = torch.tensor([tokenizer("When John and Mary went to the shops, John gave the bag to")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(deep(tokens).logits, shallow(tokens).logits)
    # The added layer is not frozen: a few steps move its output projection off zero.
    record = train(TrainingConfig(seed=1, steps=3, n_layer=2, init_from=str(tmp_path / "shallow"), **tiny), tmp_path / "deep", log=lambda line: None)
    assert record["init_from"]["new_layers"] == [1]
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "deep" / "model.safetensors"))["transformer.h.1.attn.c_proj.weight"].abs().max() > 0


def test_an_earlier_run_with_fewer_words_seeds_a_larger_vocabulary(tmp_path):
    """Words are only appended to the vocabulary, so an older run's embedding rows keep their ids; new words start fresh."""
    import pytest
    from safetensors.torch import load_file, save_file

    from ioi_desktop.bundled.train import load_initial_weights

    torch.set_num_threads(1)
    tiny = dict(batch_size=8, n_layer=1, n_head=2, d_model=32, mlp_inner=16, warmup_steps=1, probe_every=0)
    train(TrainingConfig(seed=0, steps=3, **tiny), tmp_path / "old", log=lambda line: None)
    # Make it look like a run from before the last two words were added.
    weights = load_file(str(tmp_path / "old" / "model.safetensors"))
    weights["transformer.wte.weight"] = weights["transformer.wte.weight"][:-2].clone()
    save_file(weights, str(tmp_path / "old" / "model.safetensors"))
    document = json.loads((tmp_path / "old" / "tokenizer.json").read_text())
    vocab = document["model"]["vocab"]
    last = sorted(vocab, key=vocab.get)[-2:]
    for token in last:
        del vocab[token]
    (tmp_path / "old" / "tokenizer.json").write_text(json.dumps(document))
    model = build_model(TrainingConfig(**tiny), len(build_tokenizer()), 0)
    stage = load_initial_weights(model, tmp_path / "old")
    assert stage["new_tokens"] == last == ["Ġhim", "Ġher"]
    torch.testing.assert_close(model.transformer.wte.weight[:-2], weights["transformer.wte.weight"])
    # A vocabulary that is not a prefix of today's (ids would change meaning) is refused.
    vocab["Ġzebra"] = vocab.pop(sorted(vocab, key=vocab.get)[-1])
    (tmp_path / "old" / "tokenizer.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="its weights have other shapes"):
        load_initial_weights(build_model(TrainingConfig(**tiny), len(build_tokenizer()), 0), tmp_path / "old")


def test_silent_heads_write_nothing_and_stay_silent(tmp_path):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, steps=5, batch_size=8, n_layer=2, n_head=2, d_model=32, mlp_inner=16, warmup_steps=1, probe_every=0, silent_heads=((1, 0),))
    train(config, tmp_path, log=lambda line: None)
    projection = load_file(str(tmp_path / "model.safetensors"))["transformer.h.1.attn.c_proj.weight"]  # [heads * d_head, d_model]
    assert projection[:16].abs().max() == 0 and projection[16:].abs().max() > 0
    import pytest

    from ioi_desktop.bundled.train import switch_off_heads

    with pytest.raises(ValueError, match="heads 0 to 1"):
        switch_off_heads(build_model(TrainingConfig(n_layer=2, n_head=2, d_model=32), vocab_size=50, bos_id=0), ((0, 2),))


def test_a_shallower_stage_keeps_the_lower_layers_and_frozen_mlps_keep_their_weights(tmp_path):
    from safetensors.torch import load_file

    from ioi_desktop.bundled.train import load_initial_weights

    torch.set_num_threads(1)
    tiny = dict(batch_size=8, n_head=2, d_model=32, mlp_inner=16, warmup_steps=1, probe_every=0, learning_rate=1e-2)
    train(TrainingConfig(seed=0, steps=5, n_layer=2, **tiny), tmp_path / "deep", log=lambda line: None)
    before = load_file(str(tmp_path / "deep" / "model.safetensors"))
    shallow = build_model(TrainingConfig(n_layer=1, **tiny), len(build_tokenizer()), 0)
    assert load_initial_weights(shallow, tmp_path / "deep")["dropped_layers"] == [1]
    torch.testing.assert_close(shallow.transformer.h[0].attn.c_attn.weight, before["transformer.h.0.attn.c_attn.weight"])
    # Training on with layer 1's MLP frozen: it keeps the weights it started with, the rest moves.
    train(TrainingConfig(seed=1, steps=3, n_layer=2, init_from=str(tmp_path / "deep"), frozen_mlp_layers=(1,), **tiny), tmp_path / "next", log=lambda line: None)
    after = load_file(str(tmp_path / "next" / "model.safetensors"))
    for name in ("c_fc.weight", "c_proj.weight"):
        torch.testing.assert_close(after[f"transformer.h.1.mlp.{name}"], before[f"transformer.h.1.mlp.{name}"])
    assert not torch.equal(after["transformer.h.0.mlp.c_fc.weight"], before["transformer.h.0.mlp.c_fc.weight"])


def test_head_dropout_switches_whole_heads_off_per_sequence_in_training_only():
    import itertools

    import pytest

    from ioi_desktop.bundled.train import add_head_dropout

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, n_layer=2, n_head=2, d_model=32, mlp_inner=16)
    model = build_model(config, vocab_size=50, bos_id=0)
    tokens = torch.randint(1, 50, (24, 7))
    model.eval()
    with torch.no_grad():
        full = model(tokens).logits
        # Reference outputs with heads switched off by zeroing their rows of layer 1's output projection.
        weight = model.transformer.h[1].attn.c_proj.weight
        saved = weight.detach().clone()
        variants = {}
        for kept in itertools.product((0, 1), repeat=2):
            weight.copy_(saved)
            for head, keep in enumerate(kept):
                if not keep:
                    weight[head * 16 : (head + 1) * 16] = 0.0
            variants[kept] = model(tokens).logits
        weight.copy_(saved)
    handles = add_head_dropout(model, (1,), 0.5, "head", seed=3)
    with torch.no_grad():
        assert torch.allclose(model(tokens).logits, full)  # eval mode: untouched
        model.train()
        dropped = model(tokens).logits
    seen = set()
    for row in range(len(tokens)):
        matches = [kept for kept, logits in variants.items() if torch.allclose(dropped[row], logits[row], atol=1e-5)]
        assert matches, "each sequence must equal the model with some heads switched off"
        seen.add(matches[0])
    assert len(seen) > 1  # the draw differs between sequences
    for handle in handles:
        handle.remove()
    layer_handles = add_head_dropout(model, (1,), 0.5, "layer", seed=3)
    with torch.no_grad():
        dropped = model(tokens).logits
    for row in range(len(tokens)):
        assert torch.allclose(dropped[row], variants[(1, 1)][row], atol=1e-5) or torch.allclose(dropped[row], variants[(0, 0)][row], atol=1e-5)
    for handle in layer_handles:
        handle.remove()
    with pytest.raises(ValueError, match="layers 0 to 1"):
        add_head_dropout(model, (2,), 0.5)
    with pytest.raises(ValueError, match="probability"):
        add_head_dropout(model, (1,), 1.0)


def test_mlp_dropout_zeroes_whole_mlps_per_sequence_in_training_only():
    import pytest

    from ioi_desktop.bundled.train import add_mlp_dropout, switch_off_mlps

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, n_layer=2, n_head=2, d_model=32, mlp_inner=16)
    model = build_model(config, vocab_size=50, bos_id=0)
    tokens = torch.randint(1, 50, (24, 7))
    model.eval()
    without = build_model(config, vocab_size=50, bos_id=0)
    without.load_state_dict(model.state_dict())
    switch_off_mlps(without, (1,))  # zero weights: the layer's MLP adds nothing
    without.eval()
    with torch.no_grad():
        full, off = model(tokens).logits, without(tokens).logits
        handles = add_mlp_dropout(model, (1,), 0.5, seed=1)
        assert torch.allclose(model(tokens).logits, full)
        model.train()
        dropped = model(tokens).logits
    kinds = []
    for row in range(len(tokens)):
        on_ = torch.allclose(dropped[row], full[row], atol=1e-5)
        off_ = torch.allclose(dropped[row], off[row], atol=1e-5)
        assert on_ or off_
        kinds.append(on_)
    assert any(kinds) and not all(kinds)
    for handle in handles:
        handle.remove()
    with pytest.raises(ValueError, match="layers 0 to 1"):
        add_mlp_dropout(model, (5,), 0.5)


def test_prefix_io_share_reaches_the_corpus_and_the_record(tmp_path):
    import pytest

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, steps=2, batch_size=4, n_layer=1, n_head=2, d_model=32, warmup_steps=1, probe_every=0,
                            prefix_share=1.0, prefix_io_share=0.25)
    record = train(config, tmp_path / "run", log=lambda line: None)
    assert record["config"]["prefix_io_share"] == 0.25 and record["data_mix"]["earlier_sentence_names_the_io"] == 0.25
    with pytest.raises(ValueError, match="--prefix-io-share 1.5: give a share from 0 to 1"):
        train(TrainingConfig(steps=1, n_layer=1, n_head=2, d_model=32, probe_every=0, prefix_io_share=1.5), tmp_path / "bad", log=lambda line: None)


def test_odd_one_out_share_reaches_the_corpus_and_the_record(tmp_path):
    import pytest

    torch.set_num_threads(1)
    config = TrainingConfig(seed=0, steps=2, batch_size=4, n_layer=1, n_head=2, d_model=32, warmup_steps=1, probe_every=0, odd_one_out_share=0.3)
    record = train(config, tmp_path / "run", log=lambda line: None)
    assert record["config"]["odd_one_out_share"] == 0.3 and record["data_mix"]["odd_one_out_sentences"] == 0.3
    assert record["data_mix"]["odd_one_out_subjects"] == {str(k): v for k, v in corpus.ODD_ONE_OUT_SUBJECTS.items()}
    with pytest.raises(ValueError, match="--odd-one-out-share -0.1: give a share from 0 to 1"):
        train(TrainingConfig(steps=1, n_layer=1, n_head=2, d_model=32, probe_every=0, odd_one_out_share=-0.1), tmp_path / "bad", log=lambda line: None)


def test_the_card_command_gives_back_the_recorded_configuration():
    """Every option a stage used is on its card command line: parsing that line gives the same configuration."""
    import dataclasses
    import shlex

    from ioi_desktop.bundled import card
    from ioi_desktop.bundled.train import parse_args

    config = TrainingConfig(
        seed=23, steps=1100, batch_size=64, learning_rate=3e-3, warmup_steps=50, continuation_share=0.4, prefix_share=0.4,
        prefix_io_share=0.5, odd_one_out_share=0.25, no_mlp_layers=(3,), silent_heads=((3, 1),), frozen_mlp_layers=(1,), head_dropout=0.3,
        head_dropout_layers=(3,), head_dropout_mode="layer", mlp_dropout=0.2, mlp_dropout_layers=(1, 2), init_from="build/runs/E3",
        repeat_key_dropout=0.5, repeat_key_dropout_layers=(2, 3),
        probe_every=220, probe_prompts=48, probe_circuit_prompts=16, new_layers="random",
    )
    recorded = json.loads(json.dumps(dataclasses.asdict(config)))  # as training.json stores it
    command = card.train_command(recorded, "resources/models/ioi-mini", init_from="build/ioi-mini-stage3")
    parsed, out = parse_args(shlex.split(command)[3:])
    assert command.startswith("python -m ioi_desktop.bundled.train ") and out == "resources/models/ioi-mini"
    assert dataclasses.replace(parsed, init_from=config.init_from) == config
    assert parsed.init_from == "build/ioi-mini-stage3"


def test_the_card_says_how_many_earlier_sentences_name_the_io():
    from ioi_desktop.bundled import card

    old = card.prefix_text({"ioi_with_earlier_once_mentioned_name": 0.3})  # records written before the option
    assert old == "30% of them follow a sentence that mentions another name once."
    assert card.prefix_text({"ioi_with_earlier_once_mentioned_name": 0.3, "earlier_sentence_names_the_io": 0.0}) == old
    text = card.prefix_text({"ioi_with_earlier_once_mentioned_name": 0.6, "earlier_sentence_names_the_io": 0.7})
    assert "60% of them follow" in text and "another name in 30% of those, the indirect object in 70%" in text


def test_the_card_describes_odd_one_out_sentences_only_when_trained_on():
    from ioi_desktop.bundled import card

    assert card.odd_one_out_lines({"ioi_with_earlier_once_mentioned_name": 0.3}) == []  # records written before the option
    assert card.odd_one_out_lines({"odd_one_out_sentences": 0.0, "odd_one_out_subjects": {"2": 0.6, "3": 0.4}}) == []
    (line,) = card.odd_one_out_lines({"odd_one_out_sentences": 0.25, "odd_one_out_subjects": {"2": 0.6, "3": 0.4}})
    assert line.startswith("- Odd one out (25% of all sequences") and "2 (60%) or 3 (40%) subjects" in line


def _ioi_and_roll_call_batch():
    from ioi_desktop.bundled.train import repeated_name_keys

    tokenizer = build_tokenizer()
    examples = [
        [("When John and Mary went to the shops, John gave the bag to", False), (" Mary", True)],
        [("Roll call:", False), (" John", False), (",", False), (" John", False), (" again", True)],
    ]
    tokens, weights = encode_examples(tokenizer, examples, 16.0)
    name_ids = {tokenizer.convert_tokens_to_ids("Ġ" + n) for n in corpus.load_word_lists().names}
    return tokenizer, tokens, repeated_name_keys(tokens, weights, name_ids)


def test_repeated_name_keys_are_the_later_mentions_seen_from_answer_slots():
    tokenizer, tokens, hidden = _ioi_and_roll_call_batch()
    words = tokenizer.convert_ids_to_tokens(tokens[0].tolist())
    (row, query, key), = hidden.nonzero().tolist()  # one entry: END ("to") -> S2 in the IOI sentence
    assert row == 0 and words[query] == "Ġto" and query == len(words) - 2
    assert words[key] == "ĠJohn" and words.index("ĠJohn") < key  # the second John, not the first
    assert not hidden[1].any()  # a roll call's answer slot is a name itself: nothing is hidden there


def test_repeat_key_dropout_hides_s2_from_end_in_the_listed_layer_only_while_training():
    """The hooked layer's attention equals a hand computation with the END->S2 score removed; other positions and eval mode are untouched."""
    import pytest

    from ioi_desktop.bundled.train import add_repeat_key_dropout

    torch.set_num_threads(1)
    tokenizer, tokens, hidden = _ioi_and_roll_call_batch()
    (_, end, s2), = hidden.nonzero().tolist()
    outputs = {}
    for impl in ("sdpa", "eager"):
        model = build_model(TrainingConfig(n_layer=1, n_head=2, d_model=32), len(tokenizer), tokenizer.bos_token_id)
        model.set_attn_implementation(impl)
        model.train()
        with torch.no_grad():
            plain = model(tokens).logits
        handles, set_batch = add_repeat_key_dropout(model, (0,), 0.999999)
        set_batch(hidden)
        captured = {}
        handle = model.transformer.h[0].attn.c_proj.register_forward_pre_hook(lambda module, args: captured.update(z=captured.get("z", args[0])))
        with torch.no_grad():
            outputs[impl] = model(tokens).logits
            model.eval()
            torch.testing.assert_close(model(tokens).logits, plain, atol=1e-6, rtol=0)  # evaluation runs the full model
        handle.remove()
        changed = (outputs[impl] - plain).abs().amax(-1) > 1e-6
        assert changed[0].nonzero().flatten().tolist() == [end] and not changed[1].any()
        # By hand: causal softmax attention of END over every earlier key but S2.
        block = model.transformer.h[0]
        with torch.no_grad():
            h = model.transformer.wte(tokens[:1]) + model.transformer.wpe(torch.arange(tokens.shape[1]))[None]
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(32, dim=2)
            heads = []
            for head in range(2):
                cols = slice(16 * head, 16 * (head + 1))
                scores = (k[0, : end + 1, cols] @ q[0, end, cols]) / 4.0
                scores[s2] = float("-inf")
                heads.append(torch.softmax(scores, 0) @ v[0, : end + 1, cols])
        torch.testing.assert_close(captured["z"][0, end], torch.cat(heads), atol=1e-5, rtol=1e-5)
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="--repeat-key-dropout 1.0: give a probability"):
        add_repeat_key_dropout(model, (0,), 1.0)
    with pytest.raises(ValueError, match="--repeat-key-dropout-layers 3: the model has layers 0 to 0"):
        add_repeat_key_dropout(model, (3,), 0.5)


def test_repeat_key_dropout_reaches_the_record_and_needs_weighted_answers(tmp_path):
    import pytest

    torch.set_num_threads(1)
    tiny = dict(seed=0, steps=2, batch_size=4, n_layer=2, n_head=2, d_model=32, warmup_steps=1, probe_every=0)
    record = train(TrainingConfig(**tiny, repeat_key_dropout=0.5, repeat_key_dropout_layers=(1,)), tmp_path / "run", log=lambda line: None)
    assert record["config"]["repeat_key_dropout"] == 0.5 and record["config"]["repeat_key_dropout_layers"] == [1]
    with pytest.raises(ValueError, match="give --answer-weight above 1"):
        train(TrainingConfig(**tiny, answer_weight=1.0, repeat_key_dropout=0.5, repeat_key_dropout_layers=(1,)), tmp_path / "bad", log=lambda line: None)
