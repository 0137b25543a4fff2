"""The CUDA-graph builder's control flow (profiling.measure.replay.graph_workload) on a CPU, with a fake
torch.cuda: n grows until a replay lasts the target, a capturable optimizer's eager warm-up
warning is silenced, and a failed capture restores the caller's stream and names the real cause."""

import contextlib
import warnings

import pytest
import torch

from profiling.measure import replay


@pytest.fixture
def fake_cuda(monkeypatch):
    class Stream:
        def __init__(self, device=None, name="side"):
            self.name = name

        def wait_stream(self, other):
            pass

        def __eq__(self, other):
            return isinstance(other, Stream) and other.name == self.name

    default = Stream(name="default")
    state = {"stream": default, "graph": None}

    @contextlib.contextmanager
    def stream(s):
        prev, state["stream"] = state["stream"], s
        try:
            yield
        finally:
            state["stream"] = prev

    class CUDAGraph:
        def __init__(self):
            self.n = 0

        def replay(self):
            for _ in range(self.n):
                sum(range(300))

    class graph:  # like torch: a failing body makes capture_end raise, and the stream is not restored
        def __init__(self, g):
            self.g = g

        def __enter__(self):
            self.prev, state["stream"], state["graph"] = state["stream"], Stream(name="capture"), self.g

        def __exit__(self, *exc):
            state["graph"] = None
            if exc[0] is not None:
                raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
            state["stream"] = self.prev

    for name, value in {"Stream": Stream, "current_stream": lambda device=None: state["stream"], "stream": stream,
                        "synchronize": lambda device=None: None, "CUDAGraph": CUDAGraph, "graph": graph,
                        "set_stream": lambda s: state.__setitem__("stream", s)}.items():
        monkeypatch.setattr(torch.cuda, name, value, raising=False)
    state["default"] = default
    return state


def _step(state, fail=False):
    def step():
        g = state["graph"]
        if g is None:
            warnings.warn("This instance was constructed with capturable=True ... step() is running without "
                          "CUDA graph capture", UserWarning, stacklevel=2)
            sum(range(300))
        elif fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        else:
            g.n += 1
    return step


def test_graph_grows_to_the_target_quietly(fake_cuda):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wl = replay.graph_workload(_step(fake_cuda), torch.device("cuda", 0), target_s=1e-3, max_calls=4096)
    assert not caught
    assert wl.exec == "graph" and wl.calls_per_invocation == wl.info["graph_calls"] > 1
    assert wl.info["graph_replay_s"] >= 0.5e-3 or wl.calls_per_invocation == 4096
    wl.fn()
    wl.close()
    assert fake_cuda["stream"] == fake_cuda["default"]


def test_failed_capture_restores_the_stream_and_names_the_cause(fake_cuda):
    with pytest.raises(replay.GraphCaptureError, match="operation not permitted when stream is capturing"):
        replay.graph_workload(_step(fake_cuda, fail=True), torch.device("cuda", 0))
    assert fake_cuda["stream"] == fake_cuda["default"]
