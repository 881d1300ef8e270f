"""Scheduling rules: ready steps, skipping downstream of a failure, run status and phase."""

from autodev.core.engine.scheduling import Progress
from autodev.core.plan import parse_plan

PLAN = parse_plan(
    """
project: p
steps:
  - {id: a, run: x}
  - {id: b, run: x}
  - {id: c, run: x, depends_on: [a]}
  - {id: d, run: x, depends_on: [c, b]}
  - {id: e, run: x, depends_on: [b]}
"""
)


def ids(steps):
    return [s.id for s in steps]


def test_independent_steps_are_ready_in_plan_order():
    progress = Progress(PLAN)
    assert ids(progress.ready(set())) == ["a", "b"]
    assert ids(progress.ready({"a"})) == ["b"]
    assert progress.phase == "a"


def test_a_step_waits_for_all_its_dependencies():
    progress = Progress(PLAN)
    progress.finish("a", "succeeded")
    assert ids(progress.ready(set())) == ["b", "c"]
    progress.finish("c", "succeeded")
    assert "d" not in ids(progress.ready(set()))
    progress.finish("b", "succeeded")
    assert ids(progress.ready(set())) == ["d", "e"]


def test_a_failure_skips_everything_downstream_and_fails_the_run():
    progress = Progress(PLAN)
    progress.finish("b", "succeeded")
    assert progress.finish("a", "timed_out") == ["c", "d"]
    assert progress.status["c"] == progress.status["d"] == "skipped"
    assert ids(progress.ready(set())) == ["e"]
    progress.finish("e", "succeeded")
    assert progress.finished and progress.run_status == "failed"
    assert progress.phase == "failed"


def test_all_succeeded():
    progress = Progress(PLAN)
    for step in PLAN.steps:
        progress.finish(step.id, "succeeded")
    assert progress.run_status == "succeeded" and progress.phase == "done"


def test_a_rewind_reruns_the_step_and_everything_downstream_of_it():
    progress = Progress(PLAN)
    for step_id in ("a", "b", "c", "e"):
        progress.finish(step_id, "succeeded")
    assert progress.rewind("c") == ["c", "d"]  # a, b and e stay done
    assert ids(progress.ready(set())) == ["c"]
    assert progress.status["a"] == progress.status["e"] == "succeeded" and progress.run_status == "running"


def test_ready_stops_at_the_limit_and_finds_steps_rewound_behind_its_starting_point():
    progress = Progress(PLAN)
    assert ids(progress.ready(set(), limit=1)) == ["a"]
    assert progress.ready(set(), limit=0) == []
    for step_id in ("a", "b", "c"):
        progress.finish(step_id, "succeeded")
    assert ids(progress.ready(set(), limit=1)) == ["d"]  # the search now starts past a, b and c
    assert progress.rewind("a") == ["a", "c", "d"]  # a feedback round sends the run back to a
    assert ids(progress.ready(set())) == ["a", "e"]
    progress.finish("a", "blocked")
    assert ids(progress.ready(set())) == ["e"]  # a blocked step holds back only what depends on it
    progress.reopen("a")  # a person chose retry
    assert ids(progress.ready(set(), limit=1)) == ["a"]


def test_a_long_plans_live_table_shows_what_went_wrong_what_runs_and_what_comes_next():
    plan = parse_plan("project: p\nsteps:\n" + "".join(f"  - {{id: s{i:03d}, run: x}}\n" for i in range(300)))
    progress = Progress(plan)
    assert len(progress.shown_steps(set(), 300)) == 300  # a plan that fits is shown whole
    for i in range(100):
        progress.finish(f"s{i:03d}", "failed" if i == 7 else "blocked" if i == 9 else "succeeded")
    assert progress.phase == "blocked" and progress.blocked_steps == ["s009"]
    shown = ids(progress.shown_steps({"s100"}, 20))
    assert shown[:3] == ["s007", "s009", "s100"] and len(shown) == 20 and shown[-1] == "s117"
    progress.waive("s009")
    assert not progress.blocked and "s009" in ids(progress.shown_steps(set(), 20))  # skipped: still off track
