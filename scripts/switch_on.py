"""Switch-on: each arm's accuracy before any RL step, with its own thoughts and with another prompt's.

    python scripts/switch_on.py recipes/ablate_chase.yaml --spec recipes/arms/switch_on.yaml

The arms of a spec file (scripts/ablate.py explains the format) are built from their stage-0 model
exactly as `neuralese train` builds them at step 0, and scored greedily on the problems every run of
the ablation is scored on: with their own thoughts, and, for arms with thoughts, with each answer
reading another prompt's (`shuffled`). The gap between the two is what the answer takes from its
thoughts before RL has taught it anything. Stage-0 models are trained as the ablation trains them
(and shared with it); nothing else is trained. Prints a table; writes OUT/switch_on.md and
OUT/switch_on_table.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablate import check, ensure_as_is, evaluate_policy, parse_args, step0_policy  # noqa: E402  (puts the repo on sys.path)

from neuralese.config import load_config  # noqa: E402


def score(arm, cfg) -> dict:
    """The arm's step-0 policy: own thoughts and, where it has thoughts, shuffled ones."""
    policy = step0_policy(cfg)
    own = evaluate_policy(policy, cfg)
    thoughts = cfg.neuralese.mode != "off" and policy.config.num_thoughts > 0
    shuffled = evaluate_policy(policy, cfg, thoughts="shuffled")["accuracy"] if thoughts else None
    nz = cfg.neuralese
    space = f"{nz.space} ({nz.embedding_weights})" if nz.space in ("embedding", "mix") else nz.space
    what = "token" if nz.mode == "off" else f"{nz.mode}, {space}, {nz.input}"
    return {"arm": arm.name, "feedback": what, "accuracy": own["accuracy"], "shuffled": shuffled,
            "positions": own["mean_generated_positions"], "n": own["n"]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.check:
        check(args)
        return
    import torch

    torch.set_num_threads(args.threads)
    cfg = load_config(args.recipe, args.set)
    out = Path(args.out or Path(cfg.output_dir) / "ablate")
    out.mkdir(parents=True, exist_ok=True)
    as_is = ensure_as_is(args, out)
    rows = []
    for arm in args.arms.values():
        arm_cfg = load_config(args.recipe, [*args.set, f"model.path={as_is[arm.stage0]}", *arm.sets])
        rows.append({**score(arm, arm_cfg), "stage0": arm.stage0})
        r = rows[-1]
        print(f"switch_on: {arm.name}: {r['accuracy']:.3f} (shuffled {r['shuffled']}), {r['positions']:.1f} positions",
              flush=True)  # fmt: skip
    lines = ["| arm | stage 0 | feedback (mode, space, input) | accuracy | shuffled thoughts | positions |",
             "|---|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        shuffled = "—" if r["shuffled"] is None else f"{r['shuffled']:.3f}"
        lines.append(f"| {r['arm']} | {r['stage0']} | {r['feedback']} | {r['accuracy']:.3f} | {shuffled} | "
                     f"{r['positions']:.1f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "switch_on.md").write_text(text)
    (out / "switch_on_table.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
