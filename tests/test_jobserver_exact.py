"""MAKEFLAGS rewriting and jobserver refusals pinned exactly, in-process: `make mutate` found
them changeable without a test failing (the real-make tests run in subprocesses)."""

import pytest

from orchestrator.jobserver import NOT_RECURSIVE, JobserverUnavailable, _replace_jobs_options, connect

OURS = ["-j2", "--jobserver-auth=fifo:/x"]


@pytest.mark.parametrize(
    "inherited, expected",
    [
        # No flag letters: make expects the leading space.
        ("", " -j2 --jobserver-auth=fifo:/x"),
        (" -j4 --jobserver-auth=3,4", " -j2 --jobserver-auth=fifo:/x"),
        # Flag letters stay first; variable overrides after `--` are kept as they are.
        ("ks -j4 --jobserver-auth=3,4 -- FOO=1 -j9", "ks -j2 --jobserver-auth=fifo:/x -- FOO=1 -j9"),
        ("ks", "ks -j2 --jobserver-auth=fifo:/x"),
        (" ks", " ks -j2 --jobserver-auth=fifo:/x"),
        ("-k -j", " -k -j2 --jobserver-auth=fifo:/x"),
        ("--jobs=3 -l2 --jobserver-fds=3,4", " -l2 -j2 --jobserver-auth=fifo:/x"),
    ],
)
def test_our_jobs_options_replace_make_s_and_keep_the_rest(inherited, expected):
    assert _replace_jobs_options(inherited, OURS) == expected


@pytest.mark.parametrize("auth", ["-1,-1", "-1,4", "4,-1"])
def test_negative_descriptors_mean_the_rule_was_not_marked_recursive(auth):
    with pytest.raises(JobserverUnavailable) as refused:
        connect(auth)
    assert str(refused.value) == f"make passed no descriptors ({auth}); {NOT_RECURSIVE}"


@pytest.mark.parametrize("auth", ["3", "a,b", "3,4,5"])
def test_an_unreadable_auth_is_refused(auth):
    with pytest.raises(JobserverUnavailable) as refused:
        connect(auth)
    assert str(refused.value) == f"cannot read --jobserver-auth={auth}"
