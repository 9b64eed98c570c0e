"""mesh room (see DESIGN.md §2)."""
