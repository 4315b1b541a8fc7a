"""The cloud control plane (CONTRACT §7): versioned function code, edge instances, deployments, the agent.

``service`` is the one place each operation is defined; ``routes`` (admin ``/v1``), ``agent_routes`` (what
gateways call) and the console are thin layers over it. ``agent`` runs on the gateway side.
"""
