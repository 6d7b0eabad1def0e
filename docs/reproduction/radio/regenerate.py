"""Regenerates every number and the figure of docs/reproduction/radio/README.md (issue 12, point 3):
radio.json (per-episode returns and collisions of every arm), tables.md, radio.png, logs/.

    OMP_NUM_THREADS=1 .venv/bin/python docs/reproduction/radio/regenerate.py   # from the repo root

~13 min on one core (shared). The S = 0 ablation needs its run, which is not committed (runs/ is ignored;
its log and config are, in logs/); train it first (~12 min on one core):

    OMP_NUM_THREADS=1 .venv/bin/lgtc train --algo lgtc-ippo --scenario paper_10x4 --steps 256000 --seed 1 \
        --out runs/radio/lgtc-ippo-s0_s1 --threads 1 --set minibatch_size=256 learning_rate=8e-4 bf16=true zero_s=true

Without it the ablation is left out of the outputs (and said so). Everything else is seeded:
the same command gives the same numbers.
"""
import os
import shutil
from pathlib import Path

import torch

from lgtc_ros import studies

EPISODES = 100
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RUN = Path("runs/radio/lgtc-ippo-s0_s1")
FIG3 = Path("docs/reproduction/fig3")

torch.set_num_threads(1)
os.chdir(ROOT)  # the paths recorded in radio.json stay relative to the repository
have_run = (RUN / "policy.pt").exists()
if not have_run:
    print(f"no {RUN / 'policy.pt'}: the S = 0 ablation is left out (train it with the command in this file)")
studies.radio_report(HERE.relative_to(ROOT), episodes=EPISODES, model=studies.RADIO_MODEL,
                     ablation_run=RUN if have_run else None,
                     baseline_log=FIG3 / "logs" / "lgtc-ippo_s1_train_log.csv",
                     baseline_eval=FIG3 / "evals" / "lgtc-ippo_s1.csv")
if have_run:
    (HERE / "logs").mkdir(exist_ok=True)
    shutil.copyfile(RUN / "train_log.csv", HERE / "logs" / "lgtc-ippo-s0_s1_train_log.csv")
    shutil.copyfile(RUN / "config.json", HERE / "logs" / "lgtc-ippo-s0_s1_config.json")
print(f"wrote {HERE.relative_to(ROOT)}/radio.json, tables.md, radio.png")
