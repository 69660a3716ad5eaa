"""The analytic figures (computed through autograd) against the papers' closed forms, to 1e-4."""
import numpy as np
import pandas as pd
import pytest

from negfree.report.analytic import asft_fig1, bnf_fig1


@pytest.fixture(scope="module")
def bnf(tmp_path_factory):
    out = tmp_path_factory.mktemp("bnf")
    bnf_fig1(out / "fig1.png", out / "fig1.csv")
    return out


@pytest.fixture(scope="module")
def asft(tmp_path_factory):
    out = tmp_path_factory.mktemp("asft")
    asft_fig1(out / "fig1.png", out / "fig1.csv")
    return out


def test_bnf_fig1_matches_eq9_and_nll(bnf):
    df = pd.read_csv(bnf / "fig1.csv")
    assert list(df.columns) == ["method", "p_ref", "p_theta", "grad_abs"]
    assert set(df.method) == {"nll", "pll", "bnf"} and set(df.p_ref) == {0.2, 0.5, 0.8}
    assert len(df) >= 3 * 3 * 99 and df.groupby(["method", "p_ref"]).size().min() >= 99
    assert ((df.p_theta > 0) & (df.p_theta < 1)).all()
    p, q = df.p_theta.to_numpy(), df.p_ref.to_numpy()
    closed = np.where(df.method == "bnf", np.where(p < q, p * (1 - q) / q, 1 - p), 1 - p)
    assert np.allclose(df.grad_abs, closed, rtol=1e-4, atol=0)
    assert (bnf / "fig1.png").stat().st_size > 10_000 and (bnf / "fig1.pdf").stat().st_size > 0


def test_asft_fig1_matches_eq16_and_eq18(asft):
    df = pd.read_csv(asft / "fig1.csv")
    assert list(df.columns) == ["loss", "x1", "x2", "value", "d_x1", "d_x2"]
    bt, al = df[df.loss == "bt"], df[df.loss == "asft_align"]
    assert len(bt) == len(al) == 400
    x1, x2 = bt.x1.to_numpy(), bt.x2.to_numpy()
    assert np.allclose(bt.value, -np.log(x1 / (x1 + x2)), rtol=1e-4)
    assert np.allclose(bt.d_x1, -x2 / (x1 * (x1 + x2)), rtol=1e-4)      # Eq. 16, beta = 1
    assert np.allclose(bt.d_x2, 1 / (x1 + x2), rtol=1e-4)
    x1, x2 = al.x1.to_numpy(), al.x2.to_numpy()
    assert np.allclose(al.value, -np.log(x1) - np.log(1 - x2), rtol=1e-4)
    assert np.allclose(al.d_x1, -1 / x1, rtol=1e-4)                      # Eq. 18 / 22
    assert np.allclose(al.d_x2, 1 / (1 - x2), rtol=1e-4)
    assert (asft / "fig1.png").stat().st_size > 10_000 and (asft / "fig1.pdf").stat().st_size > 0
