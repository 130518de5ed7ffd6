"""Pure pieces of the deploy glue: the registries drop-in and release numbers from requests."""

import pytest

from vcapp.api.releases import release_number
from vcapp.errors import BadRequest
from vcapp.node.registry_loop import dropin_text

pytestmark = pytest.mark.unit


def test_dropin_lists_each_cluster_registry_once_as_insecure():
    text = dropin_text(["10.1.0.12:5000", "10.1.0.11:5000", "10.1.0.12:5000"])
    assert text.count("[[registry]]") == 2
    assert text.index('location = "10.1.0.11:5000"') < text.index('location = "10.1.0.12:5000"')
    assert text.count("insecure = true") == 2


@pytest.mark.parametrize("given, number", [(None, None), (3, 3), ("3", 3), ("v12", 12)])
def test_release_numbers(given, number):
    assert release_number(given) == number


@pytest.mark.parametrize("given", ["0", "latest", True, "-1", "v"])
def test_bad_release_numbers_say_what_to_give(given):
    with pytest.raises(BadRequest, match="give one like 3 or v3"):
        release_number(given)
