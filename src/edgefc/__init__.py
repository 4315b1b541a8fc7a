"""edgefc: an open serverless runtime for edge gateways."""

__version__ = "0.1.0"
