# One job per run of RUN_SPECS (methods: and every sweep point); the run id is its path
# under results/runs/<experiment>/, key~value segments that say what ran.
rule train:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=scored_data_of,
    output:
        f"{RUNS}/{{run}}/timing.json",
    params:
        args=train_args,
        out=run_dir_of,
        method=method_of,
        accelerate=config.get("launch", {}).get("accelerate_config", "configs/accelerate/ddp.yaml"),
    resources:
        gpu=0,   # the slurm profile sets gpu per rule; > 1 launches one process per GPU
    log:
        f"logs/{EXP}/train/{{run}}.log",
    shell:
        # A rerun after preemption (exit 143) or a failure resumes from the run's checkpoint.
        "if [ {resources.gpu} -gt 1 ]; then "
        "LAUNCH='accelerate launch --config_file {params.accelerate} --num_processes {resources.gpu} "
        "--main_process_port 0'; else LAUNCH=python; fi; "
        "$LAUNCH -m negfree.cli train --method {params.method} --model {MODEL_DIR} --data {input.data} "
        "--out-dir {params.out} {params.args} > {log} 2>&1"
