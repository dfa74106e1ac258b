"""MIL lstm in numpy (gate order i, f, o, z; coremltools' MIL op reference, iOS15 recurrent ops)."""

from __future__ import annotations

import numpy as np

from edgeq.lower.coreml.mil_exec.ops import f32, op, sigmoid


def _direction(x, h, c, w_ih, w_hh, bias, peephole, clip, reverse: bool):
    hidden = w_hh.shape[1]
    outs = []
    for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
        g = x[t] @ w_ih.T + h @ w_hh.T + bias
        i, f, o, z = (g[:, k * hidden : (k + 1) * hidden] for k in range(4))
        if peephole is not None:
            i, f = i + peephole[:hidden] * c, f + peephole[hidden : 2 * hidden] * c
        if clip is not None:
            z = np.clip(z, -clip, clip)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(z)
        if peephole is not None:
            o = o + peephole[2 * hidden :] * c
        h = sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs[::-1] if reverse else outs), h, c


@op()
def lstm(x, initial_h, initial_c, weight_ih, weight_hh, bias=None, peephole=None, weight_ih_back=None, weight_hh_back=None,
         bias_back=None, peephole_back=None, direction="forward", output_sequence=False, recurrent_activation="sigmoid",
         cell_activation="tanh", activation="tanh", clip=None):
    if (str(recurrent_activation), str(cell_activation), str(activation)) != ("sigmoid", "tanh", "tanh"):
        raise NotImplementedError("lstm activations other than sigmoid/tanh/tanh")
    x, h0, c0 = f32(x), f32(initial_h), f32(initial_c)
    hidden = np.asarray(weight_hh).shape[1]
    clip = None if clip is None else float(clip)

    def params(w_ih, w_hh, b, p):
        return f32(w_ih), f32(w_hh), f32(b) if b is not None else np.zeros(4 * hidden, np.float32), None if p is None else f32(p)

    fwd = params(weight_ih, weight_hh, bias, peephole)
    if str(direction) == "bidirectional":
        back = params(weight_ih_back, weight_hh_back, bias_back, peephole_back)
        y1, h1, c1 = _direction(x, h0[:, :hidden], c0[:, :hidden], *fwd, clip, reverse=False)
        y2, h2, c2 = _direction(x, h0[:, hidden:], c0[:, hidden:], *back, clip, reverse=True)
        y, h, c = np.concatenate([y1, y2], -1), np.concatenate([h1, h2], -1), np.concatenate([c1, c2], -1)
    else:
        y, h, c = _direction(x, h0, c0, *fwd, clip, reverse=str(direction) == "reverse")
    return (y if output_sequence else y[-1:]), h, c
