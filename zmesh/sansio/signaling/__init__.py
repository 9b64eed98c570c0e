"""signaling room (see DESIGN.md §2)."""
