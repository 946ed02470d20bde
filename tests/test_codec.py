"""Text codecs (neuralese.codec): FSQ by hand, a round trip on known text, stacked levels, save and load,
and one clear error for each kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neuralese.cli import main
from neuralese.codec.dense import DenseTokenizer, compose_code_embeddings, fix_code_embeddings
from neuralese.codec.fsq import FSQ
from neuralese.codec.model import WEIGHTS, Codec, load_codec
from neuralese.codec.train import measure
from neuralese.config import load_config
from neuralese.config.codec import CodecConfig
from neuralese.errors import CheckpointError, CodecError, ConfigError
from neuralese.load import load_policy
from neuralese.models import load_model
from neuralese.policy import NeuralesePolicy
from neuralese.tiny import build_tiny_model

KNOWN = ["12+34=", "64", "99+99=", "891", "70+25="]  # 2-digit addition, digits least-significant first


# ----------------------------------------------------------------------------- FSQ


def test_fsq_by_hand():
    fsq = FSQ([8, 5])
    # h = (L - 1)(1 - eps) / 2, offset 0.5 for the even level: bound(0) is 0 in both dimensions.
    assert torch.allclose(fsq.bound(torch.zeros(2)), torch.zeros(2), atol=1e-6)
    # Far out, tanh saturates: digits (7, 4) or (0, 0), the last and first codes.
    big = torch.tensor([[50.0, 50.0], [-50.0, -50.0]])
    assert fsq.index(fsq(big)).tolist() == [7 + 4 * 8, 0]
    assert fsq(big).tolist() == [[3 / 4, 2 / 2], [-4 / 4, -2 / 2]]
    # A value between levels rounds: bound 1.4 (level 5, h = 1.998) -> 1 -> 1 / 2.
    z = torch.atanh(torch.tensor([0.0, 1.4 / fsq.half_l[1].item()]))
    assert fsq(z[None]).tolist() == [[0.0, 0.5]]


def test_fsq_codes_are_in_range_deterministic_and_invertible():
    fsq = FSQ([8, 5, 5, 5])
    z = torch.randn(4096, 4, generator=torch.Generator().manual_seed(0)) * 30
    code = fsq(z)
    index = fsq.index(code)
    assert index.min() >= 0 and index.max() < fsq.num_codes == 1000
    digits = code * fsq.half_width
    assert torch.equal(digits, digits.round()), "codes off the grid"
    assert torch.equal(fsq(z), code) and torch.equal(fsq.index(fsq(z)), index)
    every = torch.arange(fsq.num_codes)
    assert torch.equal(fsq.index(fsq.code(every)), every)
    assert torch.equal(fsq.snap(fsq.code(every) + 0.04), fsq.code(every))


def test_fsq_rounds_with_a_straight_through_gradient():
    fsq = FSQ([8, 5])
    z = torch.tensor([[0.3, -0.2]], requires_grad=True)
    fsq(z).sum().backward()
    # d/dz round(bound(z)) / w is taken as d bound / dz / w = h (1 - tanh^2(z + s)) / w.
    t = torch.tanh(z.detach() + fsq.shift)
    assert torch.allclose(z.grad, fsq.half_l * (1 - t**2) / fsq.half_width)


# ----------------------------------------------------------------------------- the codec


def test_round_trip_on_known_text(addition_codec):
    codec = load_codec(addition_codec)
    for text in KNOWN:
        codes = codec.encode_text(text)
        assert len(codes) == -(-len(text) // 2), text  # one code per 2 pieces (digits and signs)
        assert codec.decode_text(codes) == text
    report = json.loads((addition_codec / "report.json").read_text())
    # Near lossless on held-out text (the last tenths of a percent move with library versions).
    assert report["held_out"]["token_accuracy"] >= 0.99 and report["held_out"]["chunk_exact"] >= 0.99


def test_codes_do_not_depend_on_the_batch(addition_codec):
    codec = load_codec(addition_codec)
    ids = torch.tensor([codec.pad(codec.text_ids(t))[:4] for t in ["12+34=", "99+99=", "70+25="]])
    together = codec.codes(ids)
    assert torch.equal(together, torch.cat([codec.codes(row[None]) for row in ids]))
    assert torch.equal(together, codec.codes(ids))


def test_save_and_load_give_the_same_codec(addition_codec, tmp_path):
    codec = load_codec(addition_codec)
    codec.save(tmp_path / "again")
    again = load_codec(tmp_path / "again")
    assert (tmp_path / "again" / WEIGHTS).read_bytes() == (addition_codec / WEIGHTS).read_bytes()
    assert codec.own_state().keys() == again.own_state().keys()
    assert all(torch.equal(v, again.own_state()[k]) for k, v in codec.own_state().items())
    ids = torch.tensor([codec.pad(codec.text_ids("12+34=64"))])
    assert torch.equal(codec.encode(ids), again.encode(ids))
    assert torch.equal(codec.logits(codec.encode(ids)), again.logits(again.encode(ids)))


def test_level_two_trains_through_its_frozen_base(addition_codec, codec_recipe, tmp_path):
    out = tmp_path / "level2"
    assert (
        main(
            [
                "codec",
                "train",
                str(codec_recipe),
                "--out",
                str(out),
                "--set",
                f"codec.base={addition_codec}",
                "--set",
                "codec.max_steps=100",
            ]
        )
        == 0
    )
    level2 = load_codec(out)
    base = load_codec(addition_codec)
    assert level2.level == 2 and level2.tokens_per_code == 4 and level2.base.tokens_per_code == 2
    assert all(torch.equal(v, base.own_state()[k]) for k, v in level2.base.own_state().items()), (
        "base changed"
    )
    report = json.loads((out / "report.json").read_text())
    assert report["base_held_out"]["token_accuracy"] >= 0.99 and 0 < report["held_out"]["token_accuracy"] <= 1
    text = "12+34="
    codes = level2.encode_text(text)
    assert len(codes) == 2 and isinstance(level2.decode_text(codes), str)
    # A third level stands on the second the same way, and its folder loads back (base/base/tokenizer).
    assert (
        main(
            [
                "codec",
                "train",
                str(codec_recipe),
                "--out",
                str(tmp_path / "level3"),
                "--set",
                f"codec.base={out}",
                "--set",
                "codec.max_steps=20",
            ]
        )
        == 0
    )
    level3 = load_codec(tmp_path / "level3")
    assert level3.level == 3 and level3.tokens_per_code == 8 and len(level3.encode_text(text)) == 1


def test_a_continuous_codec_has_codes_but_no_indices(codec_recipe, tmp_path):
    cfg = load_config(codec_recipe, ["codec.quantizer=none", "codec.code_width=3"])
    codec = Codec(cfg.codec, vocab_size=20)
    code = codec.encode(torch.zeros(2, 4, dtype=torch.long))
    assert code.shape == (2, 2, 3) and code.abs().max() < 1 and codec.num_codes is None
    with pytest.raises(CodecError, match="continuous"):
        codec.codes(torch.zeros(1, 2, dtype=torch.long))


# ----------------------------------------------------------------------------- bad input


def one_error(capfd, argv) -> str:
    capfd.readouterr()
    assert main(argv) == 2
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_ids_that_do_not_divide_into_chunks_are_refused(addition_codec, capfd):
    line = one_error(capfd, ["codec", "encode", str(addition_codec), "--ids", "5,6,7"])
    assert line.startswith(
        f"neuralese codec: error: codec {addition_codec}: 3 token ids do not divide into chunks of 2"
    )


def test_an_unknown_piece_is_refused_by_name(addition_codec, capfd):
    line = one_error(capfd, ["codec", "encode", str(addition_codec), "--text", "12+ab="])
    assert "'ab' (characters 3-5 of '12+ab=') is not in this codec's vocabulary" in line


def test_a_code_outside_the_vocabulary_is_refused(addition_codec, capfd):
    line = one_error(capfd, ["codec", "decode", str(addition_codec), "--codes", "3,1000"])
    assert "code 1000 is outside this codec's 1000 codes" in line


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / "codec.json").unlink(), "codec.json: codec config (codec.json, written by"),
        (lambda d: (d / "codec.json").write_text("{"), "codec.json: not valid JSON"),
        (lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:300]), "codec.safetensors: damaged"),
        (lambda d: shutil.rmtree(d / "tokenizer"), "codec folder has no tokenizer/"),
    ],
    ids=["no-config", "bad-json", "truncated-weights", "no-tokenizer"],
)
def test_a_damaged_codec_folder_names_the_file(addition_codec, tmp_path, capfd, damage, expected):
    folder = tmp_path / "codec"
    shutil.copytree(addition_codec, folder)
    damage(folder)
    assert expected in one_error(capfd, ["codec", "decode", str(folder), "--codes", "1"])


def test_weights_of_another_shape_are_refused(addition_codec, tmp_path):
    folder = tmp_path / "codec"
    shutil.copytree(addition_codec, folder)
    meta = json.loads((folder / "codec.json").read_text())
    meta["config"]["width"] = 64
    (folder / "codec.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit the codec codec.json describes"):
        load_codec(folder)


def test_bad_fsq_levels_name_the_key(codec_recipe):
    with pytest.raises(ConfigError, match=r"key 'codec.fsq_levels\[1\]' must be an integer >= 2, got 1"):
        load_config(codec_recipe, ["codec.fsq_levels=[8, 1]"])
    assert CodecConfig().fsq_levels == [8, 5, 5, 5]


def test_a_code_past_63_bits_trains_and_is_measured_but_has_no_index(codec_recipe, addition_codec):
    """A wide FSQ code (here 96 bits) is a vector like a continuous one: encode, decode and count the codes
    used work; a number for it (index, a dense vocabulary) is refused by name instead of overflowing."""
    cfg = load_config(codec_recipe, ["codec.fsq_levels=" + str([8] * 32)])
    codec = Codec(cfg.codec, vocab_size=20)
    codec.tokenizer = load_codec(addition_codec).tokenizer
    assert codec.num_codes == 8**32 and codec.fsq.bits == 96
    ids = torch.tensor([[5, 6], [5, 6], [7, 8]])
    assert measure(codec, ids)["codes_used"] == 2  # two distinct chunks, told apart by their digits
    with pytest.raises(CodecError, match=r"FSQ.index: .*96 bits.*64-bit index"):
        codec.codes(ids.view(1, -1))
    with pytest.raises(CodecError, match=r"FSQ.code: "):
        codec.fsq.code(torch.zeros(1, dtype=torch.long))
    with pytest.raises(CodecError, match=r"fsq_levels \[8, 8.*make 7.92e\+28 codes \(at most 1,048,576\)"):
        DenseTokenizer(codec)


# ----------------------------------------------------------------------------- the dense-token policy


def code_indices(ids: list[int], tokenizer: DenseTokenizer) -> list[int]:
    """The codec code indices among vocabulary ids (the specials, eos and pad, left out)."""
    return [i - tokenizer.offset for i in ids if i >= tokenizer.offset]


@pytest.fixture(scope="module")
def composed_dir(dense_recipe, tmp_path_factory) -> Path:
    """The dense model of `dense_dir`, its code embeddings composed (model.codec_embedding: composed)."""
    out = tmp_path_factory.mktemp("dense-composed") / "as-is"
    assert (
        main(
            [
                "pretrain",
                str(dense_recipe),
                "--set",
                "model.codec_embedding=composed",
                "--set",
                f"model.path={out}",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(params=["atomic", "composed"])
def dense_model(request, dense_dir, composed_dir) -> Path:
    return {"atomic": dense_dir, "composed": composed_dir}[request.param]


def test_a_composed_code_embedding_is_built_from_its_decoded_tokens(dense_recipe, addition_codec):
    tok = DenseTokenizer.of_codec(addition_codec, key="model.codec")
    codec = load_codec(addition_codec)
    chunks = tok.code_chunks()  # [1000, 2]: what each code decodes to, slot by slot
    assert torch.equal(chunks.flatten(), codec.decode_codes(torch.arange(1000)[None])[0])
    model = build_tiny_model(tok, load_config(dense_recipe, []).model.tiny, seed=0)
    before = model.get_input_embeddings().weight.detach().clone()
    composed = compose_code_embeddings(model, tok, seed=0)
    with torch.no_grad():  # train it a little: the rows follow the composition, not where it started
        composed.base.add_(torch.randn_like(composed.base))
        composed.maps.mul_(1.5)
    emb = model.get_input_embeddings().weight.detach()  # [1005, 32]
    written = tok.written_codes(chunks)  # the one code per chunk that the codec writes
    assert 20 < written.sum() < 200 and len({tuple(c) for c in chunks[written].tolist()}) == written.sum()
    picks = [*written.nonzero()[:3, 0].tolist(), *(~written).nonzero()[:2, 0].tolist()]
    for code in picks:  # by hand: a written code is sum_j P_j e(t_j) / sqrt(2), another keeps its row
        t0, t1 = chunks[code].tolist()
        by_hand = (composed.maps[0] @ composed.base[t0] + composed.maps[1] @ composed.base[t1]) / 2**0.5
        assert torch.allclose(
            emb[tok.offset + code], by_hand if written[code] else before[tok.offset + code], atol=1e-5
        ), code
    assert torch.equal(emb[: tok.offset], before[: tok.offset])  # the special tokens keep theirs
    ids = torch.tensor([[1, *(tok.offset + c for c in picks)]])
    logits = model(input_ids=ids, output_hidden_states=True)
    head = logits.hidden_states[-1] @ emb.T  # the tied head reads the same composed rows
    assert torch.allclose(logits.logits, head, atol=1e-5)
    fix_code_embeddings(model)  # a plain table with the same rows, still tied
    assert not torch.nn.utils.parametrize.is_parametrized(model.get_input_embeddings())
    assert torch.equal(model.get_input_embeddings().weight, emb)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_the_dense_policys_text_is_the_codecs_decoding_of_its_codes(dense_model, addition_codec):
    policy = NeuralesePolicy.from_pretrained(dense_model)  # the loader every user checkpoint takes
    tok = policy.tokenizer
    assert isinstance(tok, DenseTokenizer) and policy.model.get_input_embeddings().num_embeddings >= 1005
    codec = load_codec(addition_codec)  # the codec as trained, not the model folder's copy
    prompts = ["12+34=", "99+99=", "70+25=", "5+61=", "40+40="] * 4
    ids, mask = policy.encode(prompts)
    for row, m, text in zip(ids, mask, prompts):  # the prompt is the codec's codes of its text
        assert code_indices(row[m.bool()].tolist(), tok) == codec.encode_text(text).tolist()
    ro = policy.rollout(ids, mask, 4, temperature=1.0, generator=torch.Generator().manual_seed(0))
    texts = policy.decode(ro)
    assert len(set(texts)) > 3, texts  # sampled: many different codes to decode
    for written, text, positions in zip(ro.completion_ids(), texts, ro.generated_positions.tolist()):
        codes = code_indices(written, tok)
        assert written[: len(codes)] == [c + tok.offset for c in codes], "a special token among the codes"
        expected = (
            codec.tokenizer.decode(
                codec.decode_codes(torch.tensor([codes]))[0].tolist(), skip_special_tokens=True
            )
            if codes
            else ""
        )
        assert text == expected
        assert positions == len(written) <= 4 and len(codec.text_ids(text)) <= 2 * len(codes)
    assert policy.generate(prompts[:5], max_new_tokens=4) == policy.decode(
        policy.rollout(ids[:5], mask[:5], 4, temperature=0.0)
    )


def test_a_dense_model_folder_saves_and_loads_back(dense_model, addition_codec, tmp_path):
    model, tok = load_model(dense_model)
    assert (dense_model / "dense_tokenizer.json").is_file() and (dense_model / "codec" / WEIGHTS).is_file()
    assert (dense_model / "codec" / WEIGHTS).read_bytes() == (addition_codec / WEIGHTS).read_bytes()
    policy = NeuralesePolicy(model, tok)
    again_dir = policy.save_pretrained(tmp_path / "again")
    again = NeuralesePolicy.from_pretrained(again_dir)
    assert isinstance(again.tokenizer, DenseTokenizer) and again.tokenizer.get_vocab() == tok.get_vocab()
    assert (again_dir / "codec" / WEIGHTS).read_bytes() == (addition_codec / WEIGHTS).read_bytes()
    theirs = again.model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())
    prompts = ["12+34=", "99+99=", "70+25="]
    assert again.generate(prompts, max_new_tokens=4) == policy.generate(prompts, max_new_tokens=4)


@pytest.fixture(scope="module")
def dense_run(dense_recipe, dense_dir, tmp_path_factory):
    """Two RL steps (hybrid GRPO) on the dense model, through `neuralese train` (about 3 s)."""
    run = tmp_path_factory.mktemp("dense-rl") / "run"
    assert main(["train", str(dense_recipe), "--set", f"output_dir={run}"]) == 0
    return run


def test_rl_trains_on_a_dense_model_through_the_trainer(dense_run, dense_dir):
    run = dense_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and r["grad_norm"] > 0 for r in steps)
    assert all(1 <= r["generated_positions/mean"] <= 3 for r in steps)
    before = load_file(str(dense_dir / "model.safetensors"))
    after = load_file(str(run / "checkpoints" / "step-2" / "model.safetensors"))
    shared = before.keys() & after.keys()  # a tied embedding is saved under either name
    assert len(shared) > 5 and any(not torch.equal(before[k], after[k]) for k in shared), "RL moved no weight"
    policy = load_policy(run)  # the run's last checkpoint, its dense tokenizer from the as-is folder
    assert isinstance(policy.tokenizer, DenseTokenizer) and policy.config.mode == "hybrid"
    completions = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert completions and all(set(c["completion"]) <= set("0123456789+=") for c in completions)


def continuous_codec(addition_codec, folder):
    """A continuous codec folder (untrained: only its kind matters) on the addition codec's tokenizer."""
    cfg = CodecConfig(quantizer="none")
    tokenizer = load_codec(addition_codec).tokenizer
    codec = Codec(cfg, vocab_size=len(tokenizer))
    codec.tokenizer = tokenizer
    return codec.save(folder)


@pytest.mark.parametrize("case", ["missing", "continuous"])
def test_a_bad_model_codec_names_the_key(dense_recipe, addition_codec, tmp_path, capfd, case):
    folder = tmp_path / "nope" if case == "missing" else continuous_codec(addition_codec, tmp_path / "cont")
    line = one_error(
        capfd,
        [
            "pretrain",
            str(dense_recipe),
            "--set",
            f"model.codec={folder}",
            "--set",
            f"model.path={tmp_path / 'model'}",
        ],
    )
    expected = {
        "missing": f"model.codec: codec folder '{folder}' does not exist",
        "continuous": f"model.codec '{folder}': a dense-token model needs a discrete codec",
    }
    assert expected[case] in line and not (tmp_path / "model").exists()


def test_a_missing_base_or_text_file_names_the_key(codec_recipe, tmp_path, capfd):
    line = one_error(
        capfd,
        [
            "codec",
            "train",
            str(codec_recipe),
            "--out",
            str(tmp_path / "c"),
            "--set",
            f"codec.base={tmp_path / 'nope'}",
        ],
    )
    assert f"codec.base: codec folder '{tmp_path / 'nope'}' does not exist" in line
    for name in ("texts.txt", "texts.jsonl"):
        line = one_error(
            capfd,
            [
                "codec",
                "train",
                str(codec_recipe),
                "--out",
                str(tmp_path / "c"),
                "--set",
                f"codec.text={tmp_path / name}",
            ],
        )
        assert line.endswith(f"{tmp_path / name}: text file codec.text names not found")


def test_a_bad_codec_embedding_names_the_key(dense_recipe, codec_recipe):
    expected = "key 'model.codec_embedding' expects one of 'atomic', 'composed', got 'factored'"
    with pytest.raises(ConfigError, match=expected):
        load_config(dense_recipe, ["model.codec_embedding=factored"])
    with pytest.raises(ConfigError, match="model.codec_embedding.*'atomic' unless model.codec is set"):
        load_config(codec_recipe, ["model.codec_embedding=composed"])
    assert load_config(dense_recipe, []).model.codec_embedding == "atomic"


def test_a_dense_model_refuses_text_its_codec_never_saw(dense_dir, capfd):
    line = one_error(
        capfd,
        [
            "eval",
            str(dense_dir),
            "--env",
            "multiplication",
            "--env-args",
            "{digits: 2}",
            "--n",
            "2",
            "--quiet",
        ],
    )
    assert f"the dense-token model's codec ({dense_dir / 'codec'}): '*' (characters 2-3 of " in line


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda d: (d / "dense_tokenizer.json").write_text('{"format": 1}'),
            "dense_tokenizer.json: expected 'format': 1",
        ),
        (
            lambda d: (d / "dense_tokenizer.json").write_text(
                (d / "dense_tokenizer.json").read_text().replace('"codes": 1000', '"codes": 999')
            ),
            "dense_tokenizer.json: says 999 codes, but its codec has 1000",
        ),
        (lambda d: shutil.rmtree(d / "codec"), "codec folder '"),
    ],
    ids=["no-specials", "other-codes", "no-codec"],
)
def test_a_damaged_dense_model_folder_names_the_file(dense_dir, tmp_path, capfd, damage, expected):
    folder = tmp_path / "dense"
    shutil.copytree(dense_dir, folder)
    damage(folder)
    line = one_error(
        capfd, ["eval", str(folder), "--env", "addition", "--env-args", "{digits: 2}", "--n", "2", "--quiet"]
    )
    assert expected in line, line


def test_a_dense_policys_thoughts_read_through_its_codec(
    dense_run, dense_dir, addition_codec, tmp_path, capfd
):
    out = tmp_path / "map"
    capfd.readouterr()
    assert (
        main(
            [
                "codec",
                "fit-map",
                str(dense_run),
                str(addition_codec),
                "--env",
                "addition",
                "--env-args",
                "{digits: 2}",
                "--n",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    held = printed["held_out"]
    assert printed["pairs"] == printed["fitted_pairs"] + held["pairs"] and held["pairs"] > 0
    assert {"r2", "chunk_exact", "token_accuracy", "baseline_chunk_exact", "code_exact"} <= held.keys()
    assert json.loads((out / "map.json").read_text())["report"] == {
        k: v for k, v in printed.items() if k not in ("stage", "map")
    }
    assert main(["inspect", str(dense_run), "--prompt", "12+34=", "--codec-map", str(out)]) == 0
    shown = capfd.readouterr().out
    assert f"codec map: {printed['pairs']} pairs" in shown and "codec reads" in shown
    # a map needs thoughts: the as-is model (feedback off) has none
    line = one_error(
        capfd,
        [
            "codec",
            "fit-map",
            str(dense_dir),
            str(addition_codec),
            "--env",
            "addition",
            "--out",
            str(tmp_path / "m2"),
        ],
    )
    assert f"{dense_dir}: has neuralese mode 'off', so it has no thoughts to map" in line
