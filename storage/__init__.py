"""Zarr/xarray storage of campaign fields, reductions and the notebook API."""

from storage.api import Campaign, open_campaign
from storage.fields import StoreError

__all__ = ["Campaign", "StoreError", "open_campaign"]
