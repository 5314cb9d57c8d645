"""Part 8, federated and private learning.

Book: chapters/federated/
"""
