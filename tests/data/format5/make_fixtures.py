"""Write the interrupted run directories of ``tests/test_format5_fixtures.py``.

Run once with the grok_interp of main 0073e3b (format 5), from the repository root:
``python tests/data/format5/make_fixtures.py``. Each run is stopped by a callback at a
history row after a checkpoint, as a killed process leaves it: unfinished, with its
newest resume state. The test resumes them with today's code and compares the result
with an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grok_interp as g
from grok_interp.vision import load_shapes, train_resnet

HERE = Path(__file__).resolve().parent

#: The transformer run: stopped at step 30 (resume state 20), trained to 40.
TRANSFORMER = dict(p=11, d_model=16, n_heads=2, d_mlp=32, steps=40, eval_every=10, checkpoint_every=20,
                   device="cpu", progress=False, threads=1, batch_parts=1)
#: The ResNet run: stopped at epoch 3 (resume state 2), trained to 4.
RESNET = dict(image_size=16, width=2, subset=60, batch_size=30, eval_batch_size=60, device="cpu", epochs=4,
              eval_every=1, checkpoint_every=2, progress=False)


class Stop(Exception):
    pass


def stop_at(step: int):
    def cb(s, model, ctx):
        if s == step:
            raise Stop
        return {}
    return cb


def main() -> None:
    for name, at, train in (("transformer", 30, lambda out, cb: g.train_hooked(out=out, callbacks=[cb], **TRANSFORMER)),
                            ("resnet", 3, lambda out, cb: train_resnet(out=out, callbacks=[cb],
                                                                       dataset=load_shapes(16), **RESNET))):
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        try:
            train(out, stop_at(at))
        except Stop:
            pass
        (out / ".lock").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
