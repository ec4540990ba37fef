"""The training loop's progress display: off a terminal, a log line per PROGRESS_LOG_SECONDS with the
share of the epoch done, rows/s and the time left; a bar on a terminal; nothing with progress "never".

Time is a fake clock read by the progress display alone, 10 s later at every reading, so the lines
fall on known batches: with 10 batches of 100 rows an epoch, every third batch is 30 s after the last
line, and 300 rows in 30 s is 10 rows/s.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

import r2led_model.training.trainer as trainer
from r2led_model.config import TrainingConfig
from r2led_model.training.trainer import PROGRESS_LOG_SECONDS, fit
from tests.helpers import ClickTask, click_rows

NUM_ITEMS = 40
CONFIG = TrainingConfig(epochs=2, batch_size=100, learning_rate=0.05, patience=5, seed=3, evals_per_epoch=1)
TRAIN, VALID = click_rows(1000, 1, NUM_ITEMS), click_rows(200, 2, NUM_ITEMS)
PROGRESS_LINE = re.compile(r"epoch \d+: ")  # an evaluation's line reads "epoch N step S: ..."


class ItemLogit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logit = nn.Embedding(NUM_ITEMS, 1)

    def forward(self, batch):
        return self.logit(batch["target_item"]).squeeze(-1)  # (B,)


def batches(rows, size):
    return [{k: v[i:i + size] for k, v in rows.items()} for i in range(0, len(rows["label"]), size)]


@pytest.fixture
def clock(monkeypatch):
    readings = []
    ticks = itertools.count(0.0, 10.0)

    def read():
        readings.append(next(ticks))
        return readings[-1]

    monkeypatch.setattr(trainer, "_progress_clock", read)
    return readings


def run(progress: str, caplog) -> list[str]:
    """Fit two epochs → the progress lines logged, loss left out (checked to be a number)."""
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger=trainer.__name__):
        fit(ClickTask(ItemLogit()), train_batches=lambda epoch: batches(TRAIN, 100),
            valid_batches=lambda: batches(VALID, 100), config=replace(CONFIG, progress=progress))
    lines = [r.getMessage() for r in caplog.records if PROGRESS_LINE.match(r.getMessage())]
    shown, losses = zip(*(line.rsplit(", loss ", 1) for line in lines)) if lines else ((), ())
    assert all(0 < float(loss) < 1 for loss in losses)
    return list(shown)


def test_off_a_terminal_each_interval_logs_the_share_done_the_rate_and_the_time_left(monkeypatch, caplog, clock):
    assert PROGRESS_LOG_SECONDS == 30
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert run("auto", caplog) == [
        # The first epoch's length is unknown: batches and rows so far.
        "epoch 0: 3 batches, 300 rows, 10 rows/s",
        "epoch 0: 6 batches, 600 rows, 10 rows/s",
        "epoch 0: 9 batches, 900 rows, 10 rows/s",
        # The next one is expected to be as long (10 batches): 7 batches to go at 10 s each.
        "epoch 1: 30% (3/10 batches), 300 rows, 10 rows/s, ETA 1m10s",
        "epoch 1: 60% (6/10 batches), 600 rows, 10 rows/s, ETA 40s",
        "epoch 1: 90% (9/10 batches), 900 rows, 10 rows/s, ETA 10s",
    ]
    assert sys.stderr.getvalue() == ""  # no bar


def test_never_shows_nothing_and_a_terminal_gets_a_bar_instead_of_lines(monkeypatch, caplog, clock):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert run("never", caplog) == [] and clock == []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert run("auto", caplog) == [] and clock == []
    assert "epoch 1" in sys.stderr.getvalue()  # tqdm's bar
