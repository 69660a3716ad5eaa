"""Datasets: the schema every stage reads, the hub adapters and the embedded
dataset that lets every code path run offline."""
