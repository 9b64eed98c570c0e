"""exit room (see DESIGN.md §2)."""
