from __future__ import annotations

import itertools
import math

import pytest
import torch

from ls_train.trainer.schedule import WarmupCosine, build_scheduler


def test_warmup_is_linear_then_cosine_reaches_the_floor() -> None:
    f = WarmupCosine(warmup_iters=4, total_iters=14, min_lr_ratio=0.1)
    assert [f(k) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1)
    assert f(100) == pytest.approx(0.1)
    values = [f(k) for k in range(4, 15)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_no_warmup_starts_at_the_peak() -> None:
    assert WarmupCosine(warmup_iters=0, total_iters=10, min_lr_ratio=0.0)(0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warmup_iters": -1, "total_iters": 5, "min_lr_ratio": 0.1},
        {"warmup_iters": 1, "total_iters": 0, "min_lr_ratio": 0.1},
        {"warmup_iters": 1, "total_iters": 5, "min_lr_ratio": 1.5},
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WarmupCosine(**kwargs)


def test_scheduler_state_resumes_exactly() -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
        return opt, build_scheduler(opt, warmup_iters=3, total_iters=10, min_lr_ratio=0.0)

    opt, sched = make()
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    expected = [sched.get_last_lr()[0]]
    for _ in range(3):
        opt.step()
        sched.step()
        expected.append(sched.get_last_lr()[0])
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    got = [sched2.get_last_lr()[0]]
    for _ in range(3):
        opt2.step()
        sched2.step()
        got.append(sched2.get_last_lr()[0])
    assert got == pytest.approx(expected)
