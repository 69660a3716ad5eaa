"""The training engine's contracts (issue 3): invariance of the gradient to how a batch
is split (micro-batches, processes), exact resume after SIGKILL and SIGTERM, determinism,
and one clear error per kind of bad input. Everything runs the real loop on the tiny
random model, on CPU."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from negfree.common.io import write_jsonl
from negfree.data.schema import load_jsonl
from negfree.score.reference import score_records
from negfree.train.loop import train


@pytest.fixture(scope="module")
def data(scored_pool, tmp_path_factory):
    """8 records, pools of 3 negatives (other records' answers: no generation needed), scored."""
    return scored_pool(tmp_path_factory.mktemp("trainer"))


def cfg_for(model, data, out, method, **kw):
    return {"method": method, "model": str(model), "data": str(data), "out_dir": str(out),
            "batch_size": 4, "micro_batch_size": 4, "max_steps": 2, "num_negatives": 2, "max_len": 96,
            "lr": 1e-3, "scheduler": "constant", "warmup_ratio": 0.0, **kw}


def weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def assert_same_weights(a, b, exact=False):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        if exact:
            assert torch.equal(wa[k], wb[k]), k
        else:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)   # Adam amplifies fp noise of near-zero grads; a real mismatch is ~lr = 1e-3


def metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def cli_train(cfg, env_extra=None, launcher=None):
    """Run `negfree train` in a fresh process (as the workflow does); returns the CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    keys = {k: v for k, v in cfg.items() if k not in ("method", "model", "data", "out_dir")}
    args = ["-m", "negfree.cli", "train", "--method", cfg["method"], "--model", cfg["model"], "--data",
            cfg["data"], "--out-dir", cfg["out_dir"], "--train-json", json.dumps(keys)]
    cmd = (launcher or [sys.executable]) + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------ invariance
@pytest.mark.parametrize("method", ["sft", "dft2", "dpo"])
def test_one_batch_of_4_equals_4_accumulated_micro_batches_of_1(tmp_path, tiny_model_dir, data, method):
    a = tmp_path / "4x1"
    b = tmp_path / "1x4"
    train(cfg_for(tiny_model_dir, data, a, method, max_steps=1))
    train(cfg_for(tiny_model_dir, data, b, method, max_steps=1, micro_batch_size=1))
    assert_same_weights(a, b)
    ma, mb = metrics(a)[0], metrics(b)[0]
    assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-5)
    if method == "dft2":
        ua, ub = torch.load(a / "final/dft_log_u.pt"), torch.load(b / "final/dft_log_u.pt")
        torch.testing.assert_close(ua, ub)


def test_sft_is_a_token_mean_over_the_whole_batch_not_a_mean_of_micro_batch_means(tmp_path, tiny_model_dir, data):
    """With answers of different lengths the two normalisations differ; ours is the global token mean."""
    recs = load_jsonl(data)[:4]
    lengths = [len(r["ref"]["positive"]) for r in recs]
    assert len(set(lengths)) > 1, "the check needs answers of different lengths"
    b = tmp_path / "1x4"
    train(cfg_for(tiny_model_dir, data, b, "sft", max_steps=1, micro_batch_size=1, lr=1e-9, seed=0))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()[:4]
    recs = load_jsonl(data)
    s0 = [sum(recs[i]["ref"]["positive"]) for i in order]   # at step 1 the model is the reference
    toks = [len(recs[i]["ref"]["positive"]) for i in order]
    token_mean = -sum(s0) / sum(toks)
    assert metrics(b)[0]["loss"] == pytest.approx(token_mean, rel=1e-4)
    mean_of_means = -sum(s / t for s, t in zip(s0, toks)) / 4
    assert abs(token_mean - mean_of_means) > 1e-3


@pytest.mark.parametrize("method", ["dft2", "sft"])
def test_two_gloo_processes_equal_one_process(tmp_path, tiny_model_dir, data, method):
    one = cfg_for(tiny_model_dir, data, tmp_path / "one", method, max_steps=2)
    two = cfg_for(tiny_model_dir, data, tmp_path / "two", method, max_steps=2, micro_batch_size=2)
    train(one)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    p = cli_train(two, launcher=torchrun)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((tmp_path / "two/run_info.json").read_text())
    assert info["processes"] == 2
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    for ra, rb in zip(metrics(tmp_path / "one"), metrics(tmp_path / "two")):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
        assert ra["tokens"] == rb["tokens"]
    if method == "dft2":
        torch.testing.assert_close(torch.load(tmp_path / "one/final/dft_log_u.pt"),
                                   torch.load(tmp_path / "two/final/dft_log_u.pt"))


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("fault", ["kill@3", "kill-in-save@2"])
def test_sigkill_then_rerun_gives_the_uninterrupted_weights(tmp_path, tiny_model_dir, data, fault):
    kw = dict(max_steps=4, batch_size=2, micro_batch_size=1, save_every=1, epochs=2)
    ref = cfg_for(tiny_model_dir, data, tmp_path / "ref", "dft", **kw)
    train(ref)
    cut = cfg_for(tiny_model_dir, data, tmp_path / "cut", "dft", **kw)
    p = cli_train(cut, {"NEGFREE_FAULT": fault})
    assert p.returncode == -9, p.stderr[-2000:]
    assert not (tmp_path / "cut/timing.json").exists() and not (tmp_path / "cut/final").exists()
    p = cli_train(cut)
    assert p.returncode == 0, p.stderr[-2000:]
    info = json.loads((tmp_path / "cut/run_info.json").read_text())
    assert info["resumed_from_step"] == (2 if fault == "kill@3" else 1)
    assert_same_weights(tmp_path / "ref", tmp_path / "cut", exact=True)
    assert torch.equal(torch.load(tmp_path / "ref/final/dft_log_u.pt"), torch.load(tmp_path / "cut/final/dft_log_u.pt"))
    assert metrics(tmp_path / "ref") == metrics(tmp_path / "cut")
    assert not (tmp_path / "cut/checkpoints").exists()   # removed once final/ is written


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes(tmp_path, tiny_model_dir, data):
    kw = dict(max_steps=3, batch_size=2, micro_batch_size=2)
    train(cfg_for(tiny_model_dir, data, tmp_path / "ref", "sft", **kw))
    cut = cfg_for(tiny_model_dir, data, tmp_path / "cut", "sft", **kw)
    p = cli_train(cut, {"NEGFREE_FAULT": "term@2"})
    assert p.returncode == 143, p.stderr[-2000:]
    assert "preempted" in p.stderr and "rerun the same command" in p.stderr
    assert (tmp_path / "cut/checkpoints/latest").read_text().strip() == "step-000002"
    p = cli_train(cut)
    assert p.returncode == 0, p.stderr[-2000:]
    assert_same_weights(tmp_path / "ref", tmp_path / "cut", exact=True)


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path, tiny_model_dir, data):
    cfg = cfg_for(tiny_model_dir, data, tmp_path / "r", "sft", max_steps=2, batch_size=2, micro_batch_size=2)
    p = cli_train(cfg, {"NEGFREE_FAULT": "term@1"})
    assert p.returncode == 143
    p = cli_train({**cfg, "lr": 5e-4})
    assert p.returncode != 0 and "different training config" in p.stderr


# ------------------------------------------------------------------ determinism
def test_same_seed_gives_an_identical_metrics_file(tmp_path, tiny_model_dir, data):
    for name in ("a", "b"):
        train(cfg_for(tiny_model_dir, data, tmp_path / name, "dft", max_steps=2, batch_size=2, micro_batch_size=1))
    assert (tmp_path / "a/metrics.jsonl").read_bytes() == (tmp_path / "b/metrics.jsonl").read_bytes()
    row = metrics(tmp_path / "a")[0]
    for key in ("loss", "lr", "grad_norm", "logp_pos", "logp_pos_per_token", "logp_neg", "logp_neg_per_token",
                "deviation", "likelihood_margin", "log_u_mean", "log_u_std"):
        assert key in row, key
    perf = [json.loads(x) for x in (tmp_path / "a/perf.jsonl").read_text().splitlines()]
    assert [p["step"] for p in perf] == [1, 2] and all(p["tokens_per_s"] > 0 and p["peak_memory_mb"] > 0 for p in perf)


def test_the_probe_set_is_held_out_and_measured_at_step_0_every_k_steps_and_the_end(tmp_path, tiny_model_dir, data):
    """probe_records: the last N records leave training and are read without gradient; at step 0 the
    policy is the reference, so the deviation is 0 and logp_pos is the scored S0 (mean over the probe)."""
    recs = load_jsonl(data)
    out = tmp_path / "p"
    train(cfg_for(tiny_model_dir, data, out, "dft", max_steps=3, batch_size=2, micro_batch_size=1,
                  probe_records=2, probe_every=2))
    rows = [json.loads(x) for x in (out / "probe.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 3] and all(r["records"] == 2 for r in rows)
    info = json.loads((out / "run_info.json").read_text())
    assert info["records"] == 6 and info["probe_records"] == [r["id"] for r in recs[-2:]]
    s0 = [sum(r["ref"]["positive"]) for r in recs[-2:]]
    assert rows[0]["deviation"] == pytest.approx(0.0, abs=1e-5)
    assert rows[0]["logp_pos"] == pytest.approx(sum(s0) / 2, rel=1e-5)
    assert rows[-1]["logp_pos"] != rows[0]["logp_pos"]              # the policy moved
    for key in ("logp_neg", "logp_neg_per_token", "likelihood_margin"):
        assert key in rows[0]
    # the probe does not touch training: the same run without it, on the 6 training records, is identical
    write_jsonl(tmp_path / "six.jsonl", recs[:-2])
    train(cfg_for(tiny_model_dir, tmp_path / "six.jsonl", tmp_path / "q", "dft", max_steps=3, batch_size=2,
                  micro_batch_size=1))
    assert (out / "metrics.jsonl").read_bytes() == (tmp_path / "q/metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match="probe_records=8 leaves no training record"):
        train(cfg_for(tiny_model_dir, data, tmp_path / "r", "sft", probe_records=8))


def test_pairwise_runs_log_rewards_margins_and_accuracy(tmp_path, tiny_model_dir, data):
    train(cfg_for(tiny_model_dir, data, tmp_path / "d", "dpo", max_steps=1))
    row = metrics(tmp_path / "d")[0]
    assert {"reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy"} <= set(row)
    assert row["reward_margin"] == pytest.approx(0.0, abs=1e-5)   # step 1: the policy is the reference


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change, message", [
    (dict(method="nope"), "unknown method 'nope'"),
    (dict(hparams={"gamma": 0.0}), "gamma=0.0 is outside (0.0, 1.0]"),
    (dict(hparams={"gamma": 1.5}), "gamma=1.5 is outside"),
    (dict(hparams={"tau": -1}), "tau=-1"),
    (dict(num_negatives=5), "B=5 negatives requested but the pool has 3"),
    (dict(lr=float("nan")), "lr=nan"),
    (dict(batch_size=4, micro_batch_size=3), "not a multiple"),
    (dict(typo_key=1), "unknown key(s) ['typo_key']"),
])
def test_bad_config_stops_with_one_message(tmp_path, tiny_model_dir, data, change, message):
    with pytest.raises(ValueError, match=None) as e:
        train({**cfg_for(tiny_model_dir, data, tmp_path / "x", "dft"), **change})
    assert message in str(e.value)


def _broken(data, tmp_path, fix):
    recs = load_jsonl(data)
    fix(recs)
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_empty_answer_missing_column_and_nan_reference_name_the_culprit(tmp_path, tiny_model_dir, data):
    def empty(recs):
        recs[3]["positive"] = "  "
    with pytest.raises(ValueError, match="arith-00001.*column 'positive' is empty"):
        train(cfg_for(tiny_model_dir, _broken(data, tmp_path, empty), tmp_path / "e", "sft"))

    def no_ref(recs):
        del recs[2]["ref"]
    with pytest.raises(ValueError, match="needs reference log-probs"):
        train(cfg_for(tiny_model_dir, _broken(data, tmp_path, no_ref), tmp_path / "r", "dpo"))

    def nan_ref(recs):
        for r in recs:
            r["ref"]["negatives"] = [[float("nan")] * len(x) for x in r["ref"]["negatives"]]
    with pytest.raises(ValueError, match=r"record \S+ \(negative 0\): reference log-prob 0 is NaN"):
        train(cfg_for(tiny_model_dir, _broken(data, tmp_path, nan_ref), tmp_path / "n", "dft"))
    assert not (tmp_path / "n").exists()   # refused before any step (tests/test_bad_input.py has the rest)


def test_overlong_prompts_stop_the_run_or_are_dropped_before_training(tmp_path, tiny_model_dir, data):
    def long_prompt(recs):
        recs[0]["prompt"] = [{"role": "user", "content": "seven plus eight " * 200}]
    path = _broken(data, tmp_path, long_prompt)
    with pytest.raises(ValueError, match="prompt has .* tokens, more than the limit"):
        train(cfg_for(tiny_model_dir, path, tmp_path / "e", "sft"))
    assert not (tmp_path / "e/metrics.jsonl").exists()   # stopped before any step
    train(cfg_for(tiny_model_dir, path, tmp_path / "s", "sft", overlong_prompts="skip", max_steps=1))
    info = json.loads((tmp_path / "s/run_info.json").read_text())
    assert info["records"] == 7 and len(info["dropped_overlong_prompts"]) == 1


def test_scoring_follows_the_same_prompt_length_policy(tmp_path, tiny_model_dir, data):
    """score --overlong-prompts skip leaves the record unscored; training with skip drops it and
    trains (a DPO run needs every other record's reference)."""
    recs = load_jsonl(data)
    raw = [{k: v for k, v in r.items() if k != "ref"} for r in recs]
    raw[0]["prompt"] = [{"role": "user", "content": "seven plus eight " * 200}]
    with pytest.raises(ValueError, match=f"record {raw[0]['id']}: prompt has"):
        score_records(tiny_model_dir, raw, tmp_path / "e.jsonl", max_len=96)
    assert not (tmp_path / "e.jsonl").exists()
    m = score_records(tiny_model_dir, raw, tmp_path / "s.jsonl", max_len=96, overlong_prompts="skip")
    assert m["skipped_overlong_prompts"] == [raw[0]["id"]]
    scored = load_jsonl(tmp_path / "s.jsonl")
    assert scored[0]["ref"] is None and all(r["ref"] for r in scored[1:])
    train(cfg_for(tiny_model_dir, tmp_path / "s.jsonl", tmp_path / "dpo", "dpo", overlong_prompts="skip",
                  max_steps=1))
    assert json.loads((tmp_path / "dpo/run_info.json").read_text())["dropped_overlong_prompts"] == [raw[0]["id"]]


def test_the_fallback_template_is_saved_with_the_final_model(tmp_path, tiny_model_dir, data):
    from negfree.common.models import load_tokenizer
    from negfree.data.tokenize import ZEPHYR_TEMPLATE

    base = tmp_path / "base"
    tok = load_tokenizer(tiny_model_dir)
    tok.chat_template = None                      # a base model without a template
    shutil.copytree(tiny_model_dir, base)
    for f in base.glob("chat_template*"):
        f.unlink()
    tok.save_pretrained(base)
    assert load_tokenizer(base).chat_template is None
    with pytest.raises(ValueError, match="no chat template"):
        train(cfg_for(base, data, tmp_path / "nf", "sft", max_steps=1))
    train(cfg_for(base, data, tmp_path / "f", "sft", fallback_template=True, max_steps=1))
    assert load_tokenizer(tmp_path / "f/final").chat_template == ZEPHYR_TEMPLATE


# ------------------------------------------------------------------ pairing ratio (bnf.txt Table 6)
def test_pairing_ratio_masking_trains_bnf_and_is_refused_by_pairwise_methods(tmp_path, tiny_model_dir, data):
    from negfree.data.adapters import apply_pairing_ratio

    recs = load_jsonl(data)
    raw = [{k: v for k, v in r.items() if k != "ref"} for r in recs]
    masked = apply_pairing_ratio(raw, 0.0, seed=3)   # every record loses one side
    sides = {r["dropped"] for r in masked}
    assert sides == {"positive", "negatives"}, "the check needs both kinds of dropped side"
    path = tmp_path / "masked.jsonl"
    score_records(tiny_model_dir, masked, path, max_len=96)
    train(cfg_for(tiny_model_dir, path, tmp_path / "bnf", "bnf", max_steps=2, micro_batch_size=1))
    rows = metrics(tmp_path / "bnf")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # the per-step positive log-likelihood covers only prompts that kept their positive
    assert all(r["logp_pos"] < 0 for r in rows)
    with pytest.raises(ValueError, match="one side dropped .* method 'dpo' needs both sides"):
        train(cfg_for(tiny_model_dir, path, tmp_path / "dpo", "dpo"))


def test_pairing_ratio_as_a_train_key_masks_scored_data_like_masking_before_scoring(tmp_path, tiny_model_dir,
                                                                                     data):
    """train.pairing_ratio (what a sweep sets) masks already-scored records; the dropped side's
    reference log-probs go with it, and training matches masking before scoring."""
    from negfree.data.adapters import apply_pairing_ratio
    from negfree.train.loop import mask_scored_pairs

    recs = load_jsonl(data)
    masked = mask_scored_pairs(recs, 0.5, seed=0)
    for r in masked:
        if r["paired"] is False:
            assert (r["ref"]["positive"] is None) == (r["dropped"] == "positive")
            assert (r["ref"]["negatives"] == []) == (r["dropped"] == "negatives")
    raw = [{k: v for k, v in r.items() if k != "ref"} for r in recs]
    before = apply_pairing_ratio(raw, 0.5, seed=0)
    assert [(r["paired"], r.get("dropped")) for r in before] == [(r["paired"], r.get("dropped")) for r in masked]
    train(cfg_for(tiny_model_dir, data, tmp_path / "a", "bnf", max_steps=2, pairing_ratio=0.5, seed=0))
    path = tmp_path / "pre.jsonl"
    write_jsonl(path, masked)
    train(cfg_for(tiny_model_dir, path, tmp_path / "b", "bnf", max_steps=2, seed=0))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    with pytest.raises(ValueError, match="pairing_ratio=1.5"):
        train(cfg_for(tiny_model_dir, data, tmp_path / "c", "bnf", pairing_ratio=1.5))


def test_a_dropped_side_contributes_nothing_to_the_bnf_loss(tiny_model_dir, data):
    """Same prompt, dropped negatives: the loss equals the positive-only loss exactly."""
    from negfree.common.models import load_model, load_tokenizer
    from negfree.losses import get_method
    from negfree.train.batch import collate, loss_inputs

    tok, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    cfg = {"fallback_template": False, "max_len": 96, "max_prompt_len": None}
    rec = load_jsonl(data)[0]
    dropped = {**rec, "paired": False, "dropped": "negatives", "negatives": [],
               "ref": {**rec["ref"], "negatives": []}}
    bnf = get_method("bnf")
    with_drop = collate(tok, [dropped], [[]], cfg, [], True)
    assert with_drop.n_neg == 0     # a lone record with no negatives: nothing to pad against
    both = collate(tok, [dropped, rec], [[], [0, 1]], cfg, [], True)
    assert both.neg_valid.tolist() == [[False, False], [True, True]]
    l_both = bnf.fn(loss_inputs(model, model, both, bnf, {}, None, 64)).loss
    solo_pos = bnf.fn(loss_inputs(model, model, with_drop, bnf, {}, None, 64)).loss
    solo_full = bnf.fn(loss_inputs(model, model, collate(tok, [rec], [[0, 1]], cfg, [], True), bnf, {}, None, 64)).loss
    torch.testing.assert_close(l_both, (solo_pos + solo_full) / 2, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ scratch: a full disk, one run per directory
def _torch_full_disk_error() -> RuntimeError:
    """What torch.save raises when the disk fills (no errno: "[enforce fail at inline_container.cc]
    ... unexpected pos N vs M"), got from /dev/full, which answers every write with ENOSPC."""
    try:
        torch.save({"w": torch.zeros(10_000)}, "/dev/full")
    except RuntimeError as err:
        return err
    return RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_a_full_disk_mid_checkpoint_ends_in_one_line_and_the_rerun_resumes(tmp_path, tiny_model_dir, data):
    """NEGFREE_FAULT=enospc@2: the disk fills while step 2's checkpoint is written. One line names
    it; step 1's checkpoint and `latest` stay, no partial directory; the rerun resumes at step 1."""
    kw = dict(max_steps=3, batch_size=2, micro_batch_size=2, save_every=1)
    train(cfg_for(tiny_model_dir, data, tmp_path / "ref", "dft", **kw))
    cut = cfg_for(tiny_model_dir, data, tmp_path / "cut", "dft", **kw)
    p = cli_train(cut, {"NEGFREE_FAULT": "enospc@2"})
    ck = tmp_path / "cut" / "checkpoints"
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"negfree train: no space left on device writing {ck / 'step-000002'}: "
                           f"the checkpoint needs ~"), last
    assert " free; " in last and f"{ck / 'step-000001'} is kept for the resume" in last
    assert sorted(x.name for x in ck.iterdir()) == ["latest", "step-000001"]
    assert (ck / "latest").read_text().strip() == "step-000001"
    assert json.loads((ck / "step-000001/trainer_state.json").read_text())["step"] == 1
    assert not (tmp_path / "cut/final").exists() and not (tmp_path / "cut/timing.json").exists()
    p = cli_train(cut)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "cut/run_info.json").read_text())["resumed_from_step"] == 1
    assert_same_weights(tmp_path / "ref", tmp_path / "cut", exact=True)


def test_a_full_disk_in_save_state_or_final_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, data, monkeypatch):
    """The real code paths: accelerate's save_state failing with torch's errno-less "unexpected
    pos" RuntimeError on a nearly full disk, then the final weights' write failing with ENOSPC.
    Each ends in one DiskFull line and leaves the newest checkpoint to resume from."""
    import errno
    from pathlib import Path

    import accelerate
    import transformers

    from negfree.common import io as nio
    from negfree.common.io import DiskFull
    from negfree.train import checkpoint

    cfg = cfg_for(tiny_model_dir, data, tmp_path / "run", "dft", max_steps=3, batch_size=2, micro_batch_size=2,
                  save_every=1)
    ck = tmp_path / "run/checkpoints"
    real_save_state, calls = accelerate.Accelerator.save_state, []

    def save_state(self, output_dir=None, **kw):
        calls.append(output_dir)
        if len(calls) == 2:                                   # step 2's checkpoint: the disk fills half-way
            (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 1000)
            raise _torch_full_disk_error()
        return real_save_state(self, output_dir, **kw)

    monkeypatch.setattr(accelerate.Accelerator, "save_state", save_state)
    monkeypatch.setattr(nio, "free_bytes", lambda path: 5_000_000)          # what a full disk leaves
    monkeypatch.setattr(checkpoint, "free_bytes", lambda path: 5_000_000)
    with pytest.raises(DiskFull) as err:
        train(cfg)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"no space left on device writing {ck / 'step-000002'}: ")
    assert "needs ~" in msg and "5.0 MB free" in msg
    assert sorted(x.name for x in ck.iterdir()) == ["latest", "step-000001"]

    monkeypatch.setattr(accelerate.Accelerator, "save_state", real_save_state)
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained",
                        lambda self, d, **kw: (Path(d, "model.safetensors").write_bytes(b"\0" * 1000),
                                               (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left"))))
    with pytest.raises(DiskFull) as err:
        train(cfg)                                            # resumes at 1, saves 2, then final/ fails
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"no space left on device writing {tmp_path / 'run/final'}: ")
    assert sorted(x.name for x in (tmp_path / "run").iterdir() if x.name.startswith((".final", "final"))) == []
    assert (ck / "latest").read_text().strip() == "step-000002"

    monkeypatch.undo()
    train(cfg)
    assert json.loads((tmp_path / "run/run_info.json").read_text())["resumed_from_step"] == 2
    assert (tmp_path / "run/final/model.safetensors").exists() and not ck.exists()


def test_what_counts_as_a_full_disk(tmp_path, monkeypatch):
    import errno

    from negfree.common import io as nio

    monkeypatch.setattr(nio, "free_bytes", lambda path: 10 ** 12)
    assert nio.is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert nio.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert nio.is_disk_full(wrapped, tmp_path)
    assert not nio.is_disk_full(_torch_full_disk_error(), tmp_path)          # plenty free: some other failure
    monkeypatch.setattr(nio, "free_bytes", lambda path: 10 ** 6)
    assert nio.is_disk_full(_torch_full_disk_error(), tmp_path)              # torch's words, nothing free
    assert not nio.is_disk_full(PermissionError(errno.EACCES, "Permission denied"), tmp_path)
    assert not nio.is_disk_full(ValueError("bad config"), tmp_path)


def test_a_second_launch_on_a_held_run_directory_is_refused_until_the_holder_dies(tmp_path, tiny_model_dir, data):
    """A Slurm requeue beside a live run: one line naming the holder, nothing written; once the
    holder is SIGKILLed the kernel has dropped its lock and a new run takes the directory."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom negfree.train.checkpoint import RunLock\n"
                               "lock = RunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = cfg_for(tiny_model_dir, data, out, "sft", max_steps=1, batch_size=2, micro_batch_size=2)
        p = cli_train(cfg)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith(f"negfree train: {out} is held by another run (pid {holder.pid} on host "), last
        with pytest.raises(RuntimeError, match=f"is held by another run \\(pid {holder.pid} on host"):
            train(cfg)
        assert sorted(x.name for x in out.iterdir()) == [".lock"]          # nothing written
    finally:
        holder.kill()
        holder.wait()
    train(cfg)
    assert (out / "final/model.safetensors").exists()
