"""Toy settings where the optimal policy is known: Frozen Lake (ift.txt Sec. 5.3, Fig. 3).

Entry points: negfree.toy.frozen_lake.run_frozen_lake and .main (the CLI).
"""
