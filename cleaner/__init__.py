"""ecr-cleaner: prunes Amazon ECR repositories with exact lifecycle-policy semantics."""

__version__ = "0.1.0"
