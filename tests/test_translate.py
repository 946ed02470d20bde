"""Translators between models' thoughts (neuralese.translate): ridge, MLP and common space on real tiny models.

Two tiny models of different widths, depths and tokenizers (single digits against pairs of
digits) read the same addition texts; no test trains a language model, only the translators.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuralese.config import TinyModelConfig, load_config
from neuralese.errors import AlignmentError, CheckpointError, ConfigError
from neuralese.models import load_model
from neuralese.tiny import DIGIT_PAIR_PATTERN, build_tiny_model, build_tokenizer, save_tiny
from neuralese.translate import (
    Reader,
    fit_common,
    fit_linear,
    fit_mlp,
    load_common,
    load_translator,
    paired_states,
    shared_ends,
)

TEXTS = [f"{a}+{b}={a + b}" for a, b in [(823, 868), (105, 27), (999, 1), (40, 613), (7, 77), (512, 488)] * 5]


def tiny(folder: Path, pattern: str | None, cfg: TinyModelConfig, seed: int) -> Path:
    tok = (
        build_tokenizer(TEXTS + [str(d) for d in range(100)], pattern=pattern)
        if pattern
        else build_tokenizer(TEXTS)
    )
    return save_tiny(build_tiny_model(tok, cfg, seed=seed), tok, folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("translate")
    a = tiny(
        root / "digits",
        None,
        TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        0,
    )
    b = tiny(
        root / "pairs",
        DIGIT_PAIR_PATTERN,
        TinyModelConfig(hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96),
        1,
    )
    return a, b


@pytest.fixture(scope="module")
def readers(folders) -> list[Reader]:
    out = []
    for f in folders:
        model, tok = load_model(f)
        out.append(Reader.build(f.name, model, tok, -1))
    return out


def test_ridge_recovers_a_known_linear_map():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=gen)
    m, c = torch.randn(6, 9, generator=gen), torch.randn(9, generator=gen)
    t = fit_linear(x, x @ m + c, strength=1e-9)
    assert torch.allclose(t.linear.weight.T, m, atol=1e-4) and torch.allclose(t.linear.bias, c, atol=1e-4)
    assert torch.allclose(t(x), x @ m + c, atol=1e-4)


def test_common_space_recovers_a_shared_latent():
    # Three "models" whose states are different linear images of one 4-dim latent: any one reaches any
    # other through a 4-wide common space almost exactly.
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(600, 4, generator=gen)
    states = [
        z @ torch.randn(4, d, generator=gen) + 0.01 * torch.randn(600, d, generator=gen) for d in (8, 12, 16)
    ]
    space, spread = fit_common(states, 4, 1e-6, 5, ["a", "b", "c"])
    for i in range(3):
        for j in range(3):
            got = space.translate(states[i], i, j)
            cos = torch.nn.functional.cosine_similarity(got, states[j], dim=-1).mean()
            assert cos > 0.99, (i, j, cos)
    assert spread[-1] < 1e-3


def test_character_offsets_align_two_tokenizers(readers):
    digits, pairs = readers
    ends = [digits.token_ends(["823+868=1691"])[0], pairs.token_ends(["823+868=1691"])[0]]
    assert ends[0] == list(range(1, 13))  # one token per character
    assert ends[1] == [2, 3, 4, 6, 7, 8, 10, 12]  # 82 3 + 86 8 = 16 91
    assert shared_ends(ends) == [[1, 2, 3, 5, 6, 7, 9, 11], list(range(8))]
    # Positions that predict the answer: tokens ending at or after the prompt "823+868=" (8 characters).
    paired = paired_states(readers, ["823+868=1691"], 1, 1, "text", prompt_chars=[8])
    assert paired.answer.tolist() == [False] * 5 + [True] * 3


def test_environment_texts_are_prompt_and_completion():
    from neuralese.config import RunConfig
    from neuralese.translate.fit import read_texts

    cfg = RunConfig()
    cfg.env.args, cfg.translate.fit_texts, cfg.translate.held_out_texts = {"digits": 3}, 5, 4
    fit, held, prompt_chars = read_texts(cfg)
    assert len(fit) == 5 and len(held) == 4
    for text, n in zip(held, prompt_chars):
        assert text[n - 1] == "=" and text[n:].isdigit()


def test_paired_states_are_the_fed_back_states_whatever_the_batch(readers):
    paired = paired_states(readers, TEXTS[:6], batch_size=4, min_positions=1, what="texts")
    one_by_one = paired_states(readers, TEXTS[:6], batch_size=1, min_positions=1, what="texts")
    assert [s.shape[-1] for s in paired.states] == [32, 48]
    assert paired.positions == sum(len(p) for t in TEXTS[:6] for p in [readers[1].token_ends([t])[0]])
    for a, b in zip(paired.states, one_by_one.states):
        assert torch.allclose(a, b, atol=1e-5)  # right padding leaves every real position as it was
    # RMS-matched to each model's token embeddings, as rl/feedback.py feeds them back.
    for s, r in zip(paired.states, readers):
        assert torch.allclose(s.pow(2).mean(-1).sqrt(), r.adapter.target_rms.expand(len(s)), rtol=1e-3)


def test_translators_round_trip_through_their_folders(readers, tmp_path):
    fit = paired_states(readers, TEXTS, 8, 1, "texts")
    x, y = fit.states
    lin = fit_linear(x, y, 1e-3, {"source": "digits", "target": "pairs"})
    mlp, losses = fit_mlp(x, y, 1e-3, 16, 30, 32, 1e-3, 0.0, 0)
    space, _ = fit_common(fit.states, 8, 1e-3, 3, ["digits", "pairs"])
    assert losses[-1] <= losses[0]
    for t in (lin, mlp):
        back = load_translator(t.save(tmp_path / t.kind))
        assert back.kind == t.kind and back.meta == t.meta and torch.equal(back(x), t(x))
    back = load_common(space.save(tmp_path / "common"))
    assert back.models == ["digits", "pairs"] and torch.equal(
        back.translate(x, "digits", "pairs"), space.translate(x, 0, 1)
    )


def test_damaged_folders_name_the_file(readers, tmp_path):
    x, y = torch.randn(50, 4), torch.randn(50, 3)
    folder = fit_linear(x, y, 1e-3).save(tmp_path / "t")
    (folder / "translator.safetensors").write_bytes((folder / "translator.safetensors").read_bytes()[:40])
    with pytest.raises(CheckpointError, match="translator.safetensors"):
        load_translator(folder)
    (folder / "translator.json").write_text('{"kind": "linear"}')
    with pytest.raises(CheckpointError, match="translator.json.*source_width"):
        load_translator(folder)
    (folder / "translator.json").unlink()
    with pytest.raises(CheckpointError, match="translator.json not found"):
        load_translator(folder)
    # A config that no longer matches its weights: the weights file is named, with the shapes.
    folder = fit_linear(x, y, 1e-3).save(tmp_path / "u")
    (folder / "translator.json").write_text(
        '{"kind": "linear", "source_width": 5, "target_width": 3, "hidden": 0}'
    )
    with pytest.raises(
        CheckpointError, match=r"translator.safetensors.*linear.weight \(3, 4\) \(expected \(3, 5\)\)"
    ):
        load_translator(folder)
    space, _ = fit_common([x, y], 2, 1e-3, 1, ["a", "b"])
    folder = space.save(tmp_path / "c")
    (folder / "common_space.json").write_text('{"width": 2, "models": ["a"], "widths": [4, 3]}')
    with pytest.raises(CheckpointError, match="common_space.json.*2 widths for 1 models"):
        load_common(folder)


def test_a_translator_of_the_wrong_width_is_refused(readers):
    fit = paired_states(readers, TEXTS, 8, 1, "texts")
    t = fit_linear(fit.states[0], fit.states[1], 1e-3, {"source": "digits", "target": "pairs"})
    with pytest.raises(AlignmentError, match="width 32; got states of width 48"):
        t(fit.states[1])
    space, _ = fit_common(fit.states, 8, 1e-3, 2, ["digits", "pairs"])
    with pytest.raises(AlignmentError, match="encoder of digits maps states of width 32; got .* width 48"):
        space.translate(fit.states[1], "digits", "pairs")
    with pytest.raises(AlignmentError, match="no model 'other'"):
        space.encode(fit.states[0], "other")


def test_tokenizers_without_common_boundaries_are_refused(tmp_path, readers):
    # "4821": one tokenizer cuts 48|21, the other 4|82|1: they share only the text's last character, so
    # six texts give six pairs, fewer than asked for.
    cfg = TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    texts = ["4821", "1234", "5678", "9012", "3456", "7890"]
    evens = tiny(tmp_path / "evens", r"\d\d", cfg, 0)
    odds = tiny(tmp_path / "odds", r"^\d|\d\d|\d", cfg, 0)
    rs = [Reader.build(f.name, *load_model(f), -1) for f in (evens, odds)]
    assert shared_ends([rs[0].token_ends(["4821"])[0], rs[1].token_ends(["4821"])[0]]) == [[1], [2]]
    with pytest.raises(
        AlignmentError, match=r"only 6 positions .*evens read 12 tokens, odds read 18 tokens.*at least 50"
    ):
        paired_states(rs, texts, 4, 50, "fit texts")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("translate:\n  ridg: 0.1\n", "unknown key 'translate.ridg'; did you mean 'translate.ridge'?"),
        ("translate:\n  ridge: -1\n", "translate.ridge"),
        ("translate:\n  models: [a]\n", "key 'translate.models' must be a list of two or more"),
        ("translate:\n  models: [a, a]\n", "key 'translate.models' must be a list without repeats"),
        (
            "translate:\n  kinds: [linear, linear]\n",
            "key 'translate.kinds' must be a non-empty list of distinct",
        ),
        ("translate:\n  kinds: [cubic]\n", "translate.kinds[0]"),
        ("translate:\n  common_width: 0\n", "translate.common_width"),
    ],
)
def test_bad_translate_keys_name_the_key(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert fragment in str(e.value)


def test_translate_fit_from_the_command_line(folders, tmp_path, capsys):
    import json

    from neuralese.cli import main
    from neuralese.translate.fit import read_texts

    (tmp_path / "texts.txt").write_text("\n".join(TEXTS * 2) + "\n")
    recipe = write(
        tmp_path,
        f"""
translate:
  models: [{folders[0]}, {folders[1]}]
  text_file: {tmp_path / "texts.txt"}
  fit_texts: 50
  held_out_texts: 10
  min_aligned_positions: 10
  mlp_steps: 20
  mlp_hidden: 16
  common_width: 8
  common_iterations: 2
""",
    )
    out = tmp_path / "out"
    assert main(["translate", "fit", str(recipe), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert printed["results"] == report["results"]
    kinds = {(r["kind"], r["source"], r["target"]) for r in report["results"]}
    assert kinds == {
        (k, a, b)
        for k in ("mean", "linear", "mlp", "common")
        for a, b in (("digits", "pairs"), ("pairs", "digits"))
    }
    assert all(-1 <= r["cosine"] <= 1 and 0 <= r["top1_agreement"] <= 1 for r in report["results"])
    assert load_translator(out / "mlp" / "digits-to-pairs").target_width == 48
    assert load_common(out / "common").widths == [32, 48]
    cfg = load_config(recipe)
    fit, held, prompt_chars = read_texts(cfg)
    assert len(fit) == 50 and held == (TEXTS * 2)[50:60] and prompt_chars is None
    # A missing model folder is named by its key.
    bad = write(
        tmp_path,
        f"translate:\n  models: [{folders[0]}, {tmp_path / 'nope'}]\n  text_file: {tmp_path / 'texts.txt'}\n",
    )
    assert main(["translate", "fit", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "translate.models[1]" in capsys.readouterr().err


def test_fidelity_of_the_truth_is_one_and_of_the_mean_is_the_floor(readers):
    from neuralese.translate.fit import fidelity

    y = paired_states(readers, TEXTS, 8, 1, "texts").states[1]
    mean = y.mean(0)
    assert fidelity(y, y, mean, readers[1]) == {"cosine": 1.0, "centered_cosine": 1.0, "top1_agreement": 1.0}
    assert fidelity(mean.expand_as(y), y, mean, readers[1])["centered_cosine"] == 0.0


def test_ridge_without_a_penalty_takes_the_minimum_norm_fit_of_too_few_positions():
    x, y = torch.randn(3, 8), torch.randn(3, 2)  # fewer positions than features: singular normal equations
    assert torch.allclose(fit_linear(x, y, 0.0)(x), y, atol=1e-4)


def test_a_model_translates_into_a_copy_of_itself_with_fidelity_one(folders, tmp_path):
    # The whole pipeline on a case with a known answer: the same model twice reads the same texts, so the
    # paired states are equal and every kind must find the identity.
    import shutil

    from neuralese.config import RunConfig
    from neuralese.translate.fit import fit_translators

    copy = shutil.copytree(folders[0], tmp_path / "copy")
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS * 2))
    cfg = RunConfig()
    t = cfg.translate
    t.models, t.text_file, t.fit_texts, t.held_out_texts = (
        [str(folders[0]), str(copy)],
        str(tmp_path / "texts.txt"),
        50,
        10,
    )
    t.min_aligned_positions, t.mlp_steps, t.mlp_hidden, t.common_width, t.ridge = 10, 5, 8, 32, 1e-6
    t.output_dir = str(tmp_path / "out")
    _, report = fit_translators(cfg)
    for r in report["results"]:
        if r["kind"] != "mean":
            assert r["cosine"] > 0.999 and r["top1_agreement"] == 1.0, r
