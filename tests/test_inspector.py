"""The thought inspector, checked against values computed another way: the rollout's own
log-probs, the model's own logits, and hand-computed gate and norm values."""

from __future__ import annotations

import math

import matplotlib.image
import pytest
import torch

from neuralese.cli import main
from neuralese.config import NeuraleseConfig
from neuralese.inspector import format_table, inspect_thoughts, lens_logits, plot
from neuralese.policy import NeuralesePolicy

PROMPT = "123+456="
K = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a busy shared CPU two
    threads spin-wait each other (see tests/test_export.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_policy(tiny_dir, mode="latent", gate=0.5, **kw) -> NeuralesePolicy:
    """A policy with every gate entry at tanh(`gate`) and sharpened weights (an untrained tiny
    model has near-uniform logits, so the lens would show near-ties)."""
    cfg = NeuraleseConfig(mode=mode, num_thoughts=K, **kw)
    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=cfg)
    with torch.no_grad():
        policy.adapter.gate_logit.fill_(gate)
        for p in policy.model.parameters():
            p.mul_(3.0) if p.dim() > 1 else None
    return policy.eval()


def rollout(policy, max_new_tokens=6):
    ids, mask = policy.encode([PROMPT])
    return policy.rollout(ids, mask, max_new_tokens, 0.0, torch.Generator().manual_seed(0))


def test_latent_rows_gate_norms_and_cosines(tiny_dir):
    policy = make_policy(tiny_dir, projection="identity")
    ins = inspect_thoughts(policy, PROMPT, max_new_tokens=6, top_k=3)
    ro = rollout(policy)
    assert [th.position for th in ins.thoughts] == list(range(K))
    assert all(th.token == "'<thought>'" for th in ins.thoughts)
    assert ins.answer == policy.decode(ro)[0]
    # One gate value everywhere: every thought passes exactly tanh(0.5) of itself.
    assert ins.gate_mean == pytest.approx(math.tanh(0.5)) and ins.gate_max == pytest.approx(math.tanh(0.5))
    # Identity projection: f is the hidden state rescaled to the embeddings' RMS, so |f| = rms * sqrt(D).
    expected_norm = policy.adapter.target_rms.item() * math.sqrt(policy.hidden_size)
    thought_embedding = policy.embed(torch.tensor([policy.thought_token_id]))[0].norm().item()
    f = ro.feedback[0, ro.prompt_length : ro.prompt_length + K]  # [K, D]
    for i, th in enumerate(ins.thoughts):
        assert th.feedback_norm == pytest.approx(expected_norm, rel=1e-4)
        assert th.gate == pytest.approx(math.tanh(0.5), rel=1e-5)
        assert th.thought_to_token == pytest.approx(
            math.tanh(0.5) * expected_norm / thought_embedding, rel=1e-4
        )
        if i:
            cos = torch.nn.functional.cosine_similarity(f[i], f[i - 1], dim=0).item()
            assert th.cosine_prev == pytest.approx(cos, abs=1e-6)
        assert len(th.lens) == 3 and th.lens[0][1] >= th.lens[1][1] >= th.lens[2][1]
    assert ins.thoughts[0].cosine_prev is None
    torch.testing.assert_close(ins.cosine, ins.cosine.T)
    torch.testing.assert_close(ins.cosine.diagonal(), torch.ones(K))


def test_hybrid_lens_of_the_last_layer_is_what_the_model_wrote(tiny_dir):
    """With layer -1 the fed-back state is the one that produced the token written at the row's
    position: greedy, the lens' top token is that token, with the rollout's own probability."""
    policy = make_policy(tiny_dir, mode="hybrid")
    ins = inspect_thoughts(policy, PROMPT, max_new_tokens=6)
    ro = rollout(policy)
    fed = ro.feedback_mask[0].nonzero().squeeze(-1)
    assert len(ins.thoughts) == len(fed) >= 3
    for th, t in zip(ins.thoughts, fed.tolist()):
        assert th.position == t - ro.prompt_length
        assert th.lens[0][0] == th.token == repr(policy.tokenizer.decode([ro.input_ids[0, t].item()]))
        assert th.lens[0][1] == pytest.approx(ro.logprobs[0, t].exp().item(), rel=1e-5)
    assert not ins.lens_norm  # the last hidden state is already normed


def test_pre_norm_states_go_through_the_final_norm(tiny_dir):
    """The last decoder layer's output, before the final norm, read through the lens of a
    pre-norm layer, gives exactly the model's logits; without the norm it would not."""
    policy = make_policy(tiny_dir, layer=-2)
    captured = {}
    last = policy.model.model.layers[-1]
    hook = last.register_forward_hook(
        lambda m, args, out: captured.update(h=out[0] if isinstance(out, tuple) else out)
    )
    ids, mask = policy.encode([PROMPT])
    with torch.no_grad():
        logits = policy.model(input_ids=ids, attention_mask=mask).logits[0]
    hook.remove()
    lens, normed = lens_logits(policy, captured["h"][0])
    assert normed
    torch.testing.assert_close(lens, logits, atol=1e-5, rtol=1e-5)
    raw = policy.model.get_output_embeddings()(captured["h"][0])
    assert (raw - logits).abs().max() > 1e-2
    ins = inspect_thoughts(policy, PROMPT)
    assert ins.lens_norm and ins.layer == -2


def test_latent_only_input_has_no_gate_to_report(tiny_dir, tmp_path):
    """The thought is the whole input: header, table and picture say n/a, never a number for a gate."""
    policy = make_policy(tiny_dir, input="latent_only")
    ins = inspect_thoughts(policy, PROMPT)
    assert ins.gate_mean is None and all(th.gate is None and th.token_norm is None for th in ins.thoughts)
    table = format_table(ins).splitlines()
    assert "gate |tanh(lambda)| n/a (latent_only" in table[2]
    header = next(i for i, line in enumerate(table) if line.lstrip().startswith("#"))
    assert all(row.count(" n/a ") == 2 for row in table[header + 2 :])  # gate and |g*f|/|e|
    image = matplotlib.image.imread(plot(ins, tmp_path / "thoughts.png"))
    assert image[..., :3].std() > 0.05


def test_table_and_picture(tiny_dir, tmp_path):
    policy = make_policy(tiny_dir)
    ins = inspect_thoughts(policy, PROMPT, top_k=4)
    table = format_table(ins).splitlines()
    assert table[0] == f"prompt: {PROMPT!r}" and table[1] == f"answer: {ins.answer!r}"
    header = next(i for i, line in enumerate(table) if line.lstrip().startswith("#"))
    rows = table[header + 2 :]
    assert len(rows) == K
    assert all(row.split()[0] == str(i + 1) and "'<thought>'" in row for i, row in enumerate(rows))
    assert f"{ins.thoughts[2].feedback_norm:.3f}" in rows[2]
    image = matplotlib.image.imread(plot(ins, tmp_path / "thoughts.png"))
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 800
    assert image[..., :3].std() > 0.05  # something was drawn


def test_cli_inspects_an_exported_folder(tiny_dir, tmp_path, capsys):
    policy = make_policy(tiny_dir, mode="hybrid")
    policy.save_pretrained(tmp_path / "export")
    png = tmp_path / "out.png"
    argv = ["inspect", str(tmp_path / "export"), "--prompt", PROMPT, "--out", str(png), "--top-k", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = format_table(inspect_thoughts(policy, PROMPT, top_k=2))
    assert out.startswith(expected) and f"picture: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_a_model_without_thoughts(tiny_dir, capsys):
    assert main(["inspect", str(tiny_dir), "--prompt", PROMPT]) == 2
    assert "mode 'off'" in capsys.readouterr().err
