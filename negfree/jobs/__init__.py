"""From configs to jobs: the experiments and their sweeps (sweeps), the job graph the
Snakemake workflow builds (dag), and the per-job resource plan (`negfree plan`, plan)."""
