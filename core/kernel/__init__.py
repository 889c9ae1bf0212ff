"""The kernel: errors, progress, records and interrupts (standard library only)."""
