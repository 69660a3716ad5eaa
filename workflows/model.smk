# Base models by name: the embedded default is converted from its GGUF; hub:<id> is downloaded.
# A local rule: it runs on the submit host, which reaches the hub (compute nodes often do not).
# A gated model (Llama-3, Gemma-2) that is not prepared yet stops the DAG at build time when no
# Hugging Face token is set (gated_model_check, common.smk).
localrules: prepare_model


rule prepare_model:
    input:
        gated_model_check,
    output:
        "work/models/{model}/config.json",
    params:
        source=model_source,
        out="work/models/{model}",
    resources:
        # GGUF/hub checkpoint -> safetensors directory, on CPU. A local rule: these sizes only matter
        # where a site forces it through Slurm.
        mem_mb=32000,
        runtime=60,
    log:
        "logs/models/{model}.log",
    shell:
        "{NEGFREE} prepare-model --source {params.source} --out {params.out}" + LOG
