from components.deploy.component import deploy

__all__ = ["deploy"]
