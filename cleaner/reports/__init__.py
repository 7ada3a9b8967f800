"""Reports of a run for people (text, HTML) and machines (JSON), and of a policy file.

Each renderer reads the figures of `figures.py`, counted one repository at a time.
"""
