"""Part 2, optimizers for learning systems.

Book: chapters/stochastic/
"""
