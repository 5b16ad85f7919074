"""Checks the plugin's exported reference kernel (stardetr_carafe_run "reference", via ctypes)
against the independent numpy CARAFE in carafe_numpy.py, on random inputs and again with NaN and
Inf on the features' borders (a non-finite value must reach exactly the outputs whose window
covers it). Usage: carafe_numpy_test.py LIB.so"""
import ctypes
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from carafe_numpy import carafe  # noqa: E402

TOL = 1e-5


def run_lib(lib, variant, feat, masks, k, g, s):
    n, c, h, w = feat.shape
    ho, wo = math.floor(h * s), math.floor(w * s)
    out = np.full((n, c, ho, wo), np.nan, dtype=np.float32)
    err = ctypes.create_string_buffer(256)
    f = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    rc = lib.stardetr_carafe_run(variant.encode(), f(feat), f(masks), f(out), n, c, h, w, g, k,
                                 ctypes.c_float(s), ho, wo, err, len(err))
    if rc != 0:
        raise RuntimeError("stardetr_carafe_run: rc=%d %s" % (rc, err.value.decode()))
    return out


def poison_border(feat):
    """NaN, +Inf and -Inf on each plane's border: corners and the middle of two edges."""
    h, w = feat.shape[2], feat.shape[3]
    feat[:, :, 0, 0] = np.nan
    feat[:, :, h - 1, w - 1] = np.inf
    feat[:, :, h // 2, 0] = -np.inf
    feat[:, :, h - 1, w // 2] = np.nan
    return feat


def mismatch(got, want):
    """Worst |diff| over the finite expected values; inf if a NaN or Inf is not matched exactly."""
    nan, inf = np.isnan(want), np.isinf(want)
    if not np.array_equal(np.isnan(got), nan) or not np.array_equal(got[inf], want[inf]):
        return math.inf
    fin = ~(nan | inf)
    return float(np.max(np.abs(got[fin] - want[fin]))) if fin.any() else 0.0


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.stardetr_carafe_version.restype = ctypes.c_char_p
    lib.stardetr_carafe_variants.restype = ctypes.c_char_p
    i64 = ctypes.c_int64
    lib.stardetr_carafe_run.argtypes = [ctypes.c_char_p] + [ctypes.POINTER(ctypes.c_float)] * 3 + \
        [i64] * 6 + [ctypes.c_float, i64, i64, ctypes.c_char_p, ctypes.c_size_t]
    variants = lib.stardetr_carafe_variants().decode().split(",")
    rng = np.random.default_rng(4)
    passed = failed = 0
    cases = [  # n, c, h, w, g, k, s
        (2, 13, 7, 11, 1, 3, 1), (2, 10, 5, 9, 2, 5, 2), (2, 12, 9, 4, 4, 7, 3), (2, 5, 6, 7, 1, 1, 2),
        (2, 8, 3, 5, 2, 5, 1.5), (1, 7, 1, 6, 1, 5, 2), (1, 64, 20, 20, 1, 3, 1), (1, 256, 20, 20, 1, 5, 2),
    ]
    for poison in (False, True):
        for n, c, h, w, g, k, s in cases:
            feat = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
            masks = rng.uniform(-1, 1, (n, g * k * k, math.floor(h * s), math.floor(w * s))).astype(np.float32)
            if poison:
                feat = poison_border(feat)
            with np.errstate(invalid="ignore"):  # Inf - Inf: NaN, as in C
                want = carafe(feat, masks, k, g, s)
            # the reference is the definition; the best variant is checked here too, end to end
            for v in ("reference", variants[-1]):
                got = run_lib(lib, v, feat, masks, k, g, s)
                diff = mismatch(got, want)
                ok = diff <= TOL and (poison or not np.isnan(got).any())
                print("%s %-9s N=%d C=%d %dx%d G=%d k=%d s=%g%s max|diff|=%.2e" %
                      ("ok  " if ok else "FAIL", v, n, c, h, w, g, k, s, " NaN/Inf border" if poison else "", diff))
                passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print("reference vs numpy, libstardetr_carafe %s" % lib.stardetr_carafe_version().decode())
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
