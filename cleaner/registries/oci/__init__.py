"""The OCI Distribution registry adapter (`OciRegistry`) and its parts."""

from cleaner.registries.oci.adapter import OciRegistry

__all__ = ["OciRegistry"]
