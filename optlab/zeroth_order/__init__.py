"""Part 3, optimization without gradients.

Book: chapters/zeroth_order/
"""
