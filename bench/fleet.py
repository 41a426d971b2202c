"""A fleet of agents against one backend: the real rotation policy in virtual time.

    .venv/bin/python bench/fleet.py [--agents 100000] [--hours 24] [--capacity 2000] [--out bench/out/fleet.png]

Each simulated agent is the ``agent.rotator.Rotator`` loop reduced to its
decisions, and every decision is the real ``agent.rotation`` function the
rotator calls: ``refresh_at`` and ``drop_at`` when credentials are installed
(asked once per jitter draw, as offsets from the install, see
``install_offsets``), ``rejection`` before installing, ``retry_delay`` after a
failed fetch (with the failures-in-a-row count and the held credentials,
dropped first once past their drop point). A fetch is what the daemon's
``StsClient`` does: up to ``max_attempts=2`` calls, a retryable failure
(Throttling, 5xx, unreachable) retried once after a full-jitter pause of up to
``backoff_base`` (1 s). Nothing sleeps: one event per agent action in a
calendar queue (a heap per second of virtual time); times are float seconds,
turned into the aware datetimes the policy takes when it is asked.

The model backend answers at once. It has a capacity of C calls per second: in
each second of virtual time the first C calls are answered and the rest get
``Throttling`` (retryable, as AWS's). While it is down every call fails as
unreachable (retryable).

Scenarios (24 h each by default, per-second buckets of calls):

- ``cold``: the whole fleet starts at t=0 holding nothing.
- ``steady``: the fleet has been running: each agent holds credentials issued
  at a uniformly random point of its refresh interval (a warm start).
- ``outage``: steady, then the backend is down for 30 min from hour 6.
- ``throttle``: the outage again against a backend of a quarter of the
  capacity, so the recovery runs into Throttling and the backoff sheds it.

Goals, checked and printed: steady-state peak <= 2x mean (busiest minute);
after an outage every agent holds fresh credentials again before its held ones
drop, and the recovery's calls per second stay <= C; no agent ever serves
expired credentials (per agent: the least time left on what it served).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import heapq
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import rotation as policy  # noqa: E402

BENCHMARK = "fleet: 100,000 agents' rotation policy in virtual time against a backend of capacity C (PNG plot)"

EPOCH = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
JITTER_STEPS = 4096  # jitter draws are k / JITTER_STEPS: 0.09 s apart for 1-h credentials
CLIENT_ATTEMPTS = 2  # the daemon's StsClient(max_attempts=2) ...
CLIENT_BACKOFF_BASE, CLIENT_BACKOFF_CAP = 1.0, 20.0  # ... and its backoff defaults (full jitter)
# Credentials due to drop this soon after an outage ends are beyond any schedule: the rotator's
# retries are at least MIN_DELAY apart and a fetch's second call comes up to a second after its first.
GRACE = policy.MIN_DELAY + CLIENT_BACKOFF_BASE


class Creds(NamedTuple):
    """What the policy reads of ``RoleCredentials``: issue time and expiry (no secrets to model)."""

    last_updated: _dt.datetime
    expiration: _dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """One run: fleet size, horizon, backend capacity and outage, how the fleet starts."""

    name: str
    agents: int
    seconds: int  # the horizon, whole seconds
    capacity: int
    lifetime: float = 3600.0
    warm: bool = False  # agents hold credentials at t=0 (a running fleet) rather than nothing
    outage: tuple[float, float] | None = None  # [start, end) in seconds: every call fails
    refresh_before_expiry: float | None = None
    seed: int = 1


@dataclasses.dataclass(slots=True)
class Result:
    """Per-second counts and per-agent outcomes of one run."""

    scenario: Scenario
    calls: list[int]  # calls reaching the backend, per second (answered + throttled; not while down)
    refused: list[int]  # calls made while the backend was down, per second
    throttled: list[int]  # calls answered Throttling, per second
    events: int
    wall_seconds: float
    min_left_served: float  # least time left, over every agent, on credentials it served (s)
    expired_served: int  # agents that served credentials at or past their expiry (goal: 0)
    dry_agents: int  # agents that, once they had held credentials, were left holding none
    dry_after_outage: list[float]  # drops after the outage ended: how long after its end each was (s)
    recovered_at: float | None  # first second after the outage end when every agent held fresh credentials
    earliest_drop_after_outage: float | None  # when the first credentials held at the outage end would drop
    ready_at: float | None  # cold start: when the last agent first held credentials


def install_offsets(lifetime: _dt.timedelta, lead: _dt.timedelta | None,
                    rng: random.Random) -> tuple[list[float], float]:
    """``policy.refresh_at`` for every jitter draw, and ``policy.drop_at``, as seconds after an install.

    Credentials fetched at ``now`` are issued at ``now`` and expire at ``now + lifetime``, so what the
    rotator's ``_install`` asks the policy (``refresh_at(min(last_updated, now), expiration, jitter)``,
    then ``drop_at``) is ``now`` plus an offset that depends on the jitter draw alone: the policy takes
    times in and gives times out (its Rule 2). The offsets are the real functions' answers, one per
    draw ``k / JITTER_STEPS``; spot checks at random ``now`` confirm the shift holds, else this raises.
    """
    def fetched_at(now: _dt.datetime) -> Creds:
        return Creds(now, now + lifetime)

    def refresh(now: _dt.datetime, k: int) -> _dt.datetime:
        creds = fetched_at(now)
        return policy.refresh_at(min(creds.last_updated, now), creds.expiration,
                                 jitter_fraction=k / JITTER_STEPS, refresh_before_expiry=lead)

    offsets = [(refresh(EPOCH, k) - EPOCH).total_seconds() for k in range(JITTER_STEPS + 1)]
    drop = (policy.drop_at(fetched_at(EPOCH)) - EPOCH).total_seconds()
    for _ in range(64):
        now = EPOCH + _dt.timedelta(seconds=rng.uniform(-1e6, 1e6))
        k = rng.randrange(JITTER_STEPS + 1)
        if (refresh(now, k) - now).total_seconds() != offsets[k] or (
                policy.drop_at(fetched_at(now)) - now).total_seconds() != drop:
            raise AssertionError("agent.rotation's answers depend on the absolute time: simulate it per event")
    return offsets, drop


def simulate(sc: Scenario) -> Result:
    """Run ``sc``: one event per agent action, in a calendar queue (a heap per second of virtual time)."""
    rng = random.Random(sc.seed)
    draw = rng.random
    n, horizon, cap = sc.agents, sc.seconds, sc.capacity
    lifetime = _dt.timedelta(seconds=sc.lifetime)
    lead = None if sc.refresh_before_expiry is None else _dt.timedelta(seconds=sc.refresh_before_expiry)
    down_from, down_to = sc.outage or (math.inf, math.inf)
    retry_delay, rejection, drop_at = policy.retry_delay, policy.rejection, policy.drop_at
    timedelta, seconds_of, inf = _dt.timedelta, _dt.timedelta.total_seconds, math.inf
    refresh_in, drop_in = install_offsets(lifetime, lead, rng)
    steps = len(refresh_in)

    calls, refused, throttled = [0] * horizon, [0] * horizon, [0] * horizon
    held: list[Creds | None] = [None] * n
    drops = [inf] * n  # policy.drop_at(held), as seconds: the rotator's watcher drops them then
    failures = [0] * n  # failed fetches in a row (the rotator's _failures)
    call_no = [1] * n  # which StsClient attempt of the current fetch the agent's next event makes
    min_left = [inf] * n  # per agent: least time left on credentials when it stopped serving them
    sick = [True] * n  # failing or holding nothing
    ever_held = [False] * n
    dropped = [False] * n
    unhealthy = never_held = n
    dry_agents = 0
    dry_after: list[float] = []
    recovered_at = earliest_drop = ready_at = None
    calendar: list[list[tuple[float, int]]] = [[] for _ in range(horizon)]

    if sc.warm:
        # A running fleet: each agent somewhere in its refresh interval (from the real refresh_at),
        # holding what it installed at the interval's start.
        for a in range(n):
            interval = refresh_in[int(draw() * steps)]
            issued = -interval * draw()
            issued_dt = EPOCH + timedelta(seconds=issued)
            held[a] = Creds(issued_dt, issued_dt + lifetime)
            drops[a] = issued + drop_in
            sick[a] = False
            ever_held[a] = True
            point = issued + interval
            if point < horizon:
                calendar[int(point)].append((point, a))
        unhealthy = never_held = 0
    else:
        calendar[0] = [(0.0, a) for a in range(n)]

    heapify, pop, push = heapq.heapify, heapq.heappop, heapq.heappush
    outage_end = int(down_to) if down_to < horizon else -1
    events = 0
    started = time.perf_counter()
    for second in range(horizon):
        if second == outage_end:
            earliest_drop = min((d for d in drops if d >= down_to), default=None)
        due = calendar[second]
        if not due:
            continue
        calendar[second] = None  # type: ignore[call-overload]  # nothing lands here any more
        heapify(due)
        while due:
            t, a = pop(due)
            events += 1
            now = EPOCH + timedelta(seconds=t)
            h = held[a]
            if t >= drops[a]:  # past policy.drop_at: the rotator has dropped them, serving nothing since
                left = seconds_of(h.expiration - drop_at(h))
                if left < min_left[a]:
                    min_left[a] = left
                if drops[a] >= down_to:
                    dry_after.append(drops[a] - down_to)
                held[a], drops[a], h = None, inf, None
                if not dropped[a]:
                    dropped[a] = True
                    dry_agents += 1
                if not sick[a]:
                    sick[a] = True
                    unhealthy += 1
            if down_from <= t < down_to:
                refused[second] += 1
                ok = False
            else:
                calls[second] += 1
                ok = calls[second] <= cap
                if not ok:
                    throttled[second] += 1
            if ok:
                fetched = Creds(now, now + lifetime)
                if rejection(h, fetched, now) is None:
                    if h is not None:
                        left = seconds_of(h.expiration - now)  # served until now, replaced now
                        if left < min_left[a]:
                            min_left[a] = left
                    held[a], failures[a], call_no[a] = fetched, 0, 1
                    drops[a] = t + drop_in
                    if not ever_held[a]:
                        ever_held[a] = True
                        never_held -= 1
                        if never_held == 0:
                            ready_at = t
                    if sick[a]:
                        sick[a] = False
                        unhealthy -= 1
                        if unhealthy == 0 and recovered_at is None and t >= down_to:
                            recovered_at = t
                    nxt = t + refresh_in[int(draw() * steps)]
                else:
                    nxt = None
            elif call_no[a] < CLIENT_ATTEMPTS:  # the StsClient retries a retryable failure within the fetch
                call_no[a] += 1
                nxt = t + draw() * min(CLIENT_BACKOFF_CAP, CLIENT_BACKOFF_BASE * 2 ** (call_no[a] - 2))
            else:
                nxt = None
            if nxt is None:  # the fetch failed (or was rejected): the rotator's retry schedule
                nxt = t + retry_delay(h, now, failures[a], rand=draw(), retryable=True)
                failures[a] += 1
                call_no[a] = 1
                if not sick[a]:
                    sick[a] = True
                    unhealthy += 1
            slot = int(nxt)
            if slot == second:
                push(due, (nxt, a))
            elif slot < horizon:
                calendar[slot].append((nxt, a))

    # Credentials still held at the end were served until the horizon (or their drop point).
    for a, c in enumerate(held):
        if c is not None:
            left = sc.lifetime - (min(float(horizon), drops[a]) - seconds_of(c.last_updated - EPOCH))
            if left < min_left[a]:
                min_left[a] = left
    return Result(sc, calls, refused, throttled, events, time.perf_counter() - started, min(min_left),
                  sum(1 for x in min_left if x <= 0), dry_agents, dry_after, recovered_at, earliest_drop, ready_at)


# ---- figures, goals, plot --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """What one run is judged by (calls per second; times in seconds from the start)."""

    mean: float  # calls/s over the steady window (steady: all; cold: from hour 2; outage: before it)
    peak: float  # the busiest minute of that window, in calls/s
    peak_second: int  # the busiest second of that window
    recovery_peak: int | None  # outage: the most calls in any second of the hour after it
    settled_hour: int | None  # cold, outage: hours (after the start, after the outage) until every later
    # hour's busiest minute is <= 2x mean: a fleet that started, or recovered, at once refreshes in waves
    goals: dict[str, bool]


def judge(r: Result, *, settle: int = 7200) -> Figures:
    """Figures and goals of a run: peak:mean in steady state, the recovery, nothing expired served.

    Peak:mean is per-minute buckets: a per-second count of a small fleet is mostly Poisson noise
    (1,000 agents make about 0.6 calls/s); the busiest second is printed beside it.
    """
    sc, calls = r.scenario, r.calls
    window = calls if sc.warm else calls[settle:]  # cold: the mean once everyone is served
    if sc.outage is not None:  # the steady part: before the outage
        window = calls[: int(sc.outage[0])]
    mean = sum(window) / max(len(window), 1)
    minutes = [sum(window[i:i + 60]) / 60 for i in range(0, len(window) - 59, 60)]
    peak = max(minutes, default=0.0)
    goals = {"no expired credentials served": r.expired_served == 0 and r.min_left_served > 0}
    recovery_peak = settled = None
    if not sc.warm or sc.outage is not None:  # the jitter spreads a synchronised fleet again, hour by hour
        origin = 0 if sc.outage is None else int(sc.outage[1])
        hourly = [max(sum(calls[i:i + 60]) / 60 for i in range(h, h + 3600, 60))
                  for h in range(origin, len(calls) - 3599, 3600)]
        settled = next((h for h in range(len(hourly)) if all(x <= 2 * mean for x in hourly[h:])), None)
    if sc.warm and sc.outage is None:
        goals["steady peak <= 2x mean"] = peak <= 2 * mean
    elif sc.outage is not None:
        end = int(sc.outage[1])
        recovery_peak = max(calls[end:end + 3600], default=0)
        goals["recovery peak <= C"] = recovery_peak <= sc.capacity
        goals["every agent fresh again before its credentials expired"] = (
            r.recovered_at is not None and all(late < GRACE for late in r.dry_after_outage))
    return Figures(mean, peak, max(window, default=0), recovery_peak, settled, goals)


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The four runs the flags describe."""
    common = dict(agents=args.agents, seconds=int(args.hours * 3600), lifetime=args.lifetime,
                  refresh_before_expiry=args.refresh_before_expiry, seed=args.seed)
    outage = (args.outage_at * 3600, args.outage_at * 3600 + args.outage_minutes * 60)
    every = {
        "cold": Scenario("cold", capacity=args.capacity, **common),
        "steady": Scenario("steady", capacity=args.capacity, warm=True, **common),
        "outage": Scenario("outage", capacity=args.capacity, warm=True, outage=outage, **common),
        "throttle": Scenario("throttle", capacity=max(1, args.capacity // 4), warm=True, outage=outage, **common),
    }
    return [every[name] for name in args.scenarios]


def report(r: Result, f: Figures) -> str:
    sc = r.scenario
    lines = [f"{sc.name}: {sc.agents:,} agents, {sc.seconds / 3600:g} h, C={sc.capacity}/s, lifetime "
             f"{sc.lifetime:g} s; {r.events:,} events in {r.wall_seconds:.1f} s",
             f"  steady calls/s: mean {f.mean:.1f}, busiest minute {f.peak:.1f} (peak:mean "
             f"{f.peak / f.mean if f.mean else 0:.2f}), busiest second {f.peak_second}; "
             f"throttled {sum(r.throttled):,}; refused while down {sum(r.refused):,}"]
    if r.ready_at is not None:
        lines.append(f"  cold start: every agent held credentials after {r.ready_at:.0f} s; "
                     f"first-hour peak {max(r.calls[:3600])}/s; busiest minute <= 2x mean "
                     + (f"from hour {f.settled_hour} on" if f.settled_hour is not None else "not within the run"))
    if sc.outage is not None:
        start, end = sc.outage
        lines.append(f"  outage {start / 3600:g} h + {(end - start) / 60:g} min: recovery peak {f.recovery_peak}/s "
                     f"(C={sc.capacity}); every agent fresh again {_after(r.recovered_at, end)} "
                     f"after it; the first credentials held at its end were due to drop "
                     f"{_after(r.earliest_drop_after_outage, end)} after it")
        lines.append("  after it the fleet refreshes in waves: busiest minute <= 2x mean " + (
            f"from hour {f.settled_hour} after it on" if f.settled_hour is not None else "not within the run"))
        late = sorted(r.dry_after_outage)
        lines.append(f"  agents left without credentials: {r.dry_agents} in all, {len(late)} after the outage ended"
                     + (f" (their credentials were due to drop {late[0]:.1f}-{late[-1]:.1f} s after its end; "
                        f"{sum(x < GRACE for x in late)} within {GRACE:g} s, which no retry schedule reaches)"
                        if late else ""))
    lines.append(f"  least time left on served credentials: {r.min_left_served:.0f} s; agents that served expired "
                 f"ones: {r.expired_served}")
    lines += [f"  goal {name}: {'met' if ok else 'NOT MET'}" for name, ok in f.goals.items()]
    return "\n".join(lines)


def _after(point: float | None, start: float) -> str:
    return "never" if point is None else f"{point - start:.0f} s"


def plot(results: list[tuple[Result, Figures]], path: Path) -> None:
    """Calls per second (answered, throttled, refused while down) of every run, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(12, 3.2 * len(results)), squeeze=False)
    for ax, (r, f) in zip(axes[:, 0], results, strict=True):
        sc = r.scenario
        hours = [s / 3600 for s in range(len(r.calls))]
        answered = [c - t for c, t in zip(r.calls, r.throttled, strict=True)]
        ax.plot(hours, r.refused, lw=0.5, color="tab:gray", label="refused (backend down)")
        ax.plot(hours, r.throttled, lw=0.5, color="tab:red", label="Throttling")
        ax.plot(hours, answered, lw=0.5, color="tab:blue", label="answered")
        ax.axhline(sc.capacity, color="black", ls="--", lw=0.8, label=f"C = {sc.capacity}/s")
        ax.axhline(f.mean, color="tab:green", ls=":", lw=0.8, label=f"steady mean {f.mean:.0f}/s")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, len(r.calls) / 3600)
        ratio = f"busiest minute : mean {f.peak / f.mean:.2f}" if f.mean else ""
        extra = f", recovery peak {f.recovery_peak}/s" if f.recovery_peak is not None else ""
        ax.set_title(f"{sc.name}: {sc.agents:,} agents, calls per second ({ratio}{extra})", fontsize=10)
        ax.set_ylabel("calls/s")
        ax.legend(loc="upper right", fontsize=7, ncol=5)
    axes[-1, 0].set_xlabel("hours")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _run(sc: Scenario) -> Result:
    return simulate(sc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--capacity", type=int, default=2000, help="backend calls per second (C)")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="credentials' lifetime, seconds")
    parser.add_argument("--refresh-before-expiry", type=float, default=None, help="seconds; default half-life")
    parser.add_argument("--outage-at", type=float, default=6.0, help="hours from the start")
    parser.add_argument("--outage-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenarios", nargs="+", default=["cold", "steady", "outage", "throttle"],
                        choices=["cold", "steady", "outage", "throttle"])
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run in parallel processes")
    args = parser.parse_args(argv)
    runs = scenarios(args)
    started = time.perf_counter()
    if args.jobs > 1 and len(runs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(runs))) as pool:
            results = list(pool.map(_run, runs))
    else:
        results = [simulate(sc) for sc in runs]
    judged = [(r, judge(r)) for r in results]
    for r, f in judged:
        print(report(r, f), flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="rolecall-fleet-")) / "fleet.png"
    plot(judged, out)
    print(f"plot: {out}; {time.perf_counter() - started:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
