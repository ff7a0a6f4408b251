"""Benchmarks of passeur: each compares the code with a reference measured in the same run."""
