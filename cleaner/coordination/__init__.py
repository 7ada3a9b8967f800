"""Coordinators, each implementing `cleaner.ports.Coordinator`."""
