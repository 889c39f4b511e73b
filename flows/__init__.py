"""Prefect flows, tasks, storage, manifests, record writers and the CLI of registre."""
