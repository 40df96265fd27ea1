"""Reference logits from MXNet itself, to check fcnxs against the original engine.

Run with a Python that has MXNet 1.9.1 (a separate venv: ``pip install mxnet==1.9.1
'numpy<1.24' pillow``; set ``OMP_NUM_THREADS`` to use more than one core):

    python tools/mxnet_reference.py --arch fcn8s --style 2016 --image photo.png --out DIR

It builds the fcn-xs network in MXNet (2016 style: upsamplers with ``adj``; 2015 style:
without), fills it with seeded random weights, saves the checkpoint as
``DIR/FCN-symbol.json`` + ``DIR/FCN-0001.params`` and MXNet's own class scores for the image
(RGB minus the mean, as the example's image_segmentaion.py) as ``DIR/mxnet_logits.npy``.
Then ``fcnxs segment IMAGE --model DIR/FCN --epoch 1 --logits`` must give the same scores.
"""

import argparse
import json
import os
import resource
import time

import mxnet as mx
import numpy as np
from PIL import Image

MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)
BLOCKS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
OFFSETS = {"fcn32s": (19,), "fcn16s": (5, 27), "fcn8s": (5, 9, 31)}
FINAL = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}


def build(arch, classes, style, pooling):
    adj = style == "2016"
    data = mx.sym.Variable("data")
    x, taps = data, {}
    for b, (filters, n) in enumerate(BLOCKS, 1):
        for i in range(1, n + 1):
            pad = 100 if (b, i) == (1, 1) else 1
            x = mx.sym.Convolution(
                x, kernel=(3, 3), pad=(pad, pad), num_filter=filters, name=f"conv{b}_{i}"
            )
            x = mx.sym.Activation(x, act_type="relu")
        x = taps[f"pool{b}"] = mx.sym.Pooling(
            x,
            pool_type="max",
            kernel=(2, 2),
            stride=(2, 2),
            pooling_convention=pooling,
            name=f"pool{b}",
        )
    x = mx.sym.Dropout(
        mx.sym.Activation(
            mx.sym.Convolution(x, kernel=(7, 7), num_filter=4096, name="fc6"), act_type="relu"
        ),
        p=0.5,
    )
    x = mx.sym.Dropout(
        mx.sym.Activation(
            mx.sym.Convolution(x, kernel=(1, 1), num_filter=4096, name="fc7"), act_type="relu"
        ),
        p=0.5,
    )
    x = mx.sym.Convolution(x, kernel=(1, 1), num_filter=classes, name="score")

    def up(x, stride, name):
        extra = {"adj": (stride - 1, stride - 1)} if adj else {}
        return mx.sym.Deconvolution(
            x,
            kernel=(2 * stride, 2 * stride),
            stride=(stride, stride),
            num_filter=classes,
            no_bias=True,
            name=name,
            **extra,
        )

    offsets = OFFSETS[arch]
    skips = [("pool4", "score2", "score_pool4"), ("pool3", "score4", "score_pool3")]
    for (pool, upname, scorename), offset in zip(skips, offsets[:-1], strict=False):
        u = up(x, 2, upname)
        s = mx.sym.Convolution(taps[pool], kernel=(1, 1), num_filter=classes, name=scorename)
        x = u + mx.sym.Crop(s, u, offset=(offset, offset), name=scorename + "c")
    big = up(x, FINAL[arch], "bigscore")
    upscore = mx.sym.Crop(big, data, offset=(offsets[-1], offsets[-1]), name="upscore")
    return mx.sym.SoftmaxOutput(
        upscore, multi_output=True, use_ignore=True, ignore_label=255, name="softmax"
    )


def random_weights(sym, shape, seed):
    rng = np.random.default_rng(seed)
    arg_shapes, _, _ = sym.infer_shape(data=shape)
    params = {}
    for name, s in zip(sym.list_arguments(), arg_shapes, strict=False):
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_bias"):
            value = rng.normal(0, 0.1, s)
        elif len(s) == 4 and name.split("_weight")[0] in ("score2", "score4", "bigscore"):
            value = rng.normal(0, 0.05, s)
        else:
            fan_in = np.prod(s[1:])
            value = rng.normal(0, np.sqrt(2.0 / fan_in), s)
        params[name] = mx.nd.array(value.astype(np.float32))
    return params


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=list(OFFSETS), default="fcn8s")
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--style", choices=["2015", "2016"], default="2016")
    p.add_argument("--pooling", choices=["valid", "full"], default="valid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--time", type=int, metavar="N", help="also time N forward passes")
    p.add_argument(
        "--train-steps",
        type=int,
        metavar="N",
        help="only time N training steps (forward, backward, SGD) and print them as JSON",
    )
    args = p.parse_args()

    image = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32)
    x = (image - MEAN).transpose(2, 0, 1)[None]
    sym = build(args.arch, args.classes, args.style, args.pooling)
    params = random_weights(sym, x.shape, args.seed)
    if args.train_steps:
        print(json.dumps(_train_timing(sym, params, x, args.classes, args.train_steps)))
        return
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, "FCN")
    mx.model.save_checkpoint(prefix, 1, sym, params, {})

    logits_sym = sym.get_internals()["upscore_output"]
    executor = logits_sym.bind(mx.cpu(), {"data": mx.nd.array(x), **params}, grad_req="null")
    logits = executor.forward(is_train=False)[0].asnumpy()[0]
    np.save(os.path.join(args.out, "mxnet_logits.npy"), logits)
    print(
        f"{args.arch} {args.style}: logits {logits.shape}, max |logit| {np.abs(logits).max():.4g}"
    )
    if args.time:
        print(json.dumps(_timing(executor, args.time)))


def _timing(executor, runs):
    """Seconds of a forward pass (the first after binding, then the median of ``runs``)."""

    def once():
        start = time.perf_counter()
        executor.forward(is_train=False)[0].wait_to_read()
        return time.perf_counter() - start

    first = once()
    median = float(np.median([once() for _ in range(runs)]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"first_s": first, "median_s": median, "peak_gib": peak}


def _train_timing(sym, params, x, classes, steps):
    """Seconds of a training step as the tutorial's (SGD, momentum 0.99, weight decay 5e-4,
    bigscore frozen): one warm-up step, then the median of ``steps``."""
    rng = np.random.default_rng(1)
    label = rng.integers(0, classes, (1, x.shape[2] * x.shape[3])).astype(np.float32)
    args = {"data": mx.nd.array(x), "softmax_label": mx.nd.array(label), **params}
    frozen = {"data", "softmax_label", "bigscore_weight"}
    grads = {k: mx.nd.zeros(v.shape) for k, v in args.items() if k not in frozen}
    requests = {k: ("null" if k in frozen else "write") for k in args}
    executor = sym.bind(mx.cpu(), args, args_grad=grads, grad_req=requests)
    updater = mx.optimizer.get_updater(
        mx.optimizer.SGD(learning_rate=1e-6, momentum=0.99, wd=5e-4, rescale_grad=1.0)
    )
    names = sorted(grads)

    def once():
        start = time.perf_counter()
        executor.forward(is_train=True)
        executor.backward()
        for i, name in enumerate(names):
            updater(i, grads[name], args[name])
        mx.nd.waitall()
        return time.perf_counter() - start

    once()
    median = float(np.median([once() for _ in range(steps)]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"median_s": median, "peak_gib": peak}


if __name__ == "__main__":
    main()
