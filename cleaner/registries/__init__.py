"""Registry adapters, each implementing `cleaner.ports.Registry`."""
