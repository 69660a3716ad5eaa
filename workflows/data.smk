# Datasets by path: the project-made embedded dataset (offline, deterministic), or a hub
# dataset through its adapter (configs/data/*.yaml), normalised to one schema, subsampled
# deterministically. The path (name, n_train, n_test, seed) says which records.
# A local rule, like prepare_model: hub downloads happen on the submit host, not a compute node.
localrules: make_data


rule make_data:
    output:
        train="{data_dir}/train.jsonl",
        test="{data_dir}/test.jsonl",
    params:
        d=data_spec,
    resources:
        # small CPU job (a local rule: the sizes matter where a site forces it through Slurm)
        mem_mb=4000,
        runtime=30,
        cpus_per_task=1,
    log:
        "logs/{data_dir}/make_data.log",
    shell:
        "{NEGFREE} make-data --source {params.d[source]} --out {wildcards.data_dir} --n-train {params.d[n_train]} "
        "--n-test {params.d[n_test]} --seed {params.d[seed]}" + LOG
