"""PyTorch in without unpickling user files."""

import io
import pickle

import pytest

torch = pytest.importorskip("torch")

from edgeq.frontend.torch_export import PickleRefused, load_pt2, no_pickles  # noqa: E402


class Payload:
    """Unpickling this would run code in a real attack; here it would just build the object."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_guard_refuses_full_unpickling():
    buf = io.BytesIO()
    torch.save({"x": Payload()}, buf)
    with no_pickles():
        with pytest.raises(Exception) as e:
            torch.load(io.BytesIO(buf.getvalue()), weights_only=False)  # what torch.export.load's fallback asks for
        assert "weights_only" in str(e.value) or "Unsupported global" in str(e.value)
        with pytest.raises(PickleRefused):
            pickle.loads(pickle.dumps(Payload()))
    # Outside the guard, nothing is changed.
    assert pickle.loads(pickle.dumps([1, 2])) == [1, 2]


def test_bundled_pt2_loads_under_the_guard():
    from tests.conftest import SAMPLES

    model = load_pt2(SAMPLES / "fashion_cnn.pt2")
    assert [i.name for i in model.graph.input]
