"""The fleet simulation's core (bench/fleet.py): 1,000-10,000 agents for a few virtual hours.

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
    # the spread: every agent asks again within RETRY_CAP of the end (and its first answer installs)
    assert r.recovered_at is not None and outage[1] <= r.recovered_at < outage[1] + rotation.RETRY_CAP + 1
    assert not r.dry_after_outage and f.goals["every agent fresh again before its credentials dropped"]
    assert f.recovery_peak <= 50 and f.goals["recovery peak <= C"]
    assert r.expired_served == 0 and r.min_left_served >= MARGIN


def test_throttled_recovery_stays_within_capacity_at_eight_times_the_steady_load():
    """The bench's throttle scenario at a tenth of the scale: 10,000 agents, C = 50/s (8x their 6.2/s)."""
    outage = (1 * HOUR, 1 * HOUR + 30 * 60)
    r = fleet.simulate(fleet.Scenario("throttle", agents=10_000, seconds=3 * HOUR, capacity=50, warm=True,
                                      outage=outage))
    f = fleet.judge(r)
    assert 6 < f.mean < 6.4
    assert f.recovery_peak <= 50 and sum(r.throttled) == 0
    assert all(late < fleet.REACH and not called for late, called in r.dry_after_outage)
    assert f.goals == dict.fromkeys(f.goals, True)
    # while down, the fleet's retries (two calls a fetch: the StsClient retries once) are a few times its
    # steady load, not the 35x of a schedule that crowds towards each deadline
    assert sum(r.refused[int(outage[1]) - 300:int(outage[1])]) / 300 / 2 < 5 * f.mean


def test_a_schedule_that_stops_short_of_the_drop_fails_the_recovery_goal(monkeypatch):
    """The goal's exclusion is only the last second before a drop: a last call 30-60 s early is caught."""
    monkeypatch.setattr(rotation, "LAST_CALL", (30.0, 60.0))
    outage = (1 * HOUR, 1 * HOUR + 30 * 60)
    r = fleet.simulate(fleet.Scenario("outage", agents=10_000, seconds=2 * HOUR, capacity=10_000, warm=True,
                                      outage=outage))
    f = fleet.judge(r)
    late = [x for x, called in r.dry_after_outage if not called]
    assert late and max(late) > fleet.REACH and f.out_of_reach < len(r.dry_after_outage)
    assert not f.goals["every agent fresh again before its credentials dropped"]


def test_outage_longer_than_the_lifetime_leaves_agents_dry_but_never_serving_expired():
    outage = (HOUR, 2.05 * HOUR)
    r = fleet.simulate(fleet.Scenario("outage", agents=1000, seconds=int(2.5 * HOUR), capacity=1000, warm=True,
                                      outage=outage))
    assert r.dry_agents == 1000  # every credential ran out while the backend was down ...
    assert r.expired_served == 0 and r.min_left_served == pytest.approx(MARGIN)  # ... dropped at drop_at, no later
    assert r.recovered_at is not None and r.recovered_at - outage[1] < 60  # start-up schedule: back within 30 s


def test_the_simulation_takes_its_decisions_from_agent_rotation(monkeypatch):
    """Swap the policy's retry core: the simulated fleet follows it (the bench holds no copy of the policy)."""
    outage = (HOUR, HOUR + 1800)
    scenario = fleet.Scenario("outage", agents=1000, seconds=2 * HOUR, capacity=10_000, warm=True, outage=outage)
    real = sum(fleet.simulate(scenario).refused)
    monkeypatch.setattr(rotation, "retry_after", lambda *args, **kwargs: 60.0)
    every_minute = sum(fleet.simulate(scenario).refused)
    # each agent fails from its refresh point on (spread over the outage's first 27 min: 16.5 min of failing
    # on average) and now fetches once a minute, two calls a fetch: about 1,000 x 16.5 x 2 while down
    assert 28_000 < every_minute < 38_000 and every_minute > 2 * real


def test_running_ahead_is_the_same_model_as_event_by_event():
    scenario = fleet.Scenario("outage", agents=2000, seconds=3 * HOUR, capacity=50, warm=True,
                              outage=(HOUR, HOUR + 1800))
    fast, exact = fleet.simulate(scenario), fleet.simulate(scenario, fast=False)
    assert fast.ran_ahead > 5000 and exact.ran_ahead == 0
    # another order of the same draws: the same figures within noise, the same goals
    assert sum(fast.calls) == pytest.approx(sum(exact.calls), rel=0.02)
    assert sum(fast.refused) == pytest.approx(sum(exact.refused), rel=0.05)
    assert fleet.judge(fast).goals == fleet.judge(exact).goals == dict.fromkeys(fleet.judge(fast).goals, True)


def test_a_capacity_that_binds_where_refreshes_ran_ahead_makes_the_run_event_by_event():
    r = fleet.simulate(fleet.Scenario("steady", agents=1000, seconds=2 * HOUR, capacity=1, warm=True))
    assert r.ran_ahead == 0 and sum(r.throttled) > 0  # 0.6 calls/s: some seconds hold two
    assert all(c - t <= 1 for c, t in zip(r.calls, r.throttled, strict=True))
