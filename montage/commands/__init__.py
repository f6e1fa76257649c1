"""Sub-commands of the ``montage`` CLI; each module is imported only when its command runs."""
