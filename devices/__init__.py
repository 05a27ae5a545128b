"""Device profiles, benchmarks and deployment."""
