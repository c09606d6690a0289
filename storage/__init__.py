"""Zarr/xarray storage of campaign fields, reductions and the notebook API."""

from storage.api import Campaign, open_campaign
from storage.errors import NotInStore, StoreCorrupt, StoreError, StoreNotFound

__all__ = ["Campaign", "NotInStore", "StoreCorrupt", "StoreError", "StoreNotFound", "open_campaign"]
