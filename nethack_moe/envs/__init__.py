"""NLE environments: the factory, reward shaping, the vector env, and the scripted teacher that runs
in its workers."""
