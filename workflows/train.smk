# One job per run (methods:, every sweep point, every pipeline); the run id is its path under
# results/runs/<experiment>/, key~value segments that say what ran.
rule train:
    input:
        model=start_model_ready,
        data=scored_data_of,
    output:
        "results/runs/{exp}/{run}/timing.json",
    params:
        args=train_args,
        out=run_dir_of,
        method=method_of,
        model=start_model_dir,
        accelerate=accelerate_config,
    resources:
        gpu=0,   # the slurm profile sets gpu per rule; > 1 launches one process per GPU
    log:
        "logs/{exp}/train/{run}.log",
    shell:
        # A rerun after preemption (exit 143) or a failure resumes from the run's checkpoint.
        "if [ {resources.gpu} -gt 1 ]; then "
        "LAUNCH='accelerate launch --config_file {params.accelerate} --num_processes {resources.gpu} "
        "--main_process_port 0'; else LAUNCH=python; fi; "
        "$LAUNCH -m negfree.cli train --method {params.method} --model {params.model} --data {input.data} "
        "--out-dir {params.out} {params.args} > {log} 2>&1"
