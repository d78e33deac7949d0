"""The ``imgdiff`` command line: thin click commands over the library."""
