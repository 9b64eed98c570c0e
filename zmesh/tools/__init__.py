"""tools room (see DESIGN.md §2)."""
