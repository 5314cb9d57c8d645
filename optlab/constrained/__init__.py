"""Part 5, constraints, structure and fixed points.

Book: chapters/constrained/
"""
