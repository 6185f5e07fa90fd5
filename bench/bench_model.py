"""Benchmark (not a test): the bit-accurate numpy model (a2qhls.sim.BitSim) against its peers, in one process.

    .venv/bin/python bench/bench_model.py [--nets mlp,cnn,resnet18] [--threads N]

For each net (the 784-64-64-10 Brevitas A2Q+ MLP of bench_sim.py, the digits CNN of bench_cnn.py, and the
paper's full-size quant_resnet18 A2Q+ P=16 of bench/paper_nets.py with ``--input-quant uint8:0.00392``):
images per second of

* ``BitSim.run`` on a batch (integers out, bit-exact; the dot products as torch's int8 GEMM with int32 sums,
  or on BLAS, where exact; chunks of the batch in ``--threads`` parallel threads), as numpy only
  (``jit=False``, what the default gives below ``BitSim.JIT_MIN_ELEMENTS`` values) and with numba's loops
  (``jit=True``, the ``fast`` extra: the input quantizer, the threshold tables, depthwise convolutions,
  max pools and im2col),
* torch's float forward of the same architecture (the Brevitas net with every quantized layer
  replaced by its float torch layer: same shapes, same weights, no quantizers; for ResNet18
  brevitas_examples' ``float_resnet18``), ``torch.no_grad``,
* QONNX's executor on the batch (``a2qhls.cosimulation.QonnxReference``, a batch-resized graph),
  on a subset of the batch (it is slow), with the agreement of the two on that subset.

numpy's BLAS, torch and the model's chunks run with the same thread count (``--threads``, default all cores;
threadpoolctl).
Goals (issue 12): model/torch >= 1x on all three, model/qonnx >= 10x on the MLP and the CNN.
Times are best of --repeat, wall and CPU time of this process (with one thread, CPU time is the steadier
figure on a shared machine); load average printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from timing import best_interleaved  # bench/timing.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))


def float_twin(model):
    """A float torch copy of a Brevitas model: QuantConv2d/QuantLinear -> Conv2d/Linear (same weights),
    QuantReLU -> ReLU, QuantIdentity -> Identity, TruncAvgPool2d -> AvgPool2d; the rest (BatchNorm,
    pools) kept. Same forward code, same shapes."""
    import copy

    import brevitas.nn as qnn
    import torch.nn as nn

    m = copy.deepcopy(model).eval()

    def swap(parent):
        for name, c in parent.named_children():
            new = None
            if isinstance(c, qnn.QuantConv2d):
                new = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                                c.bias is not None)
            elif isinstance(c, qnn.QuantLinear):
                new = nn.Linear(c.in_features, c.out_features, c.bias is not None)
            elif isinstance(c, qnn.QuantReLU):
                new = nn.ReLU()
            elif isinstance(c, qnn.QuantIdentity):
                new = nn.Identity()
            elif isinstance(c, qnn.TruncAvgPool2d):
                new = nn.AvgPool2d(c.kernel_size, c.stride)
            if new is None:
                swap(c)
                continue
            if hasattr(new, "weight"):
                new.weight.data.copy_(c.weight.data)
                if c.bias is not None:
                    new.bias.data.copy_(c.bias.data)
            setattr(parent, name, new.eval())

    swap(m)
    return m


def nets(names, work: Path):
    """Yield ``(name, onnx path, input_quant, torch model, float inputs [N, ...])``."""
    rng = np.random.default_rng(0)
    for name in names:
        if name == "mlp":
            import brevitas_calibrated

            path = work / "mlp.onnx"
            tm = brevitas_calibrated.export_mlp(path, (784, 64, 64, 10), a2qplus=True, acc_bits=12, w_bits=4, a_bits=4)
            yield name, path, None, tm, rng.normal(0, 1, size=(10000, 784)).astype(np.float32), 2000
        elif name == "cnn":
            import brevitas_cnn

            path = work / "cnn.onnx"
            tm = brevitas_cnn.export_cnn(path)
            d = brevitas_cnn.digits()
            yield name, path, None, tm, np.concatenate([d] * 3)[:4000].astype(np.float32), 1000
        elif name == "resnet18":
            import paper_nets

            from brevitas_examples.imagenet_classification.a2q.resnet import float_resnet18

            model, shape, iq = paper_nets.make_net("resnet18_a2qplus_16")
            path = work / "resnet18.onnx"
            err = paper_nets.export(model, shape, path, "a2qhls_torchscript")
            if err:
                raise RuntimeError(err)
            # Brevitas's QuantResNet asserts QuantTensors in its blocks: its float twin is the float ResNet18
            # that brevitas_examples defines beside it (same stem, stages, shortcuts, pool and linear; random weights)
            yield name, path, iq, float_resnet18(10), rng.uniform(0, 1, size=(64, 3, 32, 32)).astype(np.float32), 8
        else:
            raise SystemExit(f"unknown net {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="mlp,cnn,resnet18")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from a2qhls import load_qonnx, size_accumulators
    from a2qhls.cosimulation import QonnxReference
    from a2qhls.sim import BitSim, to_real

    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.threads} threads for BLAS and torch")
    with tempfile.TemporaryDirectory(prefix="a2q-bench-model-") as d, threadpool_limits(args.threads):
        for name, path, iq, tm, x, nq in nets(args.nets.split(","), Path(d)):
            model = size_accumulators(load_qonnx(str(path), input_quant=iq))
            sim, fused = BitSim(model, jit=False), BitSim(model, jit=True)
            out = model.outputs[0]
            sim.run(x[:8])
            fused.run(x[:8])  # numba's loops loaded (and compiled, the first time on this machine)
            fm = float_twin(tm)
            xt = torch.from_numpy(x.reshape((len(x),) + tuple(model.input_shape)))
            with torch.no_grad():
                fm(xt[:8])
                t_sim, t_jit, t_torch = best_interleaved(
                    [lambda: sim.run(x, threads=args.threads), lambda: fused.run(x, threads=args.threads), lambda: fm(xt)],
                    args.repeat)
            ref = QonnxReference(path, input_quant=iq)
            ref.run(x[:nq])
            (t_q,) = best_interleaved([lambda: ref.run(x[:nq])], min(args.repeat, 3))
            got = to_real(model, out, fused.run(x[:nq])[out])
            assert np.array_equal(fused.run(x)[out], sim.run(x)[out]), "numba's loops changed an integer"
            want = ref.run(x[:nq])[model.output_names[0]].reshape(got.shape)
            agree = int(np.sum(np.all(np.abs(got - want) <= 0.25 * np.asarray(model.tensors[out].scale), axis=1)))
            for k, what in enumerate(("wall", "CPU")):
                sim_r, jit_r, t_r, q_r = len(x) / t_sim[k], len(x) / t_jit[k], len(x) / t_torch[k], nq / t_q[k]
                print(f"{name:9s} {what:4s} model numpy {sim_r:9.0f} img/s, with numba {jit_r:9.0f} img/s | torch float "
                      f"{t_r:9.0f} img/s | qonnx {q_r:8.1f} img/s (on {nq} of {len(x)}; model within 1/4 LSB on {agree}/{nq}) | "
                      f"model/torch {sim_r / t_r:5.2f}x, with numba {jit_r / t_r:5.2f}x (goal >= 1) | model/qonnx "
                      f"{sim_r / q_r:6.1f}x, with numba {jit_r / q_r:6.1f}x" + (" (goal >= 10)" if name != "resnet18" else ""),
                      flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
