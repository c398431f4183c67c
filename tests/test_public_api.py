"""The public API is pinned: adding or removing a name is a deliberate change."""

import fluxroute


def test_public_names_are_pinned_and_sorted() -> None:
    assert fluxroute.__all__ == sorted(fluxroute.__all__)
    assert fluxroute.__all__ == [
        "AllProvidersFailed",
        "BudgetExceeded",
        "Candidate",
        "Catalog",
        "FieldError",
        "FluxrouteError",
        "GeneratedImage",
        "GenerationResult",
        "ImageRequest",
        "InvalidRequest",
        "NoRouteError",
        "Plan",
        "ProviderError",
        "Rejection",
        "Router",
        "Settings",
        "load_catalog",
    ]
    for name in fluxroute.__all__:
        assert getattr(fluxroute, name) is not None
