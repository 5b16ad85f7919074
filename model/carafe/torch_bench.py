"""Times PyTorch's CARAFE (the model's own decomposition, model.reference.carafe.carafe_forward:
unfold + one broadcast multiply-add per tap) on the GPU, for the same nodes and in the same way as
the CUDA kernel's test (test_carafe_cuda.cu): 20 warm-up calls, 200 timed, CUDA events.

    python3 -m model.carafe.torch_bench        (from the repository root; scripts/gpu check runs it)

One line per node and type on stdout, "torch NAME DTYPE US"; scripts/gpu check divides them by the
kernel's times. Exits 1 with one line on stderr if PyTorch has no CUDA device.
"""
import argparse
import sys

# (name, C, H, W, k, s): the model's heaviest node and its k=3 s=1 node at 640 input (N=1, G=1).
NODES = [("c256_40x40_k5s2", 256, 40, 40, 5, 2), ("c256_80x80_k3s1", 256, 80, 80, 3, 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per node (default 200)")
    args = parser.parse_args()
    try:
        import torch
        from model.reference.carafe import carafe_forward
    except ImportError as e:
        sys.exit("torch_bench: %s: install PyTorch (with CUDA) for python3" % e)
    if not torch.cuda.is_available():
        sys.exit("torch_bench: PyTorch %s sees no CUDA device: install a CUDA build of PyTorch" % torch.__version__)
    print("torch_bench: PyTorch %s on %s" % (torch.__version__, torch.cuda.get_device_name()), file=sys.stderr)
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for dtype, tname in ((torch.float32, "fp32"), (torch.float16, "fp16")):
            for name, c, h, w, k, s in NODES:
                feat = torch.rand((1, c, h, w), device="cuda", dtype=dtype, generator=gen) * 2 - 1
                masks = torch.rand((1, k * k, h * s, w * s), device="cuda", dtype=dtype, generator=gen) * 2 - 1
                for _ in range(20):
                    carafe_forward(feat, masks, k, 1, s)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(args.runs):
                    carafe_forward(feat, masks, k, 1, s)
                end.record()
                torch.cuda.synchronize()
                print("torch %s %s %.2f" % (name, tname, 1e3 * start.elapsed_time(end) / args.runs), flush=True)


if __name__ == "__main__":
    main()
