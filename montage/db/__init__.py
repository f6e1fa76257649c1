"""The jobs database: models, engines with replica routing, migrations, and data access.

Import the submodules (``montage.db.models``, ``montage.db.database``, ...) explicitly; this package
imports nothing heavy.
"""
