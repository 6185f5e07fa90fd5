"""``a2qhls cosim DIR [--random N] [--adversarial] [--inputs FILE.npy] [--json] [--seed S]``.

Compiles the project in DIR with g++, runs it, and compares on the same inputs:
C++ vs the bit-accurate model (bit for bit) and the model vs QONNX's executor.
Exit status: 0 both mismatch counts zero; 1 a mismatch (C++ vs model, or model vs QONNX);
2 usage or input error; 3 C++ and the model agree but the QONNX reference could not run
(the reason is printed on one line).
"""
from __future__ import annotations

import json

from ..errors import A2QError
from ..escape import display

EXIT_MISMATCH = 1
EXIT_NO_REFERENCE = 3  # C++ vs model agree; the QONNX reference failed to run


def add_arguments(p) -> None:
    p.add_argument("dir", metavar="DIR", help="a folder written by 'a2qhls build'")
    p.add_argument("--random", type=int, default=0, metavar="N", help="N random inputs over the input quantizer's range")
    p.add_argument("--adversarial", action="store_true", help="per layer, the inputs driving its worst channel to acc_max / acc_min")
    p.add_argument("--inputs", metavar="FILE.npy", help="float inputs [batch, ...] to run")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--ref-samples", type=int, default=None, metavar="N",
                   help="run the QONNX reference on at most N samples of each group (default: all, or on a large net "
                        "as many as fit 5e9 multiply-accumulates; the output says how many)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cxxflags", default="-O1", help="g++ flags (default -O1; add -DA2Q_CSIM_AP_INT to run the ap_int sums that synthesis compiles instead of the exact native-integer ones)")


def run(args) -> int:
    from ..flow import cosim

    if args.random < 0:
        raise A2QError("--random must be >= 0")
    rep = cosim(args.dir, random=args.random, adversarial=args.adversarial, inputs=args.inputs, seed=args.seed, cxxflags=args.cxxflags,
                ref_samples=args.ref_samples)
    ok = rep["mismatches_cpp_vs_model"] == 0 and rep["mismatches_model_vs_qonnx"] == 0
    status = EXIT_MISMATCH if not ok else (EXIT_NO_REFERENCE if rep["qonnx_error"] else 0)
    if args.json:
        print(json.dumps(rep, indent=2))
        return status
    print(f"compiled {args.dir} with g++ in {rep['compile_seconds']:.1f} s (headers: {rep['headers']})")
    for g in rep["groups"]:
        print(
            f"{display(g['group'])[:28]:28s} {g['samples']:6d} samples  C++ vs model: {g['mismatches_cpp_vs_model']:5d}  "
            f"model vs QONNX (on {g['qonnx_samples']}): {g['mismatches_model_vs_qonnx']:5d} (+{g['qonnx_float32_near_ties']} QONNX float32 near-ties, "
            f"+{g['qonnx_float32_rounding']} float32 sums)   fed to {display(g['fed_to'])}"
        )
        for o in g.get("outputs", []):  # several graph outputs: each one's counts
            print(f"    output {o['port']} ({display(o['name'])[:40]}): C++ vs model {o['mismatches_cpp_vs_model']} mismatches, "
                  f"model vs QONNX {o['output_mismatches_model_vs_qonnx']} output mismatches")
        for ly in g["layers"]:
            if "skipped" in ly:
                continue
            extra = f", activation mismatches {ly['activation_mismatches_vs_qonnx']}" if "activation_mismatches_vs_qonnx" in ly else ""
            print(
                f"    {display(ly['layer'])[:24]:24s} acc {ly['acc_bits']:2d} (safe {ly['safe_acc_bits']:2d}) seen [{ly['acc_min_seen']}, {ly['acc_max_seen']}]"
                f", overflowing samples {ly['samples_overflowing']}{extra}"
            )
    if rep["qonnx_error"]:
        print(f"the QONNX reference could not run ({rep['qonnx_error']}); compared C++ vs model only")
    verdict = "FAIL" if not ok else ("PASS (C++ vs model only)" if rep["qonnx_error"] else "PASS")
    print(
        f"total {rep['samples']} samples: C++ vs model {rep['mismatches_cpp_vs_model']} mismatches, "
        f"model vs QONNX {rep['mismatches_model_vs_qonnx']} mismatches (QONNX run on {rep['qonnx_samples']} of "
        f"{rep['samples']} samples) -> {verdict}"
    )
    return status
