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


# The commands whose module parses its own arguments (claims, shifts, bench train, toy frozen-lake,
# ...): their parser is built inside the command, so it is caught as the command parses.
def _own_parser_argvs():
    _, commands = _commands()
    for name, p in commands.items():
        group = {"bench": "bench", "toy": "toy"}.get(name)
        if group:
            choices = next(a.choices for a in p._actions if a.dest == group)
            yield from ([name, c] for c in choices)
        elif p.get_default("passthrough"):
            yield [name]


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("argv", list(_own_parser_argvs()), ids=" ".join)
def test_every_flag_of_the_commands_that_parse_their_own_arguments_has_help_text(argv, monkeypatch):
    parser, commands = _commands()
    ours = {id(parser), *(id(p) for p in commands.values())}   # cli's own parsers parse as usual
    parse = argparse.ArgumentParser.parse_known_args

    def caught(self, args=None, namespace=None):
        if id(self) in ours:
            return parse(self, args, namespace)
        raise _Parsed(self)

    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
    with pytest.raises(_Parsed) as e:
        cli.main(argv)
    own = e.value.args[0]
    missing = [a.option_strings[-1] for a in own._actions
               if a.option_strings and a.help in (None, "") and not isinstance(a, argparse._HelpAction)]
    assert not missing, f"negfree {' '.join(argv)}: {missing}"


@pytest.mark.parametrize("group,members", [("bench", ("train", "generate", "score", "data")),
                                           ("toy", ("frozen-lake",))])
def test_a_group_help_lists_each_member_with_one_line(group, members, capsys):
    cli.main([group, "--help"])
    out = capsys.readouterr().out
    assert f"negfree {group} <name> --help" in out
    for m in members:
        line = next((x for x in out.splitlines() if x.strip().startswith(m + " ")), None)
        assert line and len(line.split(None, 1)[1]) > 20, out    # the member and what it does


def test_methods_table_fits_100_columns_when_not_a_terminal(capsys):
    from negfree.losses import REGISTRY

    cli.main(["methods"])
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(map(len, lines)) <= 100, max(lines, key=len)
    text = " ".join(" ".join(lines).split())
    for name in REGISTRY:                         # nothing is cut: every method and its facts are there
        assert f"\n{name} " in "\n" + "\n".join(lines)
    assert "freeze_embedding=False" in text and "Dynamic Relation Propagation" in text   # ift's long cells


@pytest.mark.parametrize("width", [80, 120, 160])
def test_methods_table_wraps_to_any_width(width):
    rows = [("ift", "-", "-", "-", "yes", "lam=0.2, decay=0.95, propagation=reference, detach_weights=False",
             "ift.txt Sec. 4, App. B.3 (two-pass fused embeddings, Dynamic Relation Propagation)")]
    lines = cli.methods_table(rows, width)
    assert max(map(len, lines)) <= width
    assert " ".join(" ".join(lines).split()).count("detach_weights=False") == 1
