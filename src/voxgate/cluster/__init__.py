"""Cluster mode (the voxgate[ray] extra): the same server on a Ray Serve cluster.

`Synthesizer` replicas (one per node) each hold today's local backend (worker pool, sessions, deadline
ordering); the `Gateway` deployment is the same FastAPI app with every HTTP and WebSocket dialect, whose
backend (`RayBackend`) streams segments from the Synthesizer replicas through a Serve handle. Nothing here
is imported unless `voxgate serve --ray-address` is given: the single-process server never imports Ray.
See docs/cluster.md.
"""
