"""Facts about NetHack itself: the action space and map navigation (BFS); nothing learned."""
