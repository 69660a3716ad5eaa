# Base models by name: the embedded default is converted from its GGUF; hub:<id> is downloaded.
rule prepare_model:
    output:
        "work/models/{model}/config.json",
    params:
        source=model_source,
        out="work/models/{model}",
    log:
        "logs/models/{model}.log",
    shell:
        "negfree prepare-model --source {params.source} --out {params.out} > {log} 2>&1"
