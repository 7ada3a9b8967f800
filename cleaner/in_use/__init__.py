"""In-use sources, each implementing `cleaner.ports.InUseSource`, and the merged source."""
