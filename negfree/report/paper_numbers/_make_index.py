"""Writes index.yaml: hand-written metadata per targets.md row + row order/labels read from the CSVs.

    .venv/bin/python -m negfree.report.paper_numbers._make_index
"""
import re, yaml, pandas as pd
from pathlib import Path
D = Path(__file__).resolve().parent

OPEN = ["mmlu/acc","truthfulqa_mc2/acc","hellaswag/acc_norm","winogrande/acc","gsm8k/exact_match,strict-match","arc_challenge/acc_norm","ifeval/prompt_level_strict_acc","avg"]
OPEN_L = ["MMLU","TruthfulQA","HellaSwag","WinoGrande","GSM8K","ARC","IFEval","Avg."]
BNF = ["wildbench/elo","wildbench/score","arena_hard/lc_win_rate","arena_hard/win_rate","gsm8k/acc","math_l5/acc","crux/acc","mmlu_redux/acc"]
BNF_L = ["Wild-Bench Elo","Wild-Bench Score","Arena-Hard LC (%)","Arena-Hard WR (%)","GSM8K Acc (%)","MATH Acc (%)","CRUX Acc (%)","MMLU Acc (%)"]

def I(paper, targets_row, runs, caption, files=(), metrics=(), labels=(), aliases=None, methods=None, notes=None, numbers=True, models=None):
    e = {"paper": paper, "targets_row": targets_row, "numbers_in_text": numbers,
         "files": list(files), "caption": caption,
         "metrics": list(metrics), "metric_labels": list(labels)}
    if models: e["models"] = models
    if methods is not None: e["methods"] = methods
    e["runs"] = runs
    if aliases: e["aliases"] = aliases
    if notes: e["notes"] = notes
    return e

items = {
 "dft/table1": I("dft","Table 1","DFT, DFT2 on MetaMathQA, B=4 (setting 1)",
   "Zero-shot GSM8K and MATH test accuracy of DFT/DFT2 trained from Mistral-7B on MetaMathQA, next to the released MetaMath SFT models.",
   ["dft_table1.csv"], ["gsm8k_0shot/acc","math_0shot/acc"], ["GSM8K","MATH"],
   notes="MetaMath-7B and MetaMath-Mistral-7B are released SFT checkpoints (method 'released:...'); the text calls MetaMath-Mistral-7B the SFT baseline (Observation 1)."),
 "dft/table2": I("dft","Table 2","SFT, SPIN, SimPO, SimPO-SFT, KTO, ORPO, DPO-p, DFT, DFT2 on UF winners + self-play negatives, B=2",
   "Open-LLM benchmarks for DFT/DFT2 versus SFT and preference-optimization losses that use the same UF winners as positives and the same self-play negatives (Mistral-7B base, B=2).",
   ["dft_table2.csv"], OPEN, OPEN_L),
 "dft/table3": I("dft","Table 3","UF->UF: SFT->KTO, SFT->DPO, SFT->SimPO; UC->UF rows: evaluate released checkpoints",
   "DFT/DFT2 (UF winners only) against two-stage SFT->PO on real preference pairs: released UC->UF checkpoints and the authors' UF->UF pipeline.",
   ["dft_table3.csv"], OPEN, OPEN_L,
   notes="setting holds the printed DATA column: UC->UF, UF->UF, or UF(x,y_w) for DFT/DFT2."),
 "dft/table4": I("dft","Table 4","SFT->DPO, SFT->SimPO (UF->UF)",
   "DFT/DFT2 against two-stage SFT->PO where the PO stage uses the same self-play negatives as DFT instead of human-labelled losers.",
   ["dft_table4.csv"], OPEN, OPEN_L),
 "dft/table8_fig2b": I("dft","Table 8, Fig 2b","DFT",
   "DFT with moving-average parameter gamma in {0.8, 0.85, 0.9, 0.95, 1}; Fig. 2b plots the average column.",
   ["dft_table8.csv"], OPEN, OPEN_L,
   aliases={"dft/table8": {}, "dft/fig2b": {"metric": "avg"}}),
 "dft/table9_fig6": I("dft","Table 9, Fig 6","DFT, DFT2, SPIN, SimPO, SimPO-SFT, KTO",
   "Number of negatives per prompt B in {1, 2, 4} for DFT/DFT2 and the self-play PO baselines (SFT row printed once, no B); Fig. 6 shows the AlpacaEval2 LC win rate for the same runs (no numbers in the text).",
   ["dft_table9.csv"], OPEN, OPEN_L,
   aliases={"dft/table9": {}, "dft/fig6": {"item": "fig6"}},
   notes="SFT uses no negatives: setting 'B=n/a'. Fig. 6 numbers are not in the text."),
 "dft/table10_table11": I("dft","Table 10, 11","SFT, DFT, DFT2 on a small and an instruct model",
   "SFT vs DFT vs DFT2 with the setting-2 protocol on other base models: Qwen-2.5-0.5B (Table 10) and Llama3-8B-instruct (Table 11).",
   ["dft_table10.csv","dft_table11.csv"], OPEN, OPEN_L,
   models=["Qwen-2.5-0.5B","Llama3-8B-instruct"],
   aliases={"dft/table10": {"item": "table10"}, "dft/table11": {"item": "table11"}}),
 "dft/table12": I("dft","Table 12","DFT with negatives generated at each temperature",
   "DFT trained on negatives sampled from the base model at temperature 0, 0.3, 0.7 or 1.0.",
   ["dft_table12.csv"], OPEN, OPEN_L),
 "dft/fig1": I("dft","Fig 1","a checkpoint after 1 epoch + two negative pools",
   "Histogram of the score s(y',x) under a 1-epoch UF checkpoint for negatives sampled at the usual temperature (<1) versus at a very high temperature.",
   numbers=False, metrics=["score/s_theta"], labels=["s(y',x)"], methods=["sampling", "random_high_temperature"],
   notes="No numbers in the text."),
 "dft/fig2a_fig5": I("dft","Fig 2a, Fig 5","Table 2/3 models",
   "AlpacaEval2 (GPT-4 judge): LC win rate of DFT vs SFT and self-play PO (Fig. 2a); LC win rate and mean output length of DFT vs SFT->PO (Fig. 5a length, 5b LC).",
   ["dft_fig5.csv"], ["alpacaeval2/lc_win_rate","alpacaeval2/avg_length"], ["LC win rate","average length"],
   aliases={"dft/fig2a": {"item": "fig2a"}, "dft/fig5": {}, "dft/fig5a": {"item": "fig5a"}, "dft/fig5b": {"item": "fig5b"}},
   notes="Only the four average lengths quoted in Sec. 7.1 are in the text; no LC win rate is. The text gives one length for 'DFT(2)' (method 'dft(2)') and does not say which pipeline (UC->UF or UF->UF) the KTO/DPO/SimPO lengths come from; the unit of length is not stated."),
 "dft/fig3": I("dft","Fig 3","DFT, SFT, SimPO training logs",
   "Log-likelihood of the positive answers (a) and of the self-generated negatives (b) over training for DFT, SFT and SimPO.",
   numbers=False, metrics=["train/logp_pos","train/logp_neg"], labels=["log-likelihood of positives","log-likelihood of negatives"],
   methods=["dft","sft","simpo"], notes="No numbers in the text; the qualitative statements are claims in configs/claims.yaml."),
 "dft/fig4": I("dft","Fig 4","timing records of the runs",
   "Total training time in hours (4xA100 80G) of DFT, DFT2 and SFT->PO on UltraFeedback, 2 epochs for DFT; SFT (2 epochs) + PO (1 epoch) for SFT->PO.",
   ["dft_fig4.csv"], ["train_time","negative_generation_time"], ["training time","negative generation time"],
   methods=["dft","dft2","sft->simpo","sft->dpo"],
   notes="The per-method bar heights are not in the text; only the ~1.33 h generation time of the negatives (excluded from the figure) is. methods = those App. A.4 names; the figure's bar order is not in the text."),
 "dft/fig7": I("dft","Fig 7","DFT per strategy",
   "Average Open-LLM score of DFT when the negatives are generated with four prompting strategies: direct, chat template, chat template + helpful system message, chat template + adversarial system message.",
   ["dft_fig7.csv"], ["avg"], ["average score"], methods=["dft"],
   notes="Settings in the figure: strategy=direct, strategy=chat, strategy=chat_good, strategy=chat_bad (App. B.5 order). The text gives only chat_bad (62.84) and chat_good (62.35)."),
 "minorsft/fig1": I("minorsft","Fig 1","SFT (lr 1e-5), SFT-using-DPO and MinorSFT (lr 2e-5, beta 0.04)",
   "Deviation metric m_theta (Eq. 8, length-normalised log-ratio to the reference, batch-averaged) over training steps for SFT, SFT-using-DPO and MinorSFT.",
   numbers=False, metrics=["train/deviation"], labels=["m_theta"], methods=["sft","sft_dpo","minorsft"],
   notes="No numbers in minorsft.txt."),
 "minorsft/fig2": I("minorsft","Fig 2","the paper's training corpus is private: the grid runs on a configurable corpus",
   "Accuracy on FinanceIQ, fineval and ceval-exam for SFT, SFT-using-DPO and MinorSFT over a learning-rate x beta grid (2a) and for each method's best setting vs the base model (2b).",
   numbers=False, metrics=["financeiq/acc","fineval/acc","ceval_exam/acc"], labels=["FinanceIQ","fineval","ceval-exam"],
   methods=["base","sft","sft_dpo","minorsft"], notes="No numbers in minorsft.txt; best settings stated in the text: SFT lr=1e-5; MinorSFT and SFT-using-DPO lr=2e-5, beta=0.04."),
 "asft/fig1": I("asft","Fig 1","analytic, from the project's own loss code via autograd",
   "Loss surface and gradient field over (x1, x2) = (p(y_w), p(y_l)) of the Bradley-Terry (DPO) loss (a) and of the ASFT alignment loss L_align (b).",
   numbers=False, metrics=["loss","grad_x1","grad_x2"], labels=["loss","dL/dx1","dL/dx2"], methods=["dpo","asft"],
   notes="Analytic; closed forms in asft.txt Eq. 16 (BT) and Eq. 18 (L_align)."),
 "asft/table2": I("asft","Table 2","SFT, DPO, IPO, ORPO, ASFT; needs a judge",
   "Arena-Hard win rate and MT-Bench score (GPT-4 Turbo and GPT-4 judges) for Llama3-8B-Instruct aligned on UltraFeedback with each method; SFT is the off-the-shelf instruct model.",
   ["asft_table2.csv"], ["arena_hard/win_rate","mt_bench/score_gpt4_turbo","mt_bench/score_gpt4"],
   ["Arena-Hard WR (%)","MT-Bench GPT-4 Turbo","MT-Bench GPT-4"]),
 "asft/table3": I("asft","Table 3","SFT, ORPO, ASFT",
   "BLEU-4 and ROUGE-1/2/L of SFT, ORPO and ASFT (Llama3-8B-Instruct) trained on HH-RLHF and on UltraFeedback.",
   ["asft_table3.csv"], ["bleu4","rouge1","rouge2","rougeL"], ["BLEU-4","ROUGE-1","ROUGE-2","ROUGE-L"],
   notes="setting = the printed Dataset column. Sec. 5.1 says the BLEU/ROUGE test set is alpaca_en; the table labels rows by training set. HH-RLHF SFT BLEU-4 is printed with one decimal (23.7)."),
 "asft/fig2": I("asft","Fig 2","training logs and timing records",
   "(a) Likelihood margin between chosen and rejected answers during training, ASFT vs ORPO; (b) total runtime and peak GPU memory, ASFT vs DPO (UltraFeedback).",
   ["asft_fig2.csv"], ["train/likelihood_margin","runtime_reduction","peak_memory_reduction"],
   ["likelihood margin","runtime reduction vs DPO (%)","peak memory reduction vs DPO (%)"],
   methods=["asft","orpo","dpo"],
   aliases={"asft/fig2a": {"item": "fig2a"}, "asft/fig2b": {"item": "fig2b"}},
   notes="Text (Sec. 5.2) gives 13% less time and 16.7% less peak GPU memory 'compared to reference-dependent methods' and cites Figure 2(a); the caption puts runtime/memory in 2(b), ASFT vs DPO. No margin values in the text."),
 "ift/table2": I("ift","Table 2","base->UF: SFT, DPO, ORPO, IFT; sequential UC->UF: SFT, SFT+SFT, SFT+DPO, SFT+ORPO, SFT+IFT",
   "AlpacaEval and AlpacaEval 2 win rate and LC win rate of Mistral-7B fine-tuned on UltraFeedback-60k directly, or on UltraChat-200k then UltraFeedback-60k, with each method; released Mistral-ORPO-alpha and Zephyr-7B-beta scores copied from their sources.",
   ["ift_table2.csv"], ["data_volume","alpacaeval/win_rate","alpacaeval/lc_win_rate","alpacaeval2/win_rate","alpacaeval2/lc_win_rate"],
   ["Data volume","Alpaca-Eval win-rate","Alpaca-Eval lc win-rate","Alpaca-Eval-2 win-rate","Alpaca-Eval-2 lc win-rate"],
   notes="The Reference/pairwise check-mark columns are not numeric (and garbled in the text): not transcribed. For Mistral-ORPO-alpha and Zephyr-7B-beta the text has two blank cells and places the second number (11.33, 10.99) in the Alpaca-Eval-2 lc column; see README."),
 "ift/table3": I("ift","Table 3","same runs",
   "Open-LLM leaderboard tasks (ARC-Challenge 25-shot, MMLU 5-shot, TruthfulQA 0-shot, WinoGrande 5-shot, GSM8K 5-shot) evaluated with the chat template, same models as Table 2.",
   ["ift_table3.csv"], ["arc_challenge/acc_norm","mmlu/acc","truthfulqa_mc2/acc","winogrande/acc","gsm8k/exact_match,strict-match","avg"],
   ["ARC-Challenge","MMLU","TruthfulQA","WinoGrande","GSM8K","Avg."],
   notes="ift.txt has only the caption of Table 3: every value is empty. Column order follows the benchmark list of Sec. 5.1; metric variants (acc_norm, mc2, strict-match) follow the Open-LLM convention and are not stated in ift.txt; the Avg. column is implied by the caption ('highest average score'). Rows = the runs targets.md asks for; whether the paper's table also has the base and released rows is unknown."),
 "ift/fig3": I("ift","Fig 3","toy, CPU",
   "Frozen Lake: MSE distance between the parameters of each fine-tuned policy and the optimal policy, for SFT, IFT, DPO and ORPO.",
   numbers=False, metrics=["toy/frozen_lake/mse_params"], labels=["MSE to optimal policy"], methods=["sft","ift","dpo","orpo"],
   notes="No numbers in the text; the ordering it reports is a claim in configs/claims.yaml."),
 "bnf/fig1": I("bnf","Fig 1","analytic, from the project's own loss code via autograd",
   "|dL/dz_y| as a function of pi_theta(y) for NLL, PLL and BNF (BNF peaks at pi_theta = pi_ref and falls linearly on both sides).",
   numbers=False, metrics=["abs_grad_logit"], labels=["|dL/dz_y|"], methods=["nll","pll","bnf"],
   notes="Analytic: bnf.txt Eq. 9 and Appendix A.1."),
 "bnf/table4": I("bnf","Table 4","BNF, DPO, IPO, KTO, ORPO, SimPO, SLiC-HF on three instruct models",
   "Wild-Bench (Elo, score), Arena-Hard (LC, WR) and reasoning accuracy (GSM8K, MATH-L5, CRUX, MMLU-redux) for each PO method on three instruct models, each cell with its rank in the block, plus the average rank.",
   ["bnf_table4.csv"], BNF + ["avg_rank"], BNF_L + ["Average Rank"],
   models=["Meta-Llama-3-8B-Instruct","Mistral-7B-Instruct-v0.2","Gemma-2-9b-It"],
   notes="Each printed cell 'v (r)' gives two rows: metric (v) and metric + '/rank' (r). Gemma-2 block has only Base, DPO, SimPO, BNF. MATH = MATH-L5 and MMLU = MMLU-redux per Sec. 4. Judges: Arena-Hard GPT-4o-mini (not the original GPT-4-Turbo), Wild-Bench GPT-4o."),
 "bnf/table5": I("bnf","Table 5","same",
   "Mean response length on Wild-Bench (WB) and Arena-Hard (AH) for each method on Meta-Llama-3-8B-Instruct and Mistral-7B-Instruct-v0.2.",
   ["bnf_table5.csv"], ["wildbench/avg_length","arena_hard/avg_length"], ["WB","AH"],
   models=["Meta-Llama-3-8B-Instruct","Mistral-7B-Instruct-v0.2"],
   notes="Arrows (up/down vs Base) are dropped (derivable from the numbers). Length unit not stated."),
 "bnf/table6": I("bnf","Table 6","BNF",
   "BNF on Meta-Llama-3-8B-Instruct when only 0, 25, 50 or 100% of the preference pairs keep both answers (the rest keep one at random), against the base model.",
   ["bnf_table6.csv"], BNF + ["avg_rank"], BNF_L + ["Average Rank"],
   notes="Ranks are within the 5 rows of this table. The Average Rank column is printed below the table (lines 221-226) and assigned to the rows in order. CRUX header prints 'Acc' without (%)."),
 "bnf/fig3_fig4": I("bnf","Fig 3, Fig 4","BNF, DPO, IPO, SimPO checkpoints + greedy generations",
   "On 1,000 Wild-Bench prompts with greedy responses (Llama-3-8B-Instruct base): log-likelihood shifts, absolute logit shifts, their relation, length-normalised versions and Gini coefficient of logit shifts vs the reference (Fig. 3); token-level log-likelihood shifts of BNF, SimPO, IPO mapped onto DPO's 10 percentile bins (Fig. 4).",
   numbers=False, metrics=["shift/loglik","shift/abs_logit","shift/loglik_per_token","shift/abs_logit_per_token","shift/gini_logit","shift/dpo_bin_fraction"],
   labels=["(a) log-likelihood shift","(b) absolute logit shift","(d) length-normalised log-likelihood shift","(e) length-normalised absolute logit shift","(f) Gini of logit shifts","Fig. 4 fraction per DPO bin"],
   methods=["bnf","dpo","ipo","simpo"], notes="No numbers in the text."),
}

# derive row order from the CSVs
items["dft/fig7"]["settings"] = ["strategy=direct", "strategy=chat", "strategy=chat_good", "strategy=chat_bad"]
for iid, e in items.items():
    rows = []
    for f in e["files"]:
        d = pd.read_csv(D / f, dtype=str, keep_default_na=False)
        seen = []
        for _, r in d.iterrows():
            m = re.search(r"row (.+?), column", r.source)
            label = m.group(1) if m else None
            key = (r["item"], r.model, r.setting, r.method)
            if key not in [tuple(x[k] for k in ("item","model","setting","method")) for x in seen]:
                ent = {"item": r["item"], "model": r.model, "setting": r.setting, "method": r.method}
                if label: ent["label"] = label
                seen.append(ent)
        rows += seen
    if rows:
        e["rows"] = rows
        if e.get("methods") is None:
            meth = []
            for r in rows:
                if r["method"] not in meth: meth.append(r["method"])
            e["methods"] = meth
        # check metrics listed == metrics present (in order)
        present = []
        for f in e["files"]:
            for m in pd.read_csv(D / f, dtype=str).metric:
                base = m[:-5] if m.endswith("/rank") else m
                if base not in present: present.append(base)
        missing = [m for m in present if m not in e["metrics"]]
        assert not missing, (iid, missing)

class Flow(dict):
    pass
def _flow(dumper, data):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
yaml.SafeDumper.add_representer(Flow, _flow)
for e in items.values():
    if "rows" in e:
        e["rows"] = [Flow(r) for r in e["rows"]]
    if "aliases" in e:
        e["aliases"] = {k: Flow(v) for k, v in e["aliases"].items()}

header = """# Index of the paper numbers transcribed in this directory, one entry per item of
# /work/shared/design/targets.md (id = paper/items-of-that-row).
#   files           CSVs holding the item's numbers (empty when the text gives none)
#   numbers_in_text whether the paper text prints numbers for the item
#   caption         short paraphrase of the paper's caption (ours)
#   metrics         metric keys in the paper's column order; metric_labels = the printed headers
#                   (a CSV metric 'X/rank' is the rank printed in parentheses next to X)
#   methods         method keys in the paper's row order (first appearance)
#   rows            every printed row in order: item, model, setting, method, label (as printed)
#   settings        (figures) the sweep values in the paper's order where rows cannot give it
#   runs            what the regenerating target needs (copied from targets.md)
#   aliases         other ids load() accepts, with the filter applied to the item's rows
# Generated from the CSVs + hand-written metadata; see README.md.
"""
(D / "index.yaml").write_text(header + yaml.safe_dump({"version": 1, "items": items}, sort_keys=False, allow_unicode=True, width=110))
print(len(items))
