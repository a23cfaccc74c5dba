"""The paper network against the documented computation, side by side in one process.

    python benchmarks/paper_vs_reference.py                  # 512x512, every engine here, 5 rounds
    python benchmarks/paper_vs_reference.py --engine fp32 --engine bf16 --repeat 9

``reference`` is ``tests/reference_network.py``: the paper network computed op by op in the
official order (pad, roll, window partition, explicit attention logits, four skip convolutions),
on the same random weights. It stands in for the official implementation, whose code this project
does not ship; the parity tests hold the port to it. Each engine of :mod:`upocr.engines` runs the
same one-task pass; rounds interleave all of them, so a slow spell of a shared host falls on all
alike. Prints one JSON line per engine (median and best seconds, the ratio of medians to the
reference) and a Markdown table with the host's CPU features and fp32 GEMM throughput. Weights
are random: speed does not depend on them (agreement does, see the README).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def main(argv: list[str] | None = None) -> int:
    from engines import host
    from inference_speed import _times
    from reference_network import reference_forward

    from upocr import UPOCR
    from upocr.engines import available_engines, build_engine
    from upocr.tasks import TEXT_SEGMENTATION

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", action="append", help="an engine of upocr.engines (default: all here)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = UPOCR.from_preset("small", img_size=args.size).eval()
    state, config = model.state_dict(), model.config
    task_index = model.tasks.index(TEXT_SEGMENTATION)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))

    def reference():
        with torch.inference_mode():
            reference_forward(state, config, x, task_index)

    runs = {"reference": reference}
    for name in args.engine or available_engines("cpu"):
        engine = build_engine(name, model, "cpu")
        runs[name] = lambda engine=engine: engine.run(x, [TEXT_SEGMENTATION])
    timed, _ = _times(runs, args.repeat)
    machine = host()
    print(json.dumps({"host": machine}))
    base = timed["reference"][0]
    rows = []
    for name, (median, best) in timed.items():
        line = {"engine": name, "size": args.size, "seconds": round(median, 4), "best_seconds": round(best, 4),
                "ratio_to_reference": round(median / base, 3)}
        print(json.dumps(line))
        rows.append(f"| {name} | {median:.3f} s | {best:.3f} s | {median / base:.2f}x |")
    flags = ", ".join(machine["flags"])
    print(f"\nhost: {machine['cpu']}; {flags}; fp32 GEMM {machine['fp32_gemm_gflops']} GFLOP/s; "
          f"{machine['threads']} threads; paper network, one task, {args.size}x{args.size}\n")
    print("| runs | median | best | of the reference |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
