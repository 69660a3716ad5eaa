"""The command line a newcomer explores (issue 16): every command and group answers --help
with status 0, `negfree --version` works, and every flag of every command says what it does."""
import argparse

import pytest

from negfree import cli


def _commands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def _help_argvs():
    _, commands = _commands()
    for name, p in commands.items():
        group = {"bench": "bench", "toy": "toy"}.get(name)
        if group:
            yield [name, "--help"]
            choices = next(a.choices for a in p._actions if a.dest == group)
            yield from ([name, c, "--help"] for c in choices)
        else:
            yield [name, "--help"]


@pytest.mark.parametrize("argv", list(_help_argvs()), ids=" ".join)
def test_every_command_answers_help_with_status_0(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
        raise SystemExit(0)   # a group that prints its own usage returns
    assert e.value.code in (0, None)
    assert "usage" in capsys.readouterr().out.lower()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("negfree ")


def test_a_group_without_its_member_names_the_choices():
    with pytest.raises(SystemExit) as e:
        cli.main(["bench"])
    assert "name one of train" in str(e.value.code)


def test_every_flag_has_help_text():
    _, commands = _commands()
    missing = [f"{name} {a.option_strings[0]}" for name, p in commands.items() for a in p._actions
               if a.option_strings and a.help in (None, "") and not isinstance(a, argparse._HelpAction)]
    assert not missing, missing
