"""Selection, exclusion, order and readiness pinned exactly, in-process: `make mutate` found
these results and messages changeable without a test failing (the CLI tests run elsewhere)."""

import pytest

from orchestrator.errors import UsageError
from orchestrator.graph import Plan, order, select
from orchestrator.model import Job


def job(name, needs=(), tags=(), matrix=None):
    return Job(name=name, run="true", needs=tuple(needs), tags=tuple(tags), matrix=matrix or {})


def jobs_of(*jobs):
    return {j.name: j for j in jobs}


DAG = jobs_of(
    job("lint", tags=["fast"]),
    job("unit", ["lint"], tags=["fast", "py"]),
    job("build"),
    job("package", ["build", "unit"]),
    job("docs"),
)
# File order differs from name order, so a sort by name would show.
FAN = jobs_of(job("root"), job("zeta", ["root"]), job("beta", ["root"]), job("mid", ["zeta", "beta"]))
MATRIX = jobs_of(
    job("build[ARCH=arm,OS=linux]", matrix={"ARCH": "arm", "OS": "linux"}),
    job("build[ARCH=x86,OS=linux]", matrix={"ARCH": "x86", "OS": "linux"}),
    job("after", ["build[ARCH=arm,OS=linux]", "build[ARCH=x86,OS=linux]"]),
)


# -- what a bad selection says, word for word --


@pytest.mark.parametrize(
    "target, message",
    [
        ("packge", 'no job named "packge"; did you mean "package"?'),
        ("zzzz", 'no job named "zzzz"; `orchestrate list FILE` shows the jobs'),
    ],
)
def test_an_unknown_target_is_refused_with_a_hint(target, message):
    with pytest.raises(UsageError) as refused:
        select(DAG, [target])
    assert str(refused.value) == message


def test_a_selector_matching_no_expansion_lists_the_values_the_matrix_takes():
    with pytest.raises(UsageError) as refused:
        select(MATRIX, ["build[ARCH=mips]"])
    assert str(refused.value) == 'no job named "build[ARCH=mips]"; build takes ARCH=arm|x86, OS=linux'


@pytest.mark.parametrize(
    "jobs, message",
    [
        (DAG, "no job has tag gpu, slow (tags in this file: fast, py)"),
        (FAN, "no job has tag gpu, slow (tags in this file: none)"),
    ],
)
def test_unknown_tags_are_refused_naming_the_known_ones(jobs, message):
    with pytest.raises(UsageError) as refused:
        select(jobs, tags=["slow", "gpu"])
    assert str(refused.value) == message


# -- exclusion and --no-needs --


def test_an_excluded_job_is_left_out_and_its_needs_are_not_pulled_in_through_it():
    assert select(DAG, ["package"], exclude=["unit"]) == ["build", "package"]
    assert select(DAG, exclude=["unit"]) == ["lint", "build", "package", "docs"]


def test_an_excluded_tag_leaves_out_every_job_with_it():
    assert select(DAG, exclude_tags=["py"]) == ["lint", "build", "package", "docs"]
    assert select(DAG, ["package"], exclude_tags=["fast"]) == ["build", "package"]


def test_a_matrix_job_excluded_by_its_bare_name_loses_every_expansion():
    assert select(MATRIX, exclude=["build"]) == ["after"]
    assert select(MATRIX, exclude=["build[ARCH=x86]"]) == ["build[ARCH=arm,OS=linux]", "after"]


def test_without_needs_only_the_named_jobs_are_selected():
    assert select(DAG, ["package", "lint"], with_needs=False) == ["lint", "package"]
    assert select(DAG, ["package", "lint"], exclude=["lint"], with_needs=False) == ["package"]


# -- order and readiness keep file order, not name order --


def test_order_keeps_file_order_within_a_round():
    assert order(FAN, list(FAN)) == ["root", "zeta", "beta", "mid"]


def test_order_names_a_cycle():
    with pytest.raises(ValueError) as refused:
        order(jobs_of(job("a", ["b"]), job("b", ["a"])), ["a", "b"])
    assert str(refused.value) == "dependency cycle among the selected jobs"


def test_plan_releases_dependents_in_file_order():
    plan = Plan(FAN, list(FAN))
    assert plan.finish("root", True) == (["zeta", "beta"], [])
    assert plan.finish("beta", True) == ([], [])
    assert plan.finish("zeta", True) == (["mid"], [])
    assert plan.done is False
    assert plan.finish("mid", True) == ([], []) and plan.done


def test_plan_skips_in_file_order():
    plan = Plan(FAN, list(FAN))
    assert plan.finish("root", False) == ([], ["zeta", "beta", "mid"])
    assert plan.done
