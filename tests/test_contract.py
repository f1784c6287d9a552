"""The storage contract, run once per backend (see the ``storage`` fixture in conftest)."""

from depotx.testing import StorageContract


class TestContract(StorageContract):
    pass
