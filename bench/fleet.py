"""A fleet of agents against one backend: the real rotation policy in virtual time.

    .venv/bin/python bench/fleet.py [--agents 100000] [--hours 24] [--capacity 2000] [--out bench/out/fleet.png]

Each simulated agent is the ``agent.rotator.Rotator`` loop reduced to its
decisions, and every decision is made by the ``agent.rotation`` core the
rotator's own calls go through (its float-seconds functions; the rotator's
datetime faces only measure durations and call them): ``refresh_after`` on
every install, ``rejection_for`` before it, ``serveable_for`` on every action
(credentials past their drop point are dropped, as the rotator's watcher does),
``retry_after`` after a failed fetch with the seconds left on what is held, the
failures-in-a-row count and whether the backend answered Throttling. A fetch is
what the daemon's ``StsClient(max_attempts=2)`` does: a retryable failure
(Throttling, unreachable) is retried once within the fetch after
``agent.sts_client.retry_pause``. Nothing sleeps: one event per agent action in
a calendar queue (a list per second of virtual time, sorted when it comes due;
the rare same-second retry goes through a heap); times are float seconds. A
refresh that succeeds with no outage ahead runs that agent's later refreshes
ahead in one loop, each still decided by the policy (``simulate``; ``--exact``
turns that off).

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
  capacity (C/4 = 500/s by default, 8x the fleet's steady load).

Goals, checked and printed: steady-state peak <= 2x mean (busiest minute);
after an outage the recovery's calls per second stay <= C (so nothing is
throttled), and every agent holds fresh credentials again before its held ones
drop; no agent ever serves expired credentials.

What the recovery goal excludes, and why: an agent's last call before its
credentials drop comes ``rotation.LAST_CALL`` (0.5-1 s) before the drop point,
so that a real fetch (a round trip to STS) completes before it. An outage that
ends after that call and before the drop leaves the agent no call in between:
no schedule that leaves its last fetch time to complete can save it (the model
answers at once, a real backend does not). Those agents are counted and
excluded, and only if their drop came less than ``LAST_CALL[1]`` after the end
and they made no call between the end and the drop; any other drop after the
outage (a call throttled, a schedule that slept past its last call) fails the
goal.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import rotation as policy  # noqa: E402
from agent import sts_client  # noqa: E402

BENCHMARK = "fleet: 100,000 agents' rotation policy in virtual time against a backend of capacity C (PNG plot)"

CLIENT_ATTEMPTS = 2  # the daemon's StsClient(max_attempts=2), with its default backoff (sts_client.retry_pause)
REACH = policy.LAST_CALL[1]  # an outage ending less than this before a drop may fall after the agent's last call


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
    events: int  # agent actions, each decided by the policy
    ran_ahead: int  # of them, refreshes run ahead (see ``simulate``); 0 when run event by event
    wall_seconds: float
    min_left_served: float  # least time left, over every agent, on credentials it served (s)
    expired_served: int  # agents that served credentials at or past their expiry (goal: 0)
    dry_agents: int  # agents that, once they had held credentials, were left holding none
    dry_after_outage: list[tuple[float, bool]]  # drops after the outage ended: (seconds after its end, whether
    # the agent made a call between the end and the drop)
    recovered_at: float | None  # first time after the outage end when every agent held fresh credentials
    earliest_drop_after_outage: float | None  # when the first credentials held at the outage end would drop
    ready_at: float | None  # cold start: when the last agent first held credentials


def simulate(sc: Scenario, *, fast: bool = True) -> Result:
    """Run ``sc``: one event per agent action, in a calendar queue of a list per second of virtual time.

    With ``fast``, a refresh that succeeds while the backend is up and no outage lies ahead before the
    agent's next one runs that agent's refreshes ahead in one loop, up to the outage (or the horizon):
    each is still decided by ``serveable_for``, ``rejection_for`` and ``refresh_after``, and counted in
    its second. That is exact as long as no such second reaches the capacity (its first C calls are
    answered, whatever their order); when one does, the run is made again without running ahead.
    """
    rng = random.Random(sc.seed)
    draw = rng.random
    n, horizon, cap, life, lead = sc.agents, sc.seconds, sc.capacity, sc.lifetime, sc.refresh_before_expiry
    down_from, down_to = sc.outage or (math.inf, math.inf)
    refresh_after, retry_after, rejection_for = policy.refresh_after, policy.retry_after, policy.rejection_for
    serveable_for, pause, margin = policy.serveable_for, sts_client.retry_pause, policy.SERVE_MARGIN.total_seconds()
    none = -math.inf  # the expiration of nothing held: no time left, never serveable

    calls, refused, throttled = [0] * horizon, [0] * horizon, [0] * horizon
    expires = [none] * n  # of the credentials each agent holds
    failures = [0] * n  # failed fetches in a row (the rotator's _failures)
    call_no = [1] * n  # which StsClient attempt of the current fetch the agent's next event makes
    last_call = [none] * n
    sick = [True] * n  # failing or holding nothing
    dropped = [False] * n
    unhealthy = never_held = n
    dry_agents = expired_served = 0
    min_left = math.inf
    dry_after: list[tuple[float, bool]] = []
    recovered_at = earliest_drop = ready_at = None
    calendar: list[list[tuple[float, int]]] = [[] for _ in range(horizon)]
    ahead = bytearray(horizon)  # seconds holding refreshes run ahead
    ran_ahead = 0

    if sc.warm:
        # A running fleet: each agent somewhere in its refresh interval (from the real refresh_after),
        # holding what it installed at the interval's start.
        for a in range(n):
            interval = refresh_after(life, draw(), lead)
            issued = -interval * draw()
            expires[a] = issued + life
            sick[a] = False
            point = issued + interval
            if point < horizon:
                calendar[int(point)].append((point, a))
        unhealthy = never_held = 0
    else:
        calendar[0] = [(0.0, a) for a in range(n)]

    pop, push = heapq.heappop, heapq.heappush
    outage_end = int(down_to) if down_to < horizon else -1
    events = 0
    started = time.perf_counter()
    for second in range(horizon):
        if second == outage_end:
            earliest_drop = min((e - margin for e in expires if e - margin >= down_to), default=None)
        due = calendar[second]
        if not due:
            continue
        calendar[second] = None  # type: ignore[call-overload]  # nothing lands here any more
        events += len(due)
        due.sort(reverse=True)  # popped from the end, earliest first; a retry due within this second goes
        soon: list[tuple[float, int]] = []  # into `soon`, a heap, and the two are merged in time order
        made, refusals, throttles = calls[second], 0, 0  # refreshes run ahead into this second came first
        down = down_from <= second + 1 and second < down_to
        while True:
            if soon:
                t, a = pop(soon) if not due or soon[0] < due[-1] else due.pop()
            elif due:
                t, a = due.pop()
            else:
                break
            expiry = expires[a]
            if expiry == none:
                held = None
            else:
                held = expiry - t
                if not serveable_for(held):  # dropped at the drop point, served until then
                    drop = expiry - margin
                    if margin < min_left:
                        min_left = margin
                    if drop >= down_to:
                        dry_after.append((drop - down_to, last_call[a] >= down_to))
                    expires[a] = expiry = none
                    held = None
                    if not dropped[a]:
                        dropped[a] = True
                        dry_agents += 1
                    if not sick[a]:
                        sick[a] = True
                        unhealthy += 1
            last_call[a] = t
            busy = False
            if down and down_from <= t < down_to:
                refusals += 1
                ok = False
            else:
                made += 1
                ok = made <= cap
                if not ok:
                    throttles += 1
                    busy = True
            if ok and rejection_for(held, life) is None:
                if held is not None:  # served until now, replaced now
                    if held < min_left:
                        min_left = held
                    if held <= 0:
                        expired_served += 1
                expires[a] = t + life
                failures[a] = 0
                call_no[a] = 1
                if sick[a]:
                    sick[a] = False
                    unhealthy -= 1
                    if never_held and held is None and not dropped[a]:
                        never_held -= 1
                        if never_held == 0:
                            ready_at = t
                    if unhealthy == 0 and recovered_at is None and t >= down_to:
                        recovered_at = t
                nxt = t + refresh_after(life, draw(), lead)
                quiet = min(down_from, horizon) if t < down_from else horizon if t >= down_to else 0.0
                if fast and second + 1 <= nxt < quiet:  # run ahead: the backend answers until `quiet`
                    fresh, last = t + life, t
                    while nxt < quiet:
                        held = fresh - nxt
                        if not serveable_for(held) or rejection_for(held, life) is not None:
                            break  # left to the event at nxt, which asks the policy again
                        slot = int(nxt)
                        calls[slot] += 1
                        ahead[slot] = 1
                        if held < min_left:
                            min_left = held
                        fresh, last = nxt + life, nxt
                        ran_ahead += 1
                        nxt += refresh_after(life, draw(), lead)
                    expires[a], last_call[a] = fresh, last
            elif not ok and call_no[a] < CLIENT_ATTEMPTS:  # the StsClient retries within the fetch
                nxt = t + pause(call_no[a], draw())
                call_no[a] += 1
            else:  # the fetch failed (or was rejected): the rotator's retry schedule
                nxt = t + retry_after(held, failures[a], draw(), throttled=busy)
                failures[a] += 1
                call_no[a] = 1
                if not sick[a]:
                    sick[a] = True
                    unhealthy += 1
            slot = int(nxt)
            if slot == second:
                push(soon, (nxt, a))
                events += 1
            elif slot < horizon:
                calendar[slot].append((nxt, a))
        calls[second], refused[second], throttled[second] = made, refusals, throttles

    if fast and any(ahead[s] and calls[s] > cap for s in range(horizon)):
        return simulate(sc, fast=False)  # the capacity bound where refreshes ran ahead: do it exactly
    # Credentials still held at the end were served until the horizon.
    min_left = min(min_left, min((e for e in expires if e != none), default=math.inf) - horizon)
    return Result(sc, calls, refused, throttled, events + ran_ahead, ran_ahead, time.perf_counter() - started,
                  min_left, expired_served, dry_agents, dry_after, recovered_at, earliest_drop, ready_at)


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
    out_of_reach: int  # drops after the outage that its end came too late to prevent (excluded, see the docstring)
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
    out_of_reach = sum(1 for late, called in r.dry_after_outage if late < REACH and not called)
    if sc.warm and sc.outage is None:
        goals["steady peak <= 2x mean"] = peak <= 2 * mean
    elif sc.outage is not None:
        end = int(sc.outage[1])
        recovery_peak = max(calls[end:end + 3600], default=0)
        goals["recovery peak <= C"] = recovery_peak <= sc.capacity
        goals["every agent fresh again before its credentials dropped"] = (
            r.recovered_at is not None and out_of_reach == len(r.dry_after_outage))
    return Figures(mean, peak, max(window, default=0), recovery_peak, settled, out_of_reach, goals)


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
             f"{sc.lifetime:g} s; {r.events:,} events ({r.ran_ahead:,} refreshes run ahead) in {r.wall_seconds:.1f} s",
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
                     f"(C={sc.capacity}), throttled after it {sum(r.throttled[int(end):]):,}; every agent fresh "
                     f"again {_after(r.recovered_at, end)} after it; the first credentials held at its end were due "
                     f"to drop {_after(r.earliest_drop_after_outage, end)} after it")
        lines.append("  after it the fleet refreshes in waves: busiest minute <= 2x mean " + (
            f"from hour {f.settled_hour} after it on" if f.settled_hour is not None else "not within the run"))
        late = sorted(x for x, _ in r.dry_after_outage)
        lines.append(f"  agents left without credentials: {r.dry_agents} in all, {len(late)} after the outage ended"
                     + (f" (due to drop {late[0]:.2f}-{late[-1]:.2f} s after its end; {f.out_of_reach} of them "
                        f"out of reach: the end came after their last call, {REACH:g} s or less before the drop)"
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
    parser.add_argument("--no-plot", action="store_true", help="figures only")
    parser.add_argument("--exact", action="store_true", help="event by event: no refreshes run ahead (slower)")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run in parallel processes")
    args = parser.parse_args(argv)
    runs = scenarios(args)
    started = time.perf_counter()
    if args.jobs > 1 and len(runs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(runs))) as pool:
            results = list(pool.map(partial(simulate, fast=not args.exact), runs))
    else:
        results = [simulate(sc, fast=not args.exact) for sc in runs]
    judged = [(r, judge(r)) for r in results]
    for r, f in judged:
        print(report(r, f), flush=True)
    if not args.no_plot:
        out = args.out or Path(tempfile.mkdtemp(prefix="rolecall-fleet-")) / "fleet.png"
        plot(judged, out)
        print(f"plot: {out}")
    print(f"{time.perf_counter() - started:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
