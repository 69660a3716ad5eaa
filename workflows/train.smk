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
        gpu=gpus_of("train"),   # launch.gpus.train of the experiment; > 1 launches one process per GPU
        nodes=1,
        mem_mb=mem_mb_of("train"),
        runtime=runtime_of("train"),
        cpus_per_task=cpus_of("train"),
        # Preemption and time limit (also a runtime cap, NEGFREE_SLURM_MAX_RUNTIME_GPU): Slurm sends
        # SIGTERM to the job's processes 600 s before the time limit (up to 60 s earlier), so the
        # trainer finishes its step, writes a checkpoint and exits 143; the retry resumes from it
        # (negfree/train/checkpoint.py StopFlag; with save_every: 0 too, the SIGTERM checkpoint is
        # always written). Without `B:` the signal goes to the job step (the trainer), not the batch
        # shell. Clusters whose preemption should send it too: PreemptParameters=send_user_signal in
        # slurm.conf. The plan's runtime and a cap are at least 30 min, so the signal never comes
        # before minute 20. Here, not in the profile: a `--set-resources` on the command line
        # replaces the profile's whole set-resources block. NEGFREE_SLURM_EXTRA is appended to it.
        slurm_extra="--signal=TERM@600",
    log:
        "logs/{exp}/train/{run}.log",
    shell:
        # A rerun after preemption (exit 143) or a failure resumes from the run's checkpoint. `exec`:
        # Slurm's SIGTERM (preemption, the profile's early --signal) reaches the trainer, not a
        # shell that would die of it and end the job step before the checkpoint is written.
        # The project's interpreter and accelerate by absolute path (PY, ACCELERATE: common.smk).
        # With several GPUs, torchrun's agent (under accelerate launch) gets the SIGTERM too and
        # SIGKILLs its workers 30 s later by default: give them the signal's lead (600 s) less a margin
        # to finish the step and write the sharded checkpoint.
        "export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=540; "
        "if [ {resources.gpu} -gt 1 ]; then "
        "set -- {ACCELERATE} --config_file {params.accelerate} --num_processes {resources.gpu} "
        "--main_process_port 0; else set -- {PY}; fi; "
        "exec \"$@\" -m negfree.cli train --method {params.method} --model {params.model} --data {input.data} "
        "--out-dir {params.out} {params.args}" + LOG
