# One run per method; run directories are named key~value so the path says what ran.
rule train:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{NEG_DIR}/scored.jsonl",
    output:
        f"{RUNS}/method~{{method}}/timing.json",
    params:
        args=train_args,
        out=run_dir_of,
        accelerate=config.get("launch", {}).get("accelerate_config", "configs/accelerate/ddp.yaml"),
    resources:
        gpu=0,   # the slurm profile sets gpu per rule; > 1 launches one process per GPU
    log:
        f"logs/{EXP}/train/method~{{method}}.log",
    shell:
        # A rerun after preemption (exit 143) or a failure resumes from the run's checkpoint.
        "if [ {resources.gpu} -gt 1 ]; then "
        "LAUNCH='accelerate launch --config_file {params.accelerate} --num_processes {resources.gpu} "
        "--main_process_port 0'; else LAUNCH=python; fi; "
        "$LAUNCH -m negfree.cli train --method {wildcards.method} --model {MODEL_DIR} --data {input.data} "
        "--out-dir {params.out} {params.args} > {log} 2>&1"
