class DomainError(Exception):
    """A request the domain refuses. ``key`` names the locale message that explains why."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params
