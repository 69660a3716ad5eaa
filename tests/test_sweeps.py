"""Sweep expansion (negfree/jobs/sweeps.py): ids, grid order, checks before any job runs."""
import pytest

from negfree.common.naming import run_settings
from negfree.jobs.sweeps import expand_runs

GEN = {"strategy": "chat_bad", "temperature": 0.7, "num": 4, "max_new_tokens": 8, "batch_size": 2, "seed": 0}


def test_methods_and_grid_points_get_path_ids_in_the_order_written():
    specs, sweeps, _ = expand_runs(
        {"sft": {}, "dft": {"gamma": 0.9}},
        {"g": {"method": "dft", "generate": {"temperature": [0.3, 1.0]}, "train": {"num_negatives": 2},
               "hparams": {"gamma": [0.8, 1.0], "tau": 1.0}}},
        GEN, 2)
    assert list(specs)[:2] == ["method~sft", "method~dft"]
    assert specs["method~dft"]["hparams"] == {"gamma": 0.9}
    assert sweeps["g"] == [
        "method~dft/temperature~0.3/num_negatives~2/gamma~0.8/tau~1.0",
        "method~dft/temperature~0.3/num_negatives~2/gamma~1.0/tau~1.0",
        "method~dft/temperature~1.0/num_negatives~2/gamma~0.8/tau~1.0",
        "method~dft/temperature~1.0/num_negatives~2/gamma~1.0/tau~1.0",
    ]
    last = specs[sweeps["g"][-1]]
    assert last == {"method": "dft", "hparams": {"gamma": 1.0, "tau": 1.0}, "train": {"num_negatives": 2},
                    "generate": {**GEN, "temperature": 1.0}}
    assert run_settings(sweeps["g"][0]) == {"temperature": "0.3", "num_negatives": "2", "gamma": "0.8",
                                            "tau": "1.0"}


def test_a_sweep_does_not_inherit_the_methods_entry():
    specs, sweeps, _ = expand_runs({"dft": {"gamma": 0.9}}, {"t": {"method": "dft", "hparams": {"tau": [0.5]}}},
                                GEN, 2)
    assert specs[sweeps["t"][0]]["hparams"] == {"tau": 0.5}


def test_a_point_that_computes_a_methods_run_is_that_run():
    """gamma 0.85 is dft's paper default and B=2 the experiment's: those points are method~dft and
    method~sft, trained once; their own ids stay usable as aliases."""
    from negfree.jobs.sweeps import sweep_settings

    block = {"method": "dft", "hparams": {"gamma": [0.8, 0.85]}}
    specs, sweeps, aliases = expand_runs(
        {"dft": {}, "sft": {}}, {"g": block, "b": {"method": "sft", "train": {"num_negatives": [1, 2]}}},
        GEN, {"num_negatives": 2, "lr": 1e-5})
    assert sweeps["g"] == ["method~dft/gamma~0.8", "method~dft"]
    assert sweeps["b"] == ["method~sft/num_negatives~1", "method~sft"]
    assert aliases == {"method~dft/gamma~0.85": "method~dft", "method~sft/num_negatives~2": "method~sft"}
    assert set(specs) == {"method~dft", "method~sft", "method~dft/gamma~0.8", "method~sft/num_negatives~1"}
    assert sweep_settings(block) == [{"gamma": 0.8}, {"gamma": 0.85}]
    # a train key that differs from the experiment's is a different run
    _, sweeps, aliases = expand_runs({"dft": {}}, {"lr": {"method": "dft", "train": {"lr": 2e-5}}}, GEN,
                                     {"num_negatives": 2, "lr": 1e-5})
    assert sweeps["lr"] == ["method~dft/lr~2e-05"] and not aliases


def test_same_point_in_two_sweeps_is_one_run():
    specs, sweeps, _ = expand_runs({}, {"a": {"method": "dft", "hparams": {"gamma": [0.8, 0.9]}},
                                     "b": {"method": "dft", "hparams": {"gamma": [0.9, 1.0]}}}, GEN, 2)
    assert len(specs) == 3 and sweeps["b"][0] == sweeps["a"][1]


@pytest.mark.parametrize("sweeps, culprit", [
    ({"s": {"method": "dtf", "hparams": {"gamma": [0.9]}}}, "unknown method 'dtf'"),
    ({"s": {"method": "dft", "hparams": {"gamma": [0.9, 1.5]}}}, "gamma=1.5"),
    ({"s": {"method": "dft", "hparams": {"gama": [0.9]}}}, "gama"),
    ({"s": {"method": "dft", "hparams": {"tau": [0.0]}}}, "tau"),
    ({"s": {"method": "dft", "train": {"num_negatives": [2, 8]}}}, "num_negatives = 8 exceeds the pool of 4"),
    ({"s": {"method": "dft", "generate": {"max_new_tokens": [8]}}}, "max_new_tokens"),
    ({"s": {"method": "dft", "train": {"lerning_rate": [1e-5]}}}, "lerning_rate"),
    ({"s": {"method": "dft", "train": {"model": "x"}}}, "model"),
    ({"s": {"method": "dft"}}, "sets nothing"),
    ({"s": {"hparams": {"gamma": 0.9}}}, "missing 'method'"),
    ({"s": {"method": "dft", "hparams": {"gamma": []}}}, "empty list"),
    ({"s": {"method": "dft", "hparams": {"gamma": 0.9}, "seeds": 3}}, "seeds"),
    ({"s": {"method": "dft", "hparams": {"num_negatives": 1}, "train": {"num_negatives": 1}}},
     "'num_negatives' is set in both"),
    ({"s": {"method": "sft", "train": {"scheduler": ["cosine/x"]}}}, "cannot be part of a run path"),
])
def test_bad_sweeps_stop_naming_the_culprit(sweeps, culprit):
    with pytest.raises(ValueError) as e:
        expand_runs({"sft": {}}, sweeps, GEN, 2)
    assert culprit in str(e.value)
    assert "sweeps.s" in str(e.value)


def test_bad_methods_entry_is_named():
    with pytest.raises(ValueError, match=r"methods\.dft: .*gamma=2"):
        expand_runs({"dft": {"gamma": 2}}, {}, GEN, 2)


def test_protocol_sweep_table_rows_follow_the_grid(tmp_path):
    """A sweep over paper protocols: one row per grid point (settings, run), task metrics in %."""
    import pandas as pd

    from negfree.report.tables import protocol_sweep_table

    rows = [("method~dft/gamma~0.8", "mmlu", 0.6), ("method~dft", "mmlu", 0.625),
            ("method~dft/gamma~0.8", "gsm8k", 0.3), ("method~dft", "gsm8k", 0.25), ("method~sft", "mmlu", 0.5)]
    csv = tmp_path / "evals.csv"
    pd.DataFrame([{"run": r, "protocol": "openllm_dft", "task": t, "metric": "acc,none", "value": v,
                   "stderr": 0.01, "n": 100} for r, t, v in rows]
                 + [{"run": "method~dft", "protocol": "openllm_dft", "task": "aggregate", "metric": "mean (x100)",
                     "value": 43.75, "stderr": None, "n": 2}]).to_csv(csv, index=False)
    t = protocol_sweep_table(csv, ["method~dft/gamma~0.8", "method~dft"], [{"gamma": 0.8}, {"gamma": 0.85}],
                             tmp_path / "s.csv", tmp_path / "s.md", scale="tiny")
    assert list(t["gamma"]) == [0.8, 0.85] and list(t["run"]) == ["method~dft/gamma~0.8", "method~dft"]
    assert list(t["openllm_dft/mmlu/acc,none (%)"]) == [60.0, 62.5]
    assert list(t["openllm_dft/gsm8k/acc,none (%)"]) == [30.0, 25.0]
    assert t["openllm_dft/mean (x100)"].iloc[1] == 43.75
    assert (tmp_path / "s.md").read_text().startswith("Scale: tiny.")
    with pytest.raises(ValueError, match=r"no results for run\(s\) \['method~dft/gamma~1.0'\]"):
        protocol_sweep_table(csv, ["method~dft/gamma~1.0"], [{"gamma": 1.0}], tmp_path / "x.csv", tmp_path / "x.md")
