"""Ablation: does neuralese RL beat token RL on a task, and does it use its thoughts? One command, tables, a plot.

    neuralese ablate recipes/ablate_multiplication.yaml --seeds 3
    neuralese ablate recipes/ablate_chase.yaml --spec recipes/arms/chase.yaml --seeds 3
    neuralese ablate RECIPE --seeds 3 [--steps N] [--out DIR] [--arms a,b ...] [--spec ARMS.yaml]
                     [--set key=value ...] [--threads 1] [--check | --switch-on]

Every arm is trained from the same stage-0 model (per variant), for the same steps, on the same
prompts, over several seeds; docs/ablation.md explains the arms, the controls and every column.

    arms.py       the arms: built-in ones, spec files, pause twins; the plan that runs them (`--check`)
    stage0.py     the stage-0 models, the as-is scores and each arm at switch-on (`--switch-on`)
    processes.py  each stage 0 and arm x seed as its own `neuralese` process, with its peak RSS
    run.py        the whole ablation: every arm x seed, then the report
    diagnose.py   why an arm won or lost: gate closed, shuffled thoughts, thought statistics, memory
    rescore.py    every finished run scored again before and after RL (`--diagnose`)
    report.py     OUT/table.md and OUT/accuracy.png
    compare.py    finished ablations side by side (`neuralese compare`)
"""
