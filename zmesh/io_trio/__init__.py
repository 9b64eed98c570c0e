"""io_trio room (see DESIGN.md §2)."""
