"""Part 1, rates and limits of first-order methods.

Book: chapters/foundations/
"""
