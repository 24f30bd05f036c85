"""Sessions of a non-writer that run their writes on the writer, and the writer's side of them."""
