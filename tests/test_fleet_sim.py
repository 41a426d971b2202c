"""The fleet simulation's core (bench/fleet.py): 1,000 agents for a few virtual hours.

Each run drives the real ``agent.rotation`` functions; these assert the fleet-level
invariants the benchmark reports for 100,000 agents.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from agent import rotation

_PATH = Path(__file__).resolve().parents[1] / "bench" / "fleet.py"
_spec = importlib.util.spec_from_file_location("bench_fleet", _PATH)
fleet = importlib.util.module_from_spec(_spec)
sys.modules["bench_fleet"] = fleet
_spec.loader.exec_module(fleet)

HOUR = 3600
MARGIN = rotation.SERVE_MARGIN.total_seconds()


def test_steady_fleet_spreads_its_load_and_never_serves_expired():
    r = fleet.simulate(fleet.Scenario("steady", agents=1000, seconds=4 * HOUR, capacity=1000, warm=True))
    f = fleet.judge(r)
    # 1,000 agents of 1-h credentials refreshed at 24-30 min: about 0.6 calls/s.
    assert 0.5 < f.mean < 0.75
    assert f.peak <= 2 * f.mean and f.goals["steady peak <= 2x mean"]
    assert r.expired_served == 0 and r.min_left_served >= MARGIN
    assert r.dry_agents == 0 and sum(r.throttled) == 0 and sum(r.refused) == 0


def test_cold_start_is_throttled_to_capacity_then_every_agent_is_served():
    r = fleet.simulate(fleet.Scenario("cold", agents=1000, seconds=2 * HOUR, capacity=20))
    answered = [c - t for c, t in zip(r.calls, r.throttled, strict=True)]
    assert max(answered) <= 20
    assert r.calls[0] > 20 and sum(r.throttled) > 0  # the whole fleet asks at once
    assert r.ready_at is not None and 1000 / 20 - 1 <= r.ready_at < 600
    assert r.expired_served == 0 and r.dry_agents == 0


def test_outage_then_recovery_within_capacity_and_nobody_left_dry_after_it():
    outage = (1 * HOUR, 1 * HOUR + 30 * 60)
    r = fleet.simulate(fleet.Scenario("outage", agents=1000, seconds=3 * HOUR, capacity=50, warm=True,
                                      outage=outage))
    f = fleet.judge(r)
    assert sum(r.refused) > 1000  # every agent tried, and kept trying, while it was down
    assert r.recovered_at is not None and outage[1] <= r.recovered_at < outage[1] + 600
    assert not r.dry_after_outage and f.goals["every agent fresh again before its credentials expired"]
    assert f.recovery_peak <= 50 and f.goals["recovery peak <= C"]
    assert r.expired_served == 0 and r.min_left_served >= MARGIN


def test_outage_longer_than_the_lifetime_leaves_agents_dry_but_never_serving_expired():
    outage = (HOUR, 2.05 * HOUR)
    r = fleet.simulate(fleet.Scenario("outage", agents=1000, seconds=int(2.5 * HOUR), capacity=1000, warm=True,
                                      outage=outage))
    assert r.dry_agents == 1000  # every credential ran out while the backend was down ...
    assert r.expired_served == 0 and r.min_left_served == pytest.approx(MARGIN)  # ... dropped at drop_at, no later
    assert r.recovered_at is not None and r.recovered_at - outage[1] < 60  # start-up schedule: back within 30 s


def test_offsets_are_the_policys_answers_and_a_clock_dependent_policy_is_refused(monkeypatch):
    import datetime as dt
    import random

    lifetime = dt.timedelta(hours=1)
    offsets, drop = fleet.install_offsets(lifetime, None, random.Random(1))
    now = fleet.EPOCH + dt.timedelta(seconds=12345.5)
    k = 1234
    direct = rotation.refresh_at(now, now + lifetime, jitter_fraction=k / fleet.JITTER_STEPS)
    assert now + dt.timedelta(seconds=offsets[k]) == direct
    assert drop == 3600 - MARGIN
    real = rotation.refresh_at
    # A policy that looked at the wall clock's minute would not shift with the install time.
    monkeypatch.setattr(rotation, "refresh_at", lambda issued, *a, **kw: real(issued, *a, **kw).replace(second=0))
    with pytest.raises(AssertionError, match="absolute time"):
        fleet.install_offsets(lifetime, None, random.Random(1))
