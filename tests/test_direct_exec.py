"""Command strings exec'd without /bin/sh must mean exactly what sh would make of them."""

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.model import Job, plain_words


def sh_words(command: str) -> list[str]:
    """How /bin/sh splits `command` into words (as arguments of `set --`)."""
    script = f'set -- {command}\nprintf "%s\\0" "$@"'
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, check=True).stdout
    return out.decode().split("\0")[:-1]


def test_simple_commands_are_split_like_sh():
    for command in [
        "true",
        "ls -la /tmp",
        "  spaced \t out  ",
        "cmd a=b --x=1",
        "python3 -m pytest -q tests",
        "a,b c.d e-f g/h",
    ]:
        assert list(plain_words(command)) == sh_words(command)


def test_anything_the_shell_would_interpret_keeps_the_shell():
    for command in [
        "echo $HOME",
        "a=b cmd",
        "cmd 'q'",
        'cmd "q"',
        "cmd *.py",
        "cmd > out",
        "a | b",
        "a && b",
        "a; b",
        "cmd ~/x",
        "cmd \\x",
        "cd /tmp",
        "exit 3",
        "echo -e x",
        "pwd",
        "kill -l",
        "[ -f x ]",
        "test -f x",
        "cmd $(x)",
        "cmd `x`",
        "cmd {a,b}",
        "! cmd",
        "a\nb",
        "cmd\u00a0x",
        "cmd # c",
        "",
    ]:
        assert plain_words(command) is None, command


def test_job_argv_uses_direct_exec_only_for_the_default_shell():
    assert Job("a", "make -j4 all").argv == ("make", "-j4", "all")
    assert Job("a", "echo $X").argv == ("/bin/sh", "-c", "echo $X")
    assert Job("a", "make all", shell=("bash", "-c")).argv == ("bash", "-c", "make all")
    assert Job("a", ("echo", "$X")).argv == ("echo", "$X")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" \t\nabc=-_./,:@%+'\"$*?[]~!#;&|<>(){}\\`^\u00a0x", max_size=20))
def test_property_plain_words_agree_with_sh(command):
    words = plain_words(command)
    if words is not None:
        assert list(words) == sh_words(command)
