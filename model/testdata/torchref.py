"""The PyTorch side of the model package's golden and benchmark tests (run with /usr/bin/python3
from the repository root, so that model.reference imports).

  detect ARCH NC SEED H W INPUT.f32 FRAME_W FRAME_H CONF MAX_DET OUT.f32
      Runs the reference model (model.reference.seed.build: the weights the exports carry) on
      the float32 [1,3,H,W] tensor in INPUT.f32 (the tensor Go preprocessed), writes its
      output0 to OUT.f32 and prints the detections of model.reference.predict.postprocess as
      JSON rows [x1, y1, x2, y2, score, class].
  bench ARCH NC SEED H W THREADS RUNS
      Prints the minimum milliseconds of PyTorch eager over RUNS runs on THREADS threads.
"""
import json
import sys
import time

import numpy as np
import torch

from model.reference import predict, seed


def cmd_detect(arch, nc, sd, h, w, inp, fw, fh, conf, max_det, out):
    torch.set_num_threads(1)
    model = seed.build(int(nc), arch, int(sd))
    x = torch.from_numpy(np.fromfile(inp, dtype=np.float32).reshape(1, 3, int(h), int(w)))
    with torch.no_grad():
        y = model(x)
    y = (y[0] if isinstance(y, (list, tuple)) else y)[0].numpy()
    y.astype(np.float32).tofile(out)
    rows = predict.postprocess(y, float(fw), float(fh), float(conf), int(max_det))
    print(json.dumps(rows.tolist()))


def cmd_bench(arch, nc, sd, h, w, threads, runs):
    torch.set_num_threads(int(threads))
    model = seed.build(int(nc), arch, int(sd))
    x = torch.rand(1, 3, int(h), int(w))
    best = float("inf")
    with torch.no_grad():
        model(x)
        for _ in range(int(runs)):
            t = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t)
    print("%.3f" % (best * 1e3))


if __name__ == "__main__":
    {"detect": cmd_detect, "bench": cmd_bench}[sys.argv[1]](*sys.argv[2:])
