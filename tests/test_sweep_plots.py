"""`negfree sweep-figure`: the plotted data (rows in grid order, error bars), line vs grouped bars,
stacked tables with derived keys, byte-reproducible figures, and one clear message per bad input."""
import pandas as pd
import pytest

from negfree.cli import main as cli
from negfree.report import sweep_plots as sp
from negfree.report import sweep_tables as st

GAMMA = [0.8, 0.85, 0.9, 0.95, 1.0]


def _offline_gamma(path):
    """An offline-twin sweep table as negfree.report.tables.summary_table writes it."""
    rows = [{"model": "dft" if g == 0.85 else f"dft gamma={g}", "gamma": g, "mc_acc": 40 + i,
             "mc_acc_se": 1.0 + i / 10, "mc_acc_norm": 41 + i, "mc_acc_norm_se": 2.0, "gen_exact_match": 10 - i,
             "gen_exact_match_se": 3.0, "n_test": 64, "train_steps": 6, "train_seconds": 100.5}
            for i, g in enumerate(GAMMA)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _protocols_b(path, method, base):
    """A paper-protocol sweep table as `negfree sweep-table` writes it (no stderr columns)."""
    rows = [{"num_negatives": b, "run": f"method~{method}" if b == 2 else f"method~{method}/num_negatives~{b}",
             "openllm_dft/arc_challenge/acc_norm (%)": base + b, "openllm_dft/avg": (base + b) / 100}
            for b in (1, 2, 4)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run(args):
    cli(["sweep-figure"] + [str(a) for a in args])


def _error(args) -> str:
    with pytest.raises(SystemExit) as e:
        _run(args)
    return str(e.value.code)


def test_gamma_line_in_grid_order_with_stderr(tmp_path):
    table = _offline_gamma(tmp_path / "sweep~dft_gamma.csv")
    out = tmp_path / "fig" / "fig2b.png"
    _run(["--table", table, "--x", "gamma", "--metric", "mc_acc", "--out", out, "--title", "dft Fig. 2b",
          "--scale", "tiny"])
    for suffix in (".png", ".pdf", ".csv"):
        assert out.with_suffix(suffix).stat().st_size > 0
    data = pd.read_csv(out.with_suffix(".csv"))
    assert list(data.columns) == ["gamma", "mc_acc", "mc_acc_se"]
    assert list(data.gamma) == GAMMA
    assert list(data.mc_acc) == [40, 41, 42, 43, 44]
    assert list(data.mc_acc_se) == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4])


def test_grid_order_is_kept_and_line_is_chosen_for_numeric_x(tmp_path):
    t = tmp_path / "t.csv"
    pd.DataFrame({"gamma": [1.0, 0.8, 0.9], "acc": [3, 1, 2]}).to_csv(t, index=False)
    data, se = st.sweep_data([t], "gamma", "acc")
    assert se is None and list(data.gamma) == ["1.0", "0.8", "0.9"] and list(data.acc) == [3, 1, 2]
    assert sp.plot_sweep(data, "gamma", "acc", tmp_path / "a.png", title="t", scale="s") == "line"
    cat = tmp_path / "strategy.csv"
    pd.DataFrame({"strategy": ["direct", "chat", "chat_good", "chat_bad"], "acc": [1, 2, 3, 4]}).to_csv(cat,
                                                                                                     index=False)
    data, _ = st.sweep_data([cat], "strategy", "acc")
    assert list(data.strategy) == ["direct", "chat", "chat_good", "chat_bad"]
    assert sp.plot_sweep(data, "strategy", "acc", tmp_path / "b.png", title="t", scale="s") == "bars"


def test_stacked_sweeps_grouped_by_method(tmp_path):
    """dft.txt Fig. 6: B = 1, 2, 4 for several methods, one sweep table per method."""
    tables = [_protocols_b(tmp_path / f"sweep~{m}_B~protocols.csv", m, base)
              for m, base in (("dft", 50), ("dft2", 60), ("spin", 40))]
    metric = "openllm_dft/arc_challenge/acc_norm (%)"
    out = tmp_path / "fig6.png"
    args = ["--x", "num_negatives", "--series", "method", "--metric", metric, "--out", out,
            "--title", "dft Fig. 6", "--scale", "tiny"]
    _run(sum((["--table", t] for t in tables), []) + args)
    data = pd.read_csv(out.with_suffix(".csv"))
    assert list(data.columns) == ["method", "num_negatives", metric]
    assert list(data.method) == ["dft"] * 3 + ["dft2"] * 3 + ["spin"] * 3
    assert list(data.num_negatives) == [1, 2, 4] * 3
    assert list(data[metric]) == [51, 52, 54, 61, 62, 64, 41, 42, 44]
    # the sweep name from the file name is a key too
    d, _ = st.sweep_data(tables, "num_negatives", "openllm_dft/avg", series="table")
    assert list(dict.fromkeys(d.table)) == ["dft_B", "dft2_B", "spin_B"]


def test_stderr_detection_and_override(tmp_path):
    assert st.stderr_column(["a", "a_se"], "a") == "a_se"
    assert st.stderr_column(["p/t/acc (%)", "p/t/acc_stderr (%)"], "p/t/acc (%)") == "p/t/acc_stderr (%)"
    assert st.stderr_column(["a", "b_se"], "a") is None
    t = _offline_gamma(tmp_path / "t.csv")
    data, se = st.sweep_data([t], "gamma", "mc_acc", stderr="mc_acc_norm_se")
    assert se == "mc_acc_norm_se" and list(data[se]) == [2.0] * 5
    # a stderr column with no value in any row draws no error bars
    df = pd.read_csv(t)
    df["mc_acc_se"] = None
    df.to_csv(t, index=False)
    data, se = st.sweep_data([t], "gamma", "mc_acc")
    assert se is None and "mc_acc_se" not in data.columns


def test_figures_are_byte_reproducible(tmp_path):
    t = _offline_gamma(tmp_path / "sweep~dft_gamma.csv")
    outs = []
    for k in range(2):
        out = tmp_path / str(k) / "f.png"
        _run(["--table", t, "--x", "gamma", "--series", "model", "--metric", "gen_exact_match", "--out", out,
              "--title", "T", "--scale", "S"])
        outs.append(out)
    for suffix in (".png", ".pdf", ".csv"):
        assert outs[0].with_suffix(suffix).read_bytes() == outs[1].with_suffix(suffix).read_bytes()


def test_errors_name_the_culprit(tmp_path):
    t = _offline_gamma(tmp_path / "sweep~dft_gamma.csv")
    base = ["--out", tmp_path / "o.png", "--title", "T", "--scale", "S"]
    msg = _error(["--table", tmp_path / "nope.csv", "--x", "gamma", "--metric", "mc_acc"] + base)
    assert msg.startswith("negfree sweep-figure:") and "nope.csv" in msg
    msg = _error(["--table", t, "--x", "gamma", "--metric", "accuracy"] + base)
    assert "--metric column 'accuracy'" in msg and "sweep~dft_gamma.csv" in msg and "mc_acc" in msg
    msg = _error(["--table", t, "--x", "tau", "--metric", "mc_acc"] + base)
    assert "--x key 'tau'" in msg
    msg = _error(["--table", t, "--x", "gamma", "--series", "lr", "--metric", "mc_acc"] + base)
    assert "--series key 'lr'" in msg
    msg = _error(["--table", t, "--x", "gamma", "--metric", "mc_acc", "--stderr", "nope_se"] + base)
    assert "--stderr column 'nope_se'" in msg
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty.csv is empty" in _error(["--table", empty, "--x", "gamma", "--metric", "mc_acc"] + base)
    header = tmp_path / "header.csv"
    header.write_text("gamma,mc_acc\n")
    assert "header.csv has no rows" in _error(["--table", header, "--x", "gamma", "--metric", "mc_acc"] + base)
    text = tmp_path / "text.csv"
    pd.DataFrame({"gamma": [0.8, 0.9], "acc": ["high", "low"]}).to_csv(text, index=False)
    assert "non-numeric" in _error(["--table", text, "--x", "gamma", "--metric", "acc"] + base)
    two = tmp_path / "two.csv"
    pd.DataFrame({"gamma": [0.8, 0.8, 0.9, 0.9], "tau": [1, 2, 1, 2], "acc": [1, 2, 3, 4]}).to_csv(two, index=False)
    msg = _error(["--table", two, "--x", "gamma", "--metric", "acc"] + base)
    assert "more than one row" in msg and "tau" in msg
    assert "must end in .png" in _error(["--table", t, "--x", "gamma", "--metric", "mc_acc", "--out",
                                         tmp_path / "o.svg", "--title", "T", "--scale", "S"])
    assert "same key" in _error(["--table", t, "--x", "gamma", "--series", "gamma", "--metric", "mc_acc"] + base)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.csv").exists()
    # a 2-D sweep is fine once the other key is the series
    _run(["--table", two, "--x", "gamma", "--series", "tau", "--metric", "acc"] + base)
    assert list(pd.read_csv(tmp_path / "o.csv").acc) == [1, 2, 3, 4]
