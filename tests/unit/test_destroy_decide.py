"""The pure rule of vcapp/deploy/destroy.py: an app's stored data goes only with `--confirm APP`."""

from __future__ import annotations

import pytest

from vcapp.deploy.destroy import Held, decide
from vcapp.errors import BadRequest, Conflict

VOLUME = {"app": "shop", "name": "data", "size_mb": 64}
BUCKET = {"app": "shop", "bucket": "shop", "backend": "builtin"}
EXTERNAL = {"app": "shop", "bucket": "vcapp-shop", "backend": "external", "endpoint": "https://s3.example.org"}


@pytest.mark.parametrize("held, confirm, outcome", [
    (Held(), None, None),                                 # nothing stored: as before, no confirmation
    (Held(), "shop", None),
    (Held(), "shops", BadRequest),                        # a confirmation naming another app is wrong anyway
    (Held((VOLUME,)), None, Conflict),
    (Held(bucket=BUCKET), None, Conflict),
    (Held((VOLUME,), BUCKET), "shop", None),
    (Held((VOLUME,), BUCKET), "Shop", BadRequest),
    (Held(bucket=EXTERNAL), "", BadRequest),
])
def test_stored_data_goes_only_with_the_apps_own_name(held, confirm, outcome):
    if outcome is None:
        decide("shop", held, confirm)
        return
    with pytest.raises(outcome) as e:
        decide("shop", held, confirm)
    assert "vcapp apps destroy shop --confirm shop" in e.value.message


def test_the_refusal_names_each_volume_and_the_bucket_and_where_it_is():
    with pytest.raises(Conflict) as e:
        decide("shop", Held((VOLUME, dict(VOLUME, name="logs", size_mb=16)), EXTERNAL), None)
    assert ("volume shop/data (64 MB), volume shop/logs (16 MB), bucket vcapp-shop on the S3 service at "
            "https://s3.example.org") in e.value.message
    assert "Nothing was changed" in e.value.message
