"""Selection, order and skip propagation, on plain Job values (no gevent, no processes)."""

import pytest

from orchestrator.errors import UsageError
from orchestrator.graph import Plan, order, select
from orchestrator.model import Job


def jobs(**needs):
    tags = {"lint": ("fast",), "unit": ("fast",)}
    return {
        name: Job(name=name, run="true", needs=tuple(n), tags=tags.get(name, ())) for name, n in needs.items()
    }


DAG = jobs(lint=[], unit=["lint"], build=[], package=["build", "unit"], docs=[])


def test_select_all_when_nothing_named():
    assert select(DAG) == list(DAG)


def test_select_target_brings_its_needs_in_file_order():
    assert select(DAG, ["package"]) == ["lint", "unit", "build", "package"]


def test_select_by_tag_brings_needs():
    assert select(DAG, tags=["fast"]) == ["lint", "unit"]


def test_select_matrix_base_name_means_every_expansion():
    matrix = {
        "build[ARCH=a]": Job(name="build[ARCH=a]", run="true", matrix={"ARCH": "a"}),
        "build[ARCH=b]": Job(name="build[ARCH=b]", run="true", matrix={"ARCH": "b"}),
        "other": Job(name="other", run="true"),
    }
    assert select(matrix, ["build"]) == ["build[ARCH=a]", "build[ARCH=b]"]
    assert select(matrix, ["build[ARCH=b]"]) == ["build[ARCH=b]"]


def test_unknown_target_suggests_the_close_name():
    with pytest.raises(UsageError, match='no job named "packge"; did you mean "package"'):
        select(DAG, ["packge"])


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(UsageError, match="tags in this file: fast"):
        select(DAG, tags=["slow"])


def test_order_puts_needs_first_and_keeps_file_order_otherwise():
    got = order(DAG, select(DAG))
    assert got == ["lint", "build", "docs", "unit", "package"]


def test_order_refuses_a_cycle_rather_than_drop_its_jobs():
    with pytest.raises(ValueError, match="cycle"):
        order(jobs(a=["b"], b=["a"], c=[]), ["a", "b", "c"])


def test_plan_releases_dependents_when_their_last_need_succeeds():
    plan = Plan(DAG, list(DAG))
    assert plan.initially_ready() == ["lint", "build", "docs"]
    assert plan.finish("build", True) == ([], [])
    assert plan.finish("lint", True) == (["unit"], [])
    assert plan.finish("unit", True) == (["package"], [])


def test_plan_skips_everything_downstream_of_a_failure_once():
    plan = Plan(DAG, list(DAG))
    assert plan.finish("lint", False) == ([], ["unit", "package"])
    assert plan.finish("build", True) == ([], [])
    assert plan.finish("docs", True) == ([], [])
    assert plan.done


def test_plan_ignores_needs_outside_the_selection():
    plan = Plan(DAG, ["unit"])
    assert plan.initially_ready() == ["unit"]
