"""Part 6, bilevel optimization.

Book: chapters/bilevel/
"""
