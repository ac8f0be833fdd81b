"""The bench's CPU rows: the cores a group of processes used between two moments, from the
samples nearest those moments (what scenario 3 prints for the workers and the broker)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from ops.bench.cpu import CpuSampler, cpu_seconds


def sampler(times: list[float], samples: list[dict[str, float]]) -> CpuSampler:
    found = CpuSampler()
    found.times, found.samples = times, samples
    return found


def test_cores_are_the_cpu_seconds_between_the_nearest_samples_over_their_time() -> None:
    cpu = sampler(
        [100.0, 101.0, 102.0, 103.0],
        [
            {"workers": 10.0, "broker": 5.0},
            {"workers": 10.5, "broker": 6.0},
            {"workers": 11.5, "broker": 6.5},
            {"workers": 12.0, "broker": 7.5},
        ],
    )
    assert cpu.cores(101.1, 102.9) == pytest.approx({"workers": 1.5 / 2, "broker": 1.5 / 2})
    assert cpu.cores(99.0, 200.0) == pytest.approx({"workers": 2.0 / 3, "broker": 2.5 / 3})


def test_a_group_watched_after_the_first_sample_counts_from_its_own_first() -> None:
    cpu = sampler(
        [0.0, 1.0, 2.0],
        [{"broker": 1.0}, {"broker": 2.0, "workers": 3.0}, {"broker": 3.0, "workers": 4.0}],
    )
    assert cpu.cores(1.0, 2.0) == pytest.approx({"broker": 1.0, "workers": 1.0})


def test_no_window_no_cores() -> None:
    cpu = sampler([0.0, 1.0], [{"broker": 0.0}, {"broker": 1.0}])
    assert cpu.cores(1.0, 1.0) == {}
    assert sampler([], []).cores(0.0, 1.0) == {}


def test_a_live_process_is_read_and_a_gone_one_is_zero() -> None:
    assert cpu_seconds(psutil.Process(os.getpid())) > 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    handle = psutil.Process(child.pid)
    child.wait()
    assert cpu_seconds(handle) == 0.0
