"""RestartPolicy: when a continuous function's instance comes back after it ended, and when it stops trying."""

from __future__ import annotations

import random

import pytest

from edgefc.supervisor.policy import RestartPolicy

QUICK = 0.05  # an uptime that counts as a crash, well under stable_after


def fails(policy: RestartPolicy, n: int) -> list[float]:
    """The delays of ``n`` quick exits in a row."""
    return [policy.on_exit(QUICK).delay for _ in range(n)]


def test_first_restart_is_immediate_and_not_a_crash_loop() -> None:
    decision = RestartPolicy().on_exit(QUICK)
    assert decision.delay == 0.0
    assert not decision.crash_loop and not decision.give_up


def test_delays_double_from_first_delay() -> None:
    policy = RestartPolicy(first_delay=0.1, jitter=0.0, give_up_after=100)
    assert fails(policy, 6) == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8, 1.6])


def test_delay_is_capped_even_with_jitter() -> None:
    policy = RestartPolicy(first_delay=0.1, cap=2.0, jitter=0.2, give_up_after=1000, rng=random.Random(7))
    delays = fails(policy, 200)
    assert max(delays) <= 2.0
    assert max(delays[20:]) > 2.0 * 0.85  # at the cap, not stuck below it
    assert all(d >= 2.0 * 0.8 for d in delays[20:])


def test_no_overflow_after_very_many_failures() -> None:
    policy = RestartPolicy(cap=30.0, jitter=0.0, give_up_after=10**6)
    assert fails(policy, 3000)[-1] == 30.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jitter_stays_within_bounds_and_varies(seed: int) -> None:
    delays: list[float] = []
    for _ in range(200):
        policy = RestartPolicy(first_delay=1.0, jitter=0.2, cap=100.0, rng=random.Random(seed * 1000 + len(delays)))
        delays.append(fails(policy, 3)[2])  # the third exit: base delay 2.0 s
    assert all(1.6 <= d <= 2.4 for d in delays)
    assert max(delays) - min(delays) > 0.4  # really jittered, not a constant
    assert min(delays) < 2.0 < max(delays)


def test_seeded_policy_is_deterministic() -> None:
    a = RestartPolicy(rng=random.Random(42))
    b = RestartPolicy(rng=random.Random(42))
    assert fails(a, 7) == fails(b, 7)


def test_crash_loop_from_the_third_quick_failure() -> None:
    policy = RestartPolicy(crash_loop_after=3, give_up_after=8)
    loops = [policy.on_exit(QUICK).crash_loop for _ in range(7)]
    assert loops == [False, False, True, True, True, True, True]


def test_gives_up_at_the_threshold() -> None:
    policy = RestartPolicy(crash_loop_after=3, give_up_after=8)
    decisions = [policy.on_exit(QUICK) for _ in range(8)]
    assert [d.give_up for d in decisions] == [False] * 7 + [True]
    assert decisions[-1].crash_loop
    assert policy.failures == 8


def test_a_stable_run_resets_the_count() -> None:
    policy = RestartPolicy(stable_after=10.0, jitter=0.0)
    fails(policy, 5)
    decision = policy.on_exit(10.0)  # ran for stable_after: this exit is a first failure again
    assert decision.delay == 0.0 and not decision.crash_loop
    assert policy.failures == 1
    assert policy.on_exit(QUICK).delay == pytest.approx(0.1)


def test_an_unstable_run_does_not_reset() -> None:
    policy = RestartPolicy(stable_after=10.0, jitter=0.0)
    fails(policy, 3)
    assert policy.on_exit(9.9).crash_loop
    assert policy.failures == 4


def test_reset_forgets_failures() -> None:
    policy = RestartPolicy(jitter=0.0)
    fails(policy, 7)
    policy.reset()
    decision = policy.on_exit(QUICK)
    assert decision.delay == 0.0 and not decision.crash_loop and not decision.give_up


def test_by_default_it_never_gives_up_and_waits_at_most_a_minute() -> None:
    policy = RestartPolicy(rng=random.Random(3))
    decisions = [policy.on_exit(QUICK) for _ in range(500)]
    assert not any(d.give_up for d in decisions)
    assert max(d.delay for d in decisions) <= 60.0
    assert decisions[-1].delay >= 60.0 * 0.8 and decisions[-1].crash_loop


def test_the_cap_is_configurable() -> None:
    policy = RestartPolicy(cap=5.0, jitter=0.0)
    assert fails(policy, 40)[-1] == 5.0
