"""Script entry for launchers that take a file, not a module:
`python -m paddle.distributed.launch --nproc_per_node 2 training/train.py --config ...`."""

from __future__ import annotations

import sys

from training.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
