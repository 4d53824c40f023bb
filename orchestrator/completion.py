"""Shell completion: bash, zsh and fish scripts, and the candidates they get from `orchestrate __complete`."""

from __future__ import annotations

import argparse
import os

from orchestrator import discovery

FILES = ":files"  # tells the script to complete file names itself
JOB_OPTIONS = ("--exclude",)
TAG_OPTIONS = ("-t", "--tag", "--exclude-tag")
FILE_OPTIONS = ("-f", "--file")
TAKES_JOBS = ("run", "list", "graph", "show")


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may come next: `words` are those after `orchestrate`, the last the one being typed."""
    words = words or [""]
    typed, before = words[-1], words[:-1]
    commands = _subparsers(parser)
    command = next((word for word in before if not word.startswith("-")), None)
    if command is None:
        if typed.startswith("-"):
            return _matching(["--help", "--version"], typed)
        return _matching([name for name in commands if not name.startswith("_")], typed)
    sub = commands.get(command)
    if sub is None:
        return []
    options = {option: action for action in sub._actions for option in action.option_strings}
    previous = before[-1] if before and before[-1] != command else None
    action = options.get(previous) if previous else None
    if action is not None and action.nargs != 0:
        return _value_candidates(previous or "", action, before, typed)
    if typed.startswith("-"):
        return _matching([option for option in options if option.startswith("--")] or list(options), typed)
    if command in TAKES_JOBS:
        return _matching(_job_names(before), typed)
    if command == "validate":
        return [FILES]
    positional = [action for action in sub._actions if not action.option_strings and action.choices]
    return _matching([str(choice) for action in positional for choice in action.choices or ()], typed)


def _value_candidates(option: str, action: argparse.Action, before: list[str], typed: str) -> list[str]:
    if option in FILE_OPTIONS:
        return [FILES]
    if option in TAG_OPTIONS:
        return _matching(_tags(before), typed)
    if option in JOB_OPTIONS:
        return _matching(_job_names(before), typed)
    if action.choices:
        return _matching([str(choice) for choice in action.choices], typed)
    return []


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _matching(words: list[str], typed: str) -> list[str]:
    return [word for word in words if word.startswith(typed)]


def _job_file(before: list[str]) -> str | None:
    """The file the command line names so far (-f, the old FILE form), else the one found from here."""
    for index, word in enumerate(before):
        if word in FILE_OPTIONS and index + 1 < len(before):
            return before[index + 1]
        if word.startswith("--file="):
            return word.partition("=")[2]
    positionals = [word for word in before[1:] if not word.startswith("-")]
    if positionals and discovery.names_a_job_file(positionals[0]) and os.path.isfile(positionals[0]):
        return positionals[0]
    try:
        return discovery.find_job_file(".")
    except Exception:
        return None


def _jobs(before: list[str]) -> dict[str, tuple[str, ...]]:
    """Job name -> its tags, or nothing when the file cannot be read (completion stays quiet)."""
    from orchestrator.loader import load

    path = _job_file(before)
    if path is None or path == "-":
        return {}
    try:
        return {name: job.tags for name, job in load(path).jobs.items()}
    except Exception:  # a half-written file must not spill a traceback into the prompt
        return {}


def _job_names(before: list[str]) -> list[str]:
    names: dict[str, None] = {}
    for name in _jobs(before):
        names.setdefault(name.split("[", 1)[0], None)  # a matrix job's own name selects all
        names.setdefault(name, None)
    return list(names)


def _tags(before: list[str]) -> list[str]:
    return list(dict.fromkeys(tag for tags in _jobs(before).values() for tag in tags))


BASH = r"""# bash completion for orchestrate: source <(orchestrate completion bash)
_orchestrate() {
    local line="${COMP_LINE:0:COMP_POINT}" IFS=$' \t\n'
    local -a words
    read -ra words <<< "$line"
    [[ "$line" =~ [[:space:]]$ || ${#words[@]} -eq 0 ]] && words+=("")
    local typed="${words[${#words[@]}-1]}"
    # The words as the program will see them: quotes and backslashes taken out.
    local -a plain=("${words[@]:1}")
    plain=("${plain[@]//[\\\'\"]/}")
    IFS=$'\n'
    local -a found=($(orchestrate __complete -- "${plain[@]}" 2>/dev/null))
    IFS=$' \t\n'
    if [[ "${found[0]}" == ":files" ]]; then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$typed"))
        return 0
    fi
    # bash replaces only what follows the word's last "=" or ":" (COMP_WORDBREAKS).
    local broken="${typed%"${typed##*[=:]}"}"
    broken="${broken//[\\\'\"]/}"
    COMPREPLY=()
    local candidate
    for candidate in "${found[@]}"; do
        [[ -n "$candidate" ]] || continue
        # Job names hold [ ] that the shell would glob: insert them quoted.
        COMPREPLY+=("$(printf '%q' "${candidate#"$broken"}")")
    done
}
complete -F _orchestrate orchestrate
"""

ZSH = r"""#compdef orchestrate
# zsh completion for orchestrate: orchestrate completion zsh > "${fpath[1]}/_orchestrate"
_orchestrate() {
    local -a found
    found=("${(@f)$(orchestrate __complete -- "${(@Q)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ "${found[1]}" == ":files" ]]; then
        _files
        return
    fi
    # compadd quotes the brackets of job names as it inserts them.
    compadd -- "${(@)found:#}"
}
if [[ "${funcstack[1]}" == "_orchestrate" ]]; then
    _orchestrate "$@"
else
    compdef _orchestrate orchestrate
fi
"""

FISH = r"""# fish completion for orchestrate:
#   orchestrate completion fish > ~/.config/fish/completions/orchestrate.fish
function __orchestrate_complete
    set -l tokens (commandline -opc)
    set -e tokens[1]
    # Quoted, so an empty current word still reaches orchestrate as one.
    set -l current (commandline -ct)
    set -l found (orchestrate __complete -- $tokens "$current" 2>/dev/null)
    if test "$found[1]" = ":files"
        __fish_complete_path "$current"
        return
    end
    printf '%s\n' $found
end
complete -c orchestrate -f -a '(__orchestrate_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def script(shell: str) -> str:
    return SCRIPTS[shell]
