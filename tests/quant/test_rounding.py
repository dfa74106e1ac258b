"""GPTQ and AWQ on real layers of the sample: never worse than round-to-nearest at 3 and 4 bits."""

import copy

import numpy as np

from edgeq.quant.awq import fold, foldable_producer, search_scale
from edgeq.quant.build import weight_entry, weighted_nodes
from edgeq.quant.gptq import gptq_weight, layer_stats, supported
from edgeq.quant.simulate import Simulator, with_tensors
from edgeq.quant.weights import derive


def _layers(graph):
    return [(k, n) for k, n in weighted_nodes(graph) if supported(graph, n)]


def test_gptq_lowers_layer_output_error(sample):
    graph, data, _ = sample
    layers = _layers(graph)
    stats = layer_stats(graph, [n for _, n in layers], data)
    for bits in (3, 4):
        total_gptq = total_rtn = 0.0
        for k, n in layers:
            w = graph.initializer(n.input[1])
            wp = derive(weight_entry(graph, k, n, bits), w)
            q, err, rtn = gptq_weight(n, wp, w, stats[n.input[1]])
            assert err <= rtn * (1 + 1e-9), (n.name, bits, err, rtn)
            # the rewritten weight sits exactly on the plan's grid
            from edgeq.quant.weights import grid

            np.testing.assert_array_equal(grid(wp, w.shape).round(q), q)
            total_gptq, total_rtn = total_gptq + err, total_rtn + rtn
        assert total_gptq < 0.95 * total_rtn, (bits, total_gptq, total_rtn)


def test_awq_scaling_is_exact_and_lowers_error(sample):
    graph, data, _ = sample
    layers = [(k, n) for k, n in _layers(graph) if foldable_producer(graph, n) is not None]
    assert layers, "the sample has layers whose input channels can be rescaled"
    stats = layer_stats(graph, [n for _, n in layers], data)
    improved = 0
    for bits in (3, 4):
        for k, n in layers:
            w = graph.initializer(n.input[1])
            wp = weight_entry(graph, k, n, bits)
            s, err, rtn = search_scale(n, copy.deepcopy(wp), w, stats[n.input[1]])
            assert err <= rtn
            improved += err < rtn
    assert improved > 0
    k, n = layers[0]
    s, _, _ = search_scale(n, weight_entry(graph, k, n, 3), graph.initializer(n.input[1]), stats[n.input[1]])
    folded = with_tensors(graph, fold(graph, n, foldable_producer(graph, n), s))
    a, b = Simulator(graph, [], data).run(), Simulator(folded, [], data).run()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-4 * np.abs(a[name]).max())
