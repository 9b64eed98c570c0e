"""sansio room (see DESIGN.md §2)."""
