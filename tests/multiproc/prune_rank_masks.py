"""Run `prunecli prune` (argv) under torchrun and save every rank's keep-masks to MASKS_DIR/rank<N>.pt.

Used by tests/multiproc/test_prune_multiproc.py: the saved checkpoint only shows rank 0's masks, so each rank's
own masks are captured when its pruner finishes.
"""

from __future__ import annotations

import os
import sys

import torch

from prunecli.cli import app as cli
from prunecli.sparsity.pruner import Pruner

_original_end = Pruner.on_train_end


def _save_masks(self: Pruner) -> None:
    _original_end(self)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({k: v.clone() for k, v in self.keep_masks().items()},
               os.path.join(os.environ["MASKS_DIR"], f"rank{rank}.pt"))


Pruner.on_train_end = _save_masks

if __name__ == "__main__":
    sys.argv = ["prunecli", *sys.argv[1:]]
    cli.main()
