"""invoke tasks, generated: ``invoke --list``; the phase.* tasks read phases/*.yaml when they run."""

from montage.ops.invoke_tasks import build_namespace

ns = build_namespace()
