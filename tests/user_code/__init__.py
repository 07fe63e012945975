"""Layers and functions written the way course material and tutorials write them.

Each one is either correct or carries one classic mistake; tests/test_user_code.py holds the
verdict and the diagnosis expected for each. Written for these tests, not copied.
"""
