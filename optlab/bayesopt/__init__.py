"""Part 4, Bayesian optimization.

Book: chapters/bayesopt/
"""
