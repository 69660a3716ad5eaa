# Reference log-probs under the base model, stored with the data: no trainer loads a reference.
rule score_reference:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{NEG_ROOT}/strategy~{{strategy}}/temperature~{{temperature}}/num~{{num}}/negatives.jsonl",
    output:
        f"{NEG_ROOT}/strategy~{{strategy}}/temperature~{{temperature}}/num~{{num}}/scored.jsonl",
    params:
        template=template_flag(),
        max_len=config["score"]["max_len"],
        # the trainer's prompt-length policy, so both stages keep the same records
        prompt=(f"--overlong-prompts {config['train'].get('overlong_prompts', 'error')}"
                + (f" --max-prompt-len {config['train']['max_prompt_len']}"
                   if config["train"].get("max_prompt_len") else "")),
    log:
        f"logs/{EXP}/score/strategy~{{strategy}}_temperature~{{temperature}}_num~{{num}}.log",
    shell:
        "negfree score --model {MODEL_DIR} --data {input.data} --out {output} --max-len {params.max_len} "
        "{params.prompt} {params.template} > {log} 2>&1"
