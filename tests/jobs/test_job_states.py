"""The job state table, pinned: every allowed move, and none besides."""

from __future__ import annotations

from tilerunner.jobs import JOB_REOPENABLE, JOB_TERMINAL, JOB_TRANSITIONS, JobState
from tilerunner.jobs.states import sources_of

P, Q, R, A = JobState.PLANNING, JobState.QUEUED, JobState.RUNNING, JobState.AGGREGATING
S, PA, F = JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED
CING, CED = JobState.CANCELLING, JobState.CANCELLED

EXPECTED = {
    P: set(),
    Q: {P},
    R: {Q, PA, F},  # a retry of what failed reopens a partial or failed job
    A: {Q, R},
    S: {A},
    PA: {A},
    F: {P, Q, R, A},
    CING: {P, Q, R},
    CED: {CING, P, Q, R},
}


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    assert {target: set(sources) for target, sources in JOB_TRANSITIONS.items()} == EXPECTED
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert all(sources_of(target) == JOB_TRANSITIONS[target] for target in JobState)


def test_terminal_states_are_left_only_by_a_retry_reopening_a_job_with_failures() -> None:
    assert {S, PA, F, CED} == JOB_TERMINAL
    assert {PA, F} == JOB_REOPENABLE
    leaving = {
        (source, target)
        for target, sources in JOB_TRANSITIONS.items()
        for source in set(sources) & JOB_TERMINAL
    }
    assert leaving == {(PA, R), (F, R)}


def test_a_planning_job_can_only_be_queued_failed_or_cancelled() -> None:
    leaves = {target for target, sources in JOB_TRANSITIONS.items() if P in sources}
    assert leaves == {Q, F, CING, CED}
    assert JobState("planning") is P
