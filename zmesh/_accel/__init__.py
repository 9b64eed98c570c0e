"""_accel room (see DESIGN.md §2)."""
