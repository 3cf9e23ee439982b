"""The demo: two local CRMs with the same people in both, synced, resolved, scored and written back."""
