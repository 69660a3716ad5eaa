# The HTML report (`snakemake --report results/report.html`, run after the DAG by
# `make demo`). Snakemake renders a report only from the command line, never from
# inside a rule; what goes in it is marked where it is made, with report(...) on the
# outputs of summary_table (tables.smk), bnf_fig1 and asft_fig1 (figures.smk) and
# frozen_lake (toy.smk). Captions live in report/*.rst (Jinja + reStructuredText,
# `snakemake.config` available). Every marked file is in the DAG of `rule all`.
report: "../report/workflow.rst"
