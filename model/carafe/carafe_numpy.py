"""Independent numpy CARAFE (mmcv semantics), used to check the C reference and the ONNX
Runtime plugin. Written from the definition, not from the C code: zero-pad the features,
and for every tap (i, j) gather the shifted source pixel of each output pixel in float64."""
import numpy as np


def carafe(features, masks, kernel_size, group_size, scale_factor):
    n, c, h, w = features.shape
    ho, wo = masks.shape[2], masks.shape[3]
    k, g, r = kernel_size, group_size, (kernel_size - 1) // 2
    assert c % g == 0 and masks.shape[1] == g * k * k
    padded = np.pad(features.astype(np.float64), ((0, 0), (0, 0), (r, r), (r, r)))
    padded = padded.reshape(n, g, c // g, h + 2 * r, w + 2 * r)
    sy = np.floor(np.arange(ho) / scale_factor).astype(np.int64)  # source centre rows
    sx = np.floor(np.arange(wo) / scale_factor).astype(np.int64)
    m = masks.astype(np.float64).reshape(n, g, k, k, ho, wo)
    out = np.zeros((n, g, c // g, ho, wo))
    for i in range(k):
        for j in range(k):
            # padded row sy+i is source row sy+i-r; zero padding makes out-of-image taps vanish
            tap = padded[:, :, :, sy + i, :][:, :, :, :, sx + j]
            out += m[:, :, None, i, j] * tap
    return out.reshape(n, c, ho, wo)
