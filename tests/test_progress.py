"""Progress bars: as usual on a terminal, a few lines at most in a log."""

import time

import torch

from captum_rise import RISE


def slow_model(x):
    time.sleep(0.004)
    return x.flatten(1).sum(1)


def refreshes(capsys, monkeypatch, terminal):
    monkeypatch.setattr("captum_rise._progress.is_terminal", lambda: terminal)
    RISE(slow_model).attribute(
        torch.rand(1, 1, 8, 8), n_masks=400, perturbations_per_eval=1, show_progress=True
    )
    err = capsys.readouterr().err
    assert "RISE attribution" in err
    return err.count("\r")


def test_in_a_log_the_bar_writes_its_start_and_end_only(capsys, monkeypatch):
    # 400 forwards of >= 4 ms: a terminal bar refreshes every 0.5 s, a log's every 30 s.
    assert refreshes(capsys, monkeypatch, terminal=False) <= 3
    assert refreshes(capsys, monkeypatch, terminal=True) >= 4
