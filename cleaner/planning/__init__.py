"""The pure core: policy documents, lifecycle rules, protections, the artifact graph, plans.

No network, no SDK, no clock: every function here is a function of its arguments
(images, policy, now, protections). import-linter holds the package to that.
"""
