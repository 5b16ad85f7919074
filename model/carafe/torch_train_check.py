"""CARAFE's native CUDA training path in PyTorch (model.reference.carafe through carafe_lib and the CUDA library)
against autograd through its PyTorch definition on the same GPU: outputs and both gradients on odd shapes in
float32 and float16, then the forward+backward time of the model's two heaviest nodes, native vs decomposition.

    STARDETR_CUDA_PLUGIN=build/amd64/libstardetr_carafe_train_cuda.so python3 -m model.carafe.torch_train_check

scripts/gpu check runs it. One line per check, "ok"/"FAIL", then "torch_train NAME NATIVE_US DECOMPOSITION_US";
exits 1 if a check failed or the native path was not taken, with one line on stderr if PyTorch has no CUDA device.
"""
import contextlib
import sys
import time


def main():
    try:
        import torch
        from model.reference import carafe_lib
        from model.reference.carafe import carafe, decomposition
    except ImportError as e:
        sys.exit("torch_train_check: %s: install PyTorch (with CUDA) for python3" % e)
    if not torch.cuda.is_available():
        sys.exit("torch_train_check: PyTorch %s sees no CUDA device: install a CUDA build of PyTorch" % torch.__version__)
    if carafe_lib._load("cuda") is None:
        sys.exit("torch_train_check: no CUDA CARAFE library at %s: run make cuda-train-lib" % carafe_lib.library_path("cuda"))
    print("torch_train_check: PyTorch %s on %s, %s" % (torch.__version__, torch.cuda.get_device_name(),
                                                        carafe_lib.library_path("cuda")), file=sys.stderr)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    calls = {"n": 0}
    real = carafe_lib.backward

    def counted(*a):
        r = real(*a)
        calls["n"] += r is not None
        return r
    carafe_lib.backward = counted

    def run(f, m, go, k, g, s, native):
        f, m = f.detach().requires_grad_(), m.detach().requires_grad_()
        with contextlib.nullcontext() if native else decomposition():
            out = carafe(f, m, k, g, s)
        out.backward(go)
        return out.detach(), f.grad, m.grad

    failed = 0
    shapes = [(2, 13, 7, 11, 1, 3, 1), (2, 10, 5, 9, 2, 5, 2), (2, 12, 9, 4, 4, 7, 3), (2, 5, 6, 7, 1, 1, 2),
              (1, 7, 1, 6, 1, 5, 2), (2, 64, 20, 20, 1, 3, 1), (2, 256, 20, 20, 1, 5, 2), (1, 9, 11, 13, 3, 9, 2)]
    for dtype in (torch.float32, torch.float16):
        for n, c, h, w, g, k, s in shapes:
            f = torch.rand((n, c, h, w), device=dev, generator=gen).mul(2).sub(1).to(dtype)
            m = torch.rand((n, g * k * k, h * s, w * s), device=dev, generator=gen).mul(2).sub(1).to(dtype)
            go = torch.rand((n, c, h * s, w * s), device=dev, generator=gen).mul(2).sub(1).to(dtype)
            before = calls["n"]
            got = run(f, m, go, k, g, s, True)
            taken = calls["n"] == before + 1
            # The decomposition in float32 on the same (rounded) inputs: the native path computes in float32.
            want = run(f.float(), m.float(), go.float(), k, g, s, False)
            mag = run(f.float().abs(), m.float().abs(), go.float().abs(), k, g, s, False)
            tol = 1e-5 if dtype == torch.float32 else 2e-3  # float16: the result is rounded to half
            errs = [((a.float() - b).abs() / (1 + c_)).max().item() for a, b, c_ in zip(got, want, mag)]
            ok = taken and all(e <= tol for e in errs) and all(a.dtype == dtype for a in got)
            failed += not ok
            print("%s %s N=%d C=%d %dx%d G=%d k=%d s=%d native=%s worst out/gfeat/gmask %.1e %.1e %.1e" % (
                "ok  " if ok else "FAIL", str(dtype)[6:], n, c, h, w, g, k, s, taken, *errs), flush=True)

    # Forward+backward of one node, 20 warm-up and 100 timed steps, native vs decomposition.
    for name, c, h, w, k, s in (("c256_40x40_k5s2", 256, 40, 40, 5, 2), ("c256_80x80_k3s1", 256, 80, 80, 3, 1)):
        f = torch.rand((1, c, h, w), device=dev, generator=gen)
        m = torch.rand((1, k * k, h * s, w * s), device=dev, generator=gen)
        go = torch.rand((1, c, h * s, w * s), device=dev, generator=gen)
        us = []
        for native in (True, False):
            for _ in range(20):
                run(f, m, go, k, 1, s, native)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(100):
                run(f, m, go, k, 1, s, native)
            torch.cuda.synchronize()
            us.append(1e6 * (time.perf_counter() - t0) / 100)
        print("torch_train %s %.1f %.1f" % (name, us[0], us[1]), flush=True)
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
