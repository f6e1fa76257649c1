"""The phase-gate toolkit: ``phases/*.yaml`` -> invoke tasks, nox sessions, gates and proof bundles.

Public entry point: ``python -m montage.ops {list,status,run,gate,verify,rollback,schema,scan}``.
Nothing is imported here on purpose: ``invoke --list`` and ``nox -l`` import
:mod:`montage.ops.sessions` and must stay light.  The toolkit talks to the app only through its
public surfaces (CLI commands, files, HTTP) and never imports app internals.
"""
