"""The Frozen Lake toy (negfree.toy): the world, the reference policies, a short end-to-end run."""
import json

import pandas as pd
import pytest
import torch

from negfree.toy.finetune import fused_logits
from negfree.toy.frozen_lake import main, run_frozen_lake
from negfree.toy.lake import (ACTIONS, MAPS, Trajectories, build_lake, load_map, make_env, rollout,
                              soft_optimal_table, two_paths, value_iteration)
from negfree.toy.policies import PolicyNet, reference_policies

R, D, U = ACTIONS.index("right"), ACTIONS.index("down"), ACTIONS.index("up")


@pytest.mark.parametrize("name,optimal,suboptimal", [
    ("two_paths", [R] * 4, [D] * 3 + [R] * 4 + [U] * 3),
    ("small", [R] * 4, [D] * 2 + [R] * 4 + [U] * 2),
])
def test_value_iteration_gives_the_designed_paths(name, optimal, suboptimal):
    """gamma 0.95: the 4-step top row beats the way round (value 0.95^3 against 0.95^9 / 0.95^7)."""
    lake = build_lake(MAPS[name])
    q, v = value_iteration(lake, 0.95)
    assert two_paths(lake, q) == (optimal, suboptimal)
    assert v[lake.start].item() == pytest.approx(0.95 ** 3)


def test_tensor_walk_agrees_with_gymnasium():
    """The same random action sequences, stepped by env.step and by Lake.next_state."""
    lake = build_lake(MAPS["two_paths"])
    env = make_env(lake.desc)
    gen = torch.Generator().manual_seed(0)
    uniform = torch.full((lake.n_states, 4), 0.25)
    traj = rollout(lake, uniform, torch.full((20,), lake.start), 30, gen)
    for i in range(20):
        s, _ = env.reset(seed=0)
        reached = False
        for t in range(int(traj.mask[i].sum())):
            assert s == traj.states[i, t].item()
            s, r, terminated, _, _ = env.step(traj.actions[i, t].item())
            reached = r == 1.0
            if terminated:
                break
        assert reached == traj.reached[i].item()
    env.close()


def test_bad_maps_name_the_problem(tmp_path):
    one_way = tmp_path / "corridor.txt"
    one_way.write_text("SFFG\nHHHH\n")
    lake = build_lake(load_map(str(one_way)))
    with pytest.raises(ValueError, match="no second hole-free path"):
        two_paths(lake, value_iteration(lake, 0.95)[0])
    with pytest.raises(ValueError, match="neither a built-in map"):
        load_map("no_such_map")
    with pytest.raises(ValueError, match="exactly one 'G'"):
        build_lake(("SFF", "FFF"))


def test_optimal_net_fits_the_optimal_table():
    lake = build_lake(MAPS["two_paths"])
    pi = soft_optimal_table(value_iteration(lake, 0.95)[0], 0.01)
    opt_net, base_net = reference_policies(lake, pi, torch.full_like(pi, 0.25), seed=0)
    live = lake.live
    assert ((opt_net.table()[live] - pi[live]) ** 2).mean().item() < 1e-4
    assert ((base_net.table()[live] - 0.25) ** 2).mean().item() < 1e-4


def test_ift_fusion_with_lambda_zero_is_the_plain_forward():
    lake = build_lake(MAPS["two_paths"])
    torch.manual_seed(0)
    net = PolicyNet(lake.n_states)
    traj = Trajectories.from_actions(lake, [D, D, D, R])
    assert torch.allclose(fused_logits(net, lake, traj, 0.0, None), net(traj.states))
    assert not torch.allclose(fused_logits(net, lake, traj, 0.5, None), net(traj.states))


def test_short_run_writes_everything_and_is_deterministic(tmp_path):
    kw = dict(methods=["sft", "ift", "dpo", "orpo", "dft"], seeds=2, steps=15, episodes=40, eval_every=5)
    first = run_frozen_lake(tmp_path / "a", **kw)
    second = run_frozen_lake(tmp_path / "b", **kw)
    pd.testing.assert_frame_equal(first, second)
    out = tmp_path / "a"
    for name in ("fig3.png", "fig3.pdf", "fig3.csv", "curves.csv", "visits.png", "visits.csv", "table.csv",
                 "table.md", "ordering.json", "config.json", "map.png"):
        assert (out / name).stat().st_size > 0, name
    fig3 = pd.read_csv(out / "fig3.csv")
    assert {"method", "seed", "mse_policy", "mse_params", "success_rate"} <= set(fig3.columns)
    assert set(fig3.method) == {"optimal_net", "base", "sft", "ift", "dpo", "orpo", "dft"}
    assert len(fig3) == 7 * 2
    assert fig3.loc[fig3.method == "optimal_net", "mse_params"].eq(0).all()
    assert set(pd.read_csv(out / "visits.csv").columns) >= {"method", "seed", "row", "col", "visit_rate"}
    table = pd.read_csv(out / "table.csv")
    assert {"mse_policy_mean", "mse_policy_std", "mse_params_mean"} <= set(table.columns)
    ordering = json.loads((out / "ordering.json").read_text())
    assert ordering["evaluated"] and isinstance(ordering["paper_ordering_holds"], bool)
    assert json.loads((out / "config.json").read_text())["negatives_by_method"]["dft"] == "sampled"
    assert not list(out.glob(".*.tmp"))   # atomic writes leave no temporaries


def test_unknown_method_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['nope'\]; known methods: sft"):
        run_frozen_lake(tmp_path, methods=["sft", "nope"], seeds=1, steps=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out-dir", str(tmp_path), "--methods", "dpo,nope"])
    assert exit_info.value.code == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())   # nothing ran
