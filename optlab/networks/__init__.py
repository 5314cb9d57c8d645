"""Part 7, the geometry of neural-network training.

Book: chapters/networks/
"""
