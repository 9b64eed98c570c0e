"""webrtc room (see DESIGN.md §2)."""
